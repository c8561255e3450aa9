"""Tables defined by the config: `[target] table = "homes"` gets its columns and types from the fields,
its key from [items] key plus source; a later config may add a field (a column is added), never retype one."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import inspect

from etl import cli, config
from etl.db import make_engine
from etl.demo.site import DemoSite, SiteOptions
from etl.pipeline import run_job
from etl.progress import Progress
from tests.conftest import ROOT
from tests.test_e2e_listings import table

LISTINGS = 800


def homes_config(tmp_path: Path, drop: tuple[str, ...] = (), retype: dict[str, str] | None = None) -> str:
    """config/demo.toml writing into a table of its own, `homes`, keyed by house_id."""
    text = (ROOT / "config" / "demo.toml").read_text()
    text = text.replace('[target]\ntable = "listings"', '[target]\ntable = "homes"\nkey = "house_id"')
    text = text.replace('job = "demo-listings"', 'job = "demo-homes"')
    lines = [ln for ln in text.splitlines() if not any(ln.startswith(f"{name} = ") for name in drop)]
    for name, ftype in (retype or {}).items():
        lines = [ln.replace('type = "int"', f'type = "{ftype}"') if ln.startswith(f"{name} = ") else ln
                 for ln in lines]
    path = tmp_path / f"homes-{len(drop)}-{len(retype or {})}.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def crawl(path: str, db_url: str):
    cfg = config.load(path, [f"source.demo.listings={LISTINGS}"], database_url=db_url)
    return run_job(cfg, progress=Progress(enabled=False))


def assert_homes_match_truth(db_url: str, skip: tuple[str, ...] = ()) -> None:
    truth = {t["listing_id"]: t for t in DemoSite(SiteOptions(listings=LISTINGS, encoding="gbk")).truth("bj")}
    rows = {r["house_id"]: r for r in table(db_url, "SELECT * FROM homes")}
    assert len(rows) == len(truth) and set(rows) == set(truth)
    bad = []
    for key, t in truth.items():
        row = rows[key]
        flat = {**{k: v for k, v in t.items() if k not in ("extras", "listing_id", "url")}, **t["extras"]}
        for name, want in flat.items():
            if name in skip:
                continue
            got = row[name]
            if name == "total_price":
                got = None if got is None else Decimal(str(got)).normalize()
                want = None if want is None else Decimal(str(want)).normalize()
            elif name == "listed_date" and isinstance(got, str):
                want = want.isoformat()
            if got != want:
                bad.append((key, name, want, got))
    assert not bad, f"{len(bad)} mismatches, e.g. {bad[:5]}"


def column_types(db_url: str) -> dict[str, str]:
    engine = make_engine(db_url)
    try:
        found = inspect(engine)
        return {c["name"]: str(c["type"]).upper() for c in found.get_columns("homes")} | {
            "__key__": ",".join(found.get_pk_constraint("homes")["constrained_columns"])}
    finally:
        engine.dispose()


def check_config_table(db_url: str, tmp_path: Path) -> None:
    # first a config without two fields: the table is created with the columns it names
    first = homes_config(tmp_path, drop=("ownership", "elevator"))
    state, stats = crawl(first, db_url)
    assert stats.pages_failed == 0 and state.status == "succeeded"
    types = column_types(db_url)
    assert types["__key__"] == "source,house_id"
    assert "ownership" not in types and "listing_id" not in types and "extras" not in types
    assert "INT" in types["rooms"] and "DATE" in types["listed_date"]
    assert any(t in types["total_price"] for t in ("NUMERIC", "DECIMAL"))
    assert any(t in types["area_m2"] for t in ("FLOAT", "DOUBLE", "REAL"))
    assert_homes_match_truth(db_url, skip=("ownership", "elevator"))
    # the full config adds two fields: two columns are added, and a re-run fills them, keeping first_seen
    before = {r["house_id"]: r["first_seen"] for r in table(db_url, "SELECT house_id, first_seen FROM homes")}
    crawl(homes_config(tmp_path), db_url)
    assert {"ownership", "elevator"} <= set(column_types(db_url))
    assert_homes_match_truth(db_url)
    after = {r["house_id"]: r["first_seen"] for r in table(db_url, "SELECT house_id, first_seen FROM homes")}
    assert after == before


def test_config_table_sqlite(sqlite_url: str, tmp_path: Path) -> None:
    check_config_table(sqlite_url, tmp_path)


@pytest.mark.postgres
def test_config_table_postgres(pg_url: str, tmp_path: Path) -> None:
    check_config_table(pg_url, tmp_path)


@pytest.mark.mysql
def test_config_table_mysql(mysql_url: str, tmp_path: Path) -> None:
    check_config_table(mysql_url, tmp_path)


def test_a_retyped_field_is_refused_with_what_to_do(sqlite_url: str, tmp_path: Path, capsys) -> None:
    assert cli.main(["run", homes_config(tmp_path), "--db", sqlite_url, "--quiet",
                     "--set", "source.demo.listings=100"]) == 0
    capsys.readouterr()
    code = cli.main(["run", homes_config(tmp_path, retype={"rooms": "text"}), "--db", sqlite_url, "--quiet",
                     "--set", "source.demo.listings=100"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "rooms" in err[0] and "never retypes" in err[0]


@pytest.mark.parametrize("target, fragment", [
    ('[target]\ntable = "runs"', "cannot be a table of rows"),
    ('[target]\ntable = "my homes"', "cannot be a table of rows"),
    ('[target]\ntable = "listings"\nkey = "x"', "has its own key"),
])
def test_bad_target_is_a_config_error(tmp_path: Path, target: str, fragment: str) -> None:
    text = (ROOT / "config" / "demo.toml").read_text().replace('[target]\ntable = "listings"', target)
    path = tmp_path / "t.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError, match=fragment):
        config.load(str(path))


def test_extras_are_columns_in_a_config_table(tmp_path: Path) -> None:
    cfg = config.load(homes_config(tmp_path))
    assert cfg.target.row_key == "house_id" and "elevator" in cfg.target.column_names
    assert json.dumps(cfg.target.key) == '["source", "house_id"]'

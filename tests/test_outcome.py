"""How a run ends tells cron the truth: any failure of any stage, or work left at the page limit, is
`partial` with exit 1 — never `succeeded` with exit 0 (issue 11 items 9 and 13)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from etl import cli
from tests.conftest import ROOT
from tests.test_e2e_listings import table


def test_rows_the_database_refuses_make_the_run_partial(sqlite_url: str, capsys) -> None:
    code = cli.main(["run", str(ROOT / "config/demo.toml"), "--db", sqlite_url, "--quiet",
                     "--set", "source.demo.listings=500", "--set", "transform.type=plugin",
                     "--set", "transform.plugin=tests.plugin_example:unstorable_now_and_then"])
    out = capsys.readouterr().out
    refused = table(sqlite_url, "SELECT count(*) AS n FROM failures WHERE stage = 'write'")[0]["n"]
    assert refused > 0 and code == 1, out
    assert "partial" in out and f"{refused:,} failures" in out
    assert table(sqlite_url, "SELECT status FROM runs")[0]["status"] == "partial"


def test_a_run_cut_short_by_max_pages_is_partial_and_says_why(sqlite_url: str, capsys) -> None:
    code = cli.main(["run", str(ROOT / "config/demo.toml"), "--db", sqlite_url, "--quiet",
                     "--set", "source.demo.listings=500", "--set", "run.max_pages=40"])
    out = capsys.readouterr().out
    assert code == 1 and "max_pages = 40" in out, out
    run = table(sqlite_url, "SELECT status, message FROM runs")[0]
    assert run["status"] == "partial" and "max_pages" in run["message"]


def test_a_complete_run_still_succeeds(sqlite_url: str, capsys) -> None:
    assert cli.main(["run", str(ROOT / "config/demo.toml"), "--db", sqlite_url, "--quiet",
                     "--set", "source.demo.listings=300"]) == 0
    assert "succeeded" in capsys.readouterr().out


@pytest.mark.parametrize("how", ["source", "set"])
def test_runs_params_records_the_configured_base_url(tmp_path: Path, how: str) -> None:
    """11.15: base_url given in [source] or with --set is what runs.params records (it was null)."""
    import json

    from etl.config import load
    from etl.runs import close_run, open_run
    from etl.sources import source_for

    text = re.sub(r"(?m)^demo = .*$", "", (ROOT / "config/demo.toml").read_text())
    if how == "source":
        text = text.replace('city = "bj"', 'city = "bj"\nbase_url = "http://127.0.0.1:9"', 1)
    path = tmp_path / "site.toml"
    path.write_text(text)
    overrides = ["source.base_url=http://127.0.0.1:9"] if how == "set" else []
    cfg = load(path, overrides, f"sqlite:///{tmp_path / 'etl.db'}")
    source = source_for(cfg)
    state = open_run(cfg, False, source)
    close_run(state)
    source.close()
    params = json.loads(table(cfg.database_url, "SELECT params FROM runs")[0]["params"])
    assert params["base_url"] == "http://127.0.0.1:9", params

def _refused_run(url: str, capfd) -> tuple[int, str, str]:
    """The demo job into a table that refuses its rows; capfd: the writer process logs to the real stderr."""
    code = cli.main(["run", str(ROOT / "config/demo.toml"), "--db", url, "--quiet", "--set", "source.demo.listings=300"])
    out, err = capfd.readouterr()
    return code, out, err


def _assert_failed_for_refusals(url: str, code: int, out: str, err: str, words: str) -> None:
    refused = table(url, "SELECT count(*) AS n FROM failures WHERE stage = 'write'")[0]["n"]
    assert refused > 200 and table(url, "SELECT count(*) AS n FROM listings")[0]["n"] == 0
    assert code == 3 and "failed" in out, out + err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "refused every row" in errors[0] and words in errors[0], err
    run = table(url, "SELECT status, message FROM runs")[0]
    assert run["status"] == "failed" and "refused every row" in run["message"]
    assert 1 <= err.count(" refused by the database: ") <= 5, err  # a few lines, then "… N more like this"
    assert f"{refused - 3} more rows like this" in err, err


def test_a_run_whose_every_row_the_database_refuses_is_failed(sqlite_url: str, capfd) -> None:
    """A table the user changed so that it takes none of the rows (issue: 0 of 5,000 written, 'succeeded')."""
    from etl import db
    from tests.test_writer_batches import refuse_every_row

    db.upgrade(sqlite_url)
    refuse_every_row(sqlite_url)
    code, out, err = _refused_run(sqlite_url, capfd)
    _assert_failed_for_refusals(sqlite_url, code, out, err, "listings.owner")


@pytest.mark.postgres
def test_an_extra_not_null_column_fails_the_run_postgres(pg_url: str, capfd) -> None:
    from sqlalchemy import text

    from etl import db
    from etl.db import make_engine

    db.upgrade(pg_url)
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE listings ADD COLUMN owner text NOT NULL"))
    engine.dispose()
    code, out, err = _refused_run(pg_url, capfd)
    _assert_failed_for_refusals(pg_url, code, out, err, '"owner"')


def test_a_key_that_finds_nothing_is_partial_and_not_called_a_rule(sqlite_url: str, capsys) -> None:
    """11.12: every item keyless → 0 rows: a warning and exit 1, and the summary does not call those items
    "skipped by rule" (only [items] skip is a rule)."""
    code = cli.main(["run", str(ROOT / "config/demo.toml"), "--db", sqlite_url, "--quiet",
                     "--set", "source.demo.listings=300", "--set", "items.key.attr=data-no-such-attribute"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "no row was extracted" in out and "had no key" in out, out
    assert "skipped by rule: 50," in out and "without a key or detail link: 300" in out, out
    run = table(sqlite_url, "SELECT status, message FROM runs")[0]
    assert run["status"] == "partial" and "no key" in run["message"]

"""History (etl/history.py): after runs on days 0, 1, 2 of the demo site, listing_history and
listings.delisted_at are what `etl demo changes` says, row for row, on every database; a run that did not
complete delists nothing; a re-run adds no version; a kill -9 and resume gives the same history; a run of
another city delists nothing of this one; config-defined tables with `track` get `<table>_history`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from functools import cache
from pathlib import Path

import pytest

from etl import cli, config, targets
from etl.db import upgrade
from etl.demo.days import site_changes
from etl.demo.site import DemoSite, SiteOptions
from etl.pipeline import run_job
from etl.progress import Progress
from tests.conftest import ROOT
from tests.test_e2e_listings import table

LISTINGS = 300
DEMO = str(ROOT / "config" / "demo.toml")
JOB = {"name": "demo-listings"}


@pytest.fixture(autouse=True)
def own_job_name() -> None:
    """MySQL's named locks are server-wide: a job name of this test's own, so a run of the demo job in
    another database of the same server (another test, another checkout) is not taken for this one."""
    JOB["name"] = f"history-{uuid.uuid4().hex[:8]}"


@cache
def seed_with_relisting() -> int:
    """A seed whose small site has a listing removed on day 1 come back on day 2 (most seeds have none)."""
    return next(s for s in range(500) if any(
        c["change"] == "relisted" for c in site_changes(SiteOptions(listings=LISTINGS, seed=s), "bj", 1, 2)))


def overrides(day: int, *extra: str, city: str = "bj") -> list[str]:
    return [f"source.demo.listings={LISTINGS}", f"source.demo.seed={seed_with_relisting()}", f"source.demo.day={day}",
            f"city={city}", "run.batch_size=100", f"job={JOB['name']}", *extra]


def crawl(url: str, day: int, *extra: str, city: str = "bj"):
    cfg = config.load(DEMO, overrides(day, *extra, city=city), database_url=url)
    return run_job(cfg, progress=Progress(enabled=False))


def expected(days: int) -> tuple[dict[str, list[tuple]], set[str], list[dict[str, int]]]:
    """From the site's truth and `etl demo changes` alone: each listing's versions (run number, total,
    unit, kind), the listings gone after the last day, and each run's counts."""
    seed = seed_with_relisting()
    day0 = DemoSite(SiteOptions(listings=LISTINGS, seed=seed)).truth("bj")
    versions = {t["listing_id"]: [(1, Decimal(t["total_price"]), t["unit_price"], "new")] for t in day0}
    gone: set[str] = set()
    counts = [{"new": len(day0), "changed": 0, "unchanged": 0, "relisted": 0, "delisted": 0}]
    listed = len(day0)
    for day in range(1, days + 1):
        n = {"new": 0, "changed": 0, "relisted": 0, "delisted": 0}
        for c in site_changes(SiteOptions(listings=LISTINGS, seed=seed), "bj", day - 1, day):
            lid, kind = c["listing_id"], c["change"]
            if kind == "removed":
                gone.add(lid)
                n["delisted"] += 1
                continue
            gone.discard(lid)
            kind = {"price": "changed"}.get(kind, kind)
            n[kind] += 1
            versions.setdefault(lid, []).append((day + 1, Decimal(c["new_total_price"]), c["new_unit_price"], kind))
        listed += n["new"] + n["relisted"] - n["delisted"]
        counts.append({**n, "unchanged": listed - n["new"] - n["changed"] - n["relisted"]})
    return versions, gone, counts


def assert_history(url: str, days: int, first_run: int = 1) -> None:
    """listing_history and delisted_at equal `expected(days)`, row for row (run numbers from first_run)."""
    versions, gone, counts = expected(days)
    rows = table(url, "SELECT * FROM listing_history ORDER BY listing_id, run_id")
    listings = {r["listing_id"]: r for r in table(url, "SELECT listing_id, delisted_at FROM listings")}
    got: dict[str, list[dict]] = {}
    for r in rows:
        got.setdefault(r["listing_id"], []).append(r)
    assert set(got) == set(versions), (set(got) ^ set(versions))
    for lid, want in versions.items():
        have = got[lid]
        assert [(r["run_id"] - first_run + 1, Decimal(str(r["total_price"])), r["unit_price"], r["kind"])
                for r in have] == want, lid
        for older, newer in zip(have, have[1:], strict=False):  # a change ends the old version as the new one begins
            if newer["kind"] == "changed":
                assert older["valid_to"] == newer["valid_from"], lid
            else:  # relisted: the old one ended when the listing was marked gone
                assert older["valid_to"] is not None and older["valid_to"] < newer["valid_from"], lid
        last = have[-1]
        delisted_at = listings[lid]["delisted_at"]
        assert (delisted_at is not None) == (lid in gone), lid
        assert last["valid_to"] == delisted_at, lid  # NULL while current; the delisting time when gone
    runs = table(url, "SELECT rows_new, rows_changed, rows_unchanged, rows_relisted, rows_delisted, status "
                      "FROM runs WHERE id >= :f ORDER BY id", f=first_run)
    assert [r["status"] for r in runs] == ["succeeded"] * (days + 1)
    assert [{k: r[f"rows_{k}"] for k in counts[0]} for r in runs] == counts


def _url(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> str:
    return f"sqlite:///{tmp_path / 'etl.db'}" if kind == "sqlite" else request.getfixturevalue(f"{kind}_url")


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.postgres),
                        pytest.param("mysql", marks=pytest.mark.mysql)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _url(request, tmp_path, request.param)


def test_history_equals_the_demo_changes(db_url: str) -> None:
    versions, gone, counts = expected(2)
    assert any(v[-1][3] == "relisted" for v in versions.values()) and gone  # the days show every kind
    for day in range(3):
        crawl(db_url, day)
    assert_history(db_url, 2)


def test_a_rerun_of_the_same_day_adds_no_versions(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'etl.db'}"
    crawl(url, 0)
    crawl(url, 1)
    before = table(url, "SELECT * FROM listing_history ORDER BY listing_id, run_id")
    delisted = table(url, "SELECT listing_id, delisted_at FROM listings ORDER BY listing_id")
    state, _ = crawl(url, 1)
    assert table(url, "SELECT * FROM listing_history ORDER BY listing_id, run_id") == before
    assert table(url, "SELECT listing_id, delisted_at FROM listings ORDER BY listing_id") == delisted
    run = table(url, "SELECT * FROM runs WHERE id = :i", i=state.run_id)[0]
    listed = sum(1 for d in delisted if d["delisted_at"] is None)
    assert (run["rows_new"], run["rows_changed"], run["rows_relisted"], run["rows_delisted"]) == (0, 0, 0, 0)
    assert run["rows_unchanged"] == listed


def test_an_incomplete_run_delists_nothing_and_says_so(tmp_path: Path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'etl.db'}"
    crawl(url, 0)
    capsys.readouterr()
    args = ["run", DEMO, "--db", url, "--quiet"] + [a for o in overrides(1, "run.max_pages=5") for a in ("--set", o)]
    assert cli.main(args) == 1  # partial: stopped at max_pages
    out = capsys.readouterr().out
    assert "none marked delisted (the run did not complete" in out, out
    assert table(url, "SELECT count(*) AS n FROM listings WHERE delisted_at IS NOT NULL")[0]["n"] == 0
    # a version it closed was closed by a price change it saw (a successor from that instant), never by a delisting
    closed_by_delisting = ("SELECT count(*) AS n FROM listing_history o WHERE o.valid_to IS NOT NULL AND NOT EXISTS "
                           "(SELECT 1 FROM listing_history n WHERE n.source = o.source AND n.listing_id = o.listing_id"
                           " AND n.valid_from = o.valid_to)")
    assert table(url, closed_by_delisting)[0]["n"] == 0
    run = table(url, "SELECT status, rows_delisted FROM runs ORDER BY id DESC")[0]
    assert run == {"status": "partial", "rows_delisted": None}


def test_a_run_of_another_city_delists_nothing_of_this_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'etl.db'}"
    crawl(url, 0)
    state, _ = crawl(url, 0, city="sh")  # the same job, another city: a complete run that saw no bj listing
    assert state.status == "succeeded"
    assert table(url, "SELECT count(*) AS n FROM listings WHERE delisted_at IS NOT NULL")[0]["n"] == 0
    crawl(url, 1)  # and bj's own next day still delists exactly bj's gone listings, not sh's
    gone = {r["listing_id"] for r in table(url, "SELECT listing_id FROM listings WHERE delisted_at IS NOT NULL")}
    assert gone == expected(1)[1]
    assert table(url, "SELECT count(*) AS n FROM listings WHERE city = 'sh' AND delisted_at IS NOT NULL")[0]["n"] == 0


def _start(url: str, day: int, env: dict | None = None, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "etl.cli", "run", DEMO, "--db", url, "--quiet",
           *[a for o in (*overrides(day), *extra) for a in ("--set", o)]]
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_kill_9_mid_run_then_resume_gives_the_same_history(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'etl.db'}"
    crawl(url, 0)
    # every detail page asked again (conditionally: refresh_days = 0), so that day 1 is long enough to kill
    refresh = "items.detail.refresh_days=0"
    proc = _start(url, 1, {"ETL_TEST_SLOW_BATCH": "1"}, refresh)  # a kill lands inside an open batch
    deadline = time.monotonic() + 120
    while not table(url, "SELECT count(*) AS n FROM listings WHERE run_id = 2")[0]["n"]:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "the run wrote nothing"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert table(url, "SELECT status FROM runs WHERE id = 2")[0]["status"] == "running"
    out, _ = _start(url, 1, None, refresh).communicate(timeout=300)
    assert "(resumed)" in out, out
    crawl(url, 2)
    assert_history(url, 2)


def test_a_page_written_twice_in_a_run_is_one_version(tmp_path: Path) -> None:
    """The writer alone: the same rows twice (a redo), then a value moved within the run (amended)."""
    from etl.items import PageDone
    from etl.write import Writer, WriterSettings

    url = f"sqlite:///{tmp_path / 'etl.db'}"
    upgrade(url)
    cfg = config.load(DEMO, overrides(0), database_url=url)
    row = {"source": "demo", "listing_id": "1", "city": "bj", "total_price": Decimal("100"), "unit_price": 5}
    writer = Writer(WriterSettings(url=url, target=cfg.target, run_id=1))
    for i, price in enumerate((100, 100, 90)):
        writer.take(PageDone(i, [{**row, "total_price": Decimal(price)}], [], "done"))
        writer.commit()
    writer.engine.dispose()
    rows = table(url, "SELECT run_id, total_price, kind, valid_to FROM listing_history")
    assert [(r["run_id"], Decimal(str(r["total_price"])), r["kind"], r["valid_to"]) for r in rows] == [
        (1, Decimal(90), "new", None)]


def test_a_config_table_with_track_gets_its_history(tmp_path: Path) -> None:
    """`[target] track` on a config-defined table: homes_history, seeded from the rows already there."""
    url = f"sqlite:///{tmp_path / 'etl.db'}"
    crawl(url, 0, "target.table=homes", "target.key=house_id")  # no track: no history table
    assert not table(url, "SELECT name FROM sqlite_master WHERE name = 'homes_history'")
    crawl(url, 1, "target.table=homes", "target.key=house_id", 'target.track=["total_price"]')
    seeded = table(url, "SELECT * FROM homes_history ORDER BY house_id, run_id")
    assert {r["run_id"] for r in seeded} == {1, 2}
    changed = [r for r in seeded if r["kind"] == "changed"]
    want = [c for c in site_changes(SiteOptions(listings=LISTINGS, seed=seed_with_relisting()), "bj", 0, 1)]
    assert sorted(r["house_id"] for r in changed) == sorted(c["listing_id"] for c in want if c["change"] == "price")
    gone = {r["house_id"] for r in table(url, "SELECT house_id FROM homes WHERE delisted_at IS NOT NULL")}
    assert gone == {c["listing_id"] for c in want if c["change"] == "removed"}
    assert "unit_price" not in seeded[0]  # only what track names


def test_a_column_tracked_later_starts_from_its_current_values(tmp_path: Path) -> None:
    """`track` names one more column of listings: listing_history gets it, filled in on the current versions,
    so the next run sees only the real changes (not every listing 'changed' from NULL)."""
    url = f"sqlite:///{tmp_path / 'etl.db'}"
    crawl(url, 0)
    state, _ = crawl(url, 1, 'target.track=["total_price", "unit_price", "title"]')
    prices = {c["listing_id"] for c in site_changes(SiteOptions(listings=LISTINGS, seed=seed_with_relisting()),
                                                    "bj", 0, 1) if c["change"] == "price"}
    changed = table(url, "SELECT listing_id, title FROM listing_history WHERE kind = 'changed'")
    assert {r["listing_id"] for r in changed} == prices and all(r["title"] for r in changed)
    assert table(url, "SELECT count(*) AS n FROM listing_history h JOIN listings l ON l.listing_id = h.listing_id "
                      "WHERE h.valid_to IS NULL AND (h.title IS NULL OR h.title <> l.title)")[0]["n"] == 0
    assert state.history.changed == len(prices)


@pytest.mark.parametrize("track, error", [
    ('["nope"]', "cannot track 'nope'"), ('["listing_id"]', "cannot track 'listing_id'"),
    ('"total_price"', "expected list"), ('["total_price", "total_price"]', "named twice")])
def test_track_names_value_columns(tmp_path: Path, track: str, error: str) -> None:
    with pytest.raises(config.ConfigError, match=re.escape(error)):
        config.load(DEMO, overrides(0, f"target.track={track}"), database_url="sqlite://")


def test_stock_mentions_keep_no_history() -> None:
    with pytest.raises(targets.TargetError, match="keeps no history"):
        targets.target_spec("stock_mentions", None, {}, ["score"])


README_QUERIES = ("-- price cuts in the last 7 days, by district", "-- listings delisted within 30 days of first seen")
NOW_7 = "CURRENT_TIMESTAMP - INTERVAL '7' DAY"
FIRST_30 = "first_seen + INTERVAL '30' DAY"


def readme_query(title: str, kind: str) -> str:
    """The README's query under `title`, as written for PostgreSQL, with the SQLite / MySQL spelling its
    comment gives for the date arithmetic."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index(title):]
    sql = block[:block.index(";") + 1]
    if kind == "sqlite":
        sql = sql.replace(NOW_7, "datetime('now', '-7 days')").replace(FIRST_30, "datetime(first_seen, '+30 days')")
    elif kind == "mysql":
        sql = sql.replace(NOW_7, "UTC_TIMESTAMP() - INTERVAL 7 DAY")
    return sql


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("pg", marks=pytest.mark.postgres),
                                  pytest.param("mysql", marks=pytest.mark.mysql)])
def test_readme_history_queries(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> None:
    url = _url(request, tmp_path, kind)
    for day in range(2):
        crawl(url, day)
    versions, gone, _ = expected(1)
    changes = site_changes(SiteOptions(listings=LISTINGS, seed=seed_with_relisting()), "bj", 0, 1)
    cuts = [c for c in changes if c["change"] == "price" and c["new_total_price"] < c["old_total_price"]]
    district = {r["listing_id"]: r["district"] for r in table(url, "SELECT listing_id, district FROM listings")}
    got = table(url, readme_query(README_QUERIES[0], kind))
    want: dict[str, list] = {}
    for c in cuts:
        want.setdefault(district[c["listing_id"]], []).append(
            100 * (c["old_total_price"] - c["new_total_price"]) / c["old_total_price"])
    assert {r["district"]: r["cuts"] for r in got} == {d: len(v) for d, v in want.items()}
    for r in got:
        assert float(r["avg_cut_pct"]) == pytest.approx(float(sum(want[r["district"]]) / len(want[r["district"]])),
                                                        abs=0.051)
    delisted = table(url, readme_query(README_QUERIES[1], kind))
    assert {r["listing_id"] for r in delisted} == gone

"""Incremental fetching (etl/incremental.py, etl/compact.py): a re-run of a crawl fetches the list pages
and only the detail pages of new and changed listings; unchanged listings keep their stored rows (detail
fields included) and are marked seen; detail pages due for a refresh are asked conditionally and a 304
keeps the row; a succeeded run's frontier is compacted into one url_state row per URL.

The demo server counts what it is asked (an extra app that logs every path it sees), so the requests are
counted by the server, not by the crawler's own bookkeeping."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from etl import config
from etl.config import ConfigError
from etl.demo.days import site_changes
from etl.demo.server import DemoServer
from etl.demo.site import DemoSite, SiteOptions
from etl.fetch import Fetcher
from etl.items import Page, Request
from etl.pipeline import run_job
from etl.progress import Progress
from tests.conftest import ROOT
from tests.test_e2e_listings import table

LISTINGS = 600
BENCH_CONFIG = str(ROOT / "bench" / "bench.toml")  # config/demo.toml without `demo`: any base_url
DETAIL = re.compile(r"/bj/ershoufang/(\d{12})\.html$")
LOG_ENV = "ETL_TEST_REQUEST_LOG"


def request_log(path: str):
    """Extra app for the demo server (runs in its process): append every path asked for, answer nothing."""
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(path + "\n")
    return None


def options(day: int) -> SiteOptions:
    return SiteOptions(listings=LISTINGS, encoding="gbk", day=day)


def crawl(db_url: str, day: int, log: Path, monkeypatch, *overrides: str):
    """Serve day `day` on a new port (as every demo run does) and crawl it; returns (state, stats, paths)."""
    log.write_text("")
    monkeypatch.setenv(LOG_ENV, str(log))
    with DemoServer(options(day), extra_apps=("tests.test_incremental:request_log",)) as server:
        cfg = config.load(BENCH_CONFIG, [f"source.base_url={server.base_url}", "run.parse_processes=1",
                                         *overrides], database_url=db_url)
        state, stats = run_job(cfg, progress=Progress(enabled=False))
    return state, stats, [p for p in log.read_text().splitlines() if p != "/robots.txt"]


def truth(day: int) -> dict[str, dict]:
    return {t["listing_id"]: t for t in DemoSite(options(day)).truth("bj")}


def rows_of_run(db_url: str, run_id: int) -> dict[str, dict]:
    return {r["listing_id"]: r for r in table(db_url, "SELECT * FROM listings WHERE run_id = :r", r=run_id)}


def assert_rows_equal_truth(rows: dict[str, dict], want: dict[str, dict]) -> None:
    from tests.test_e2e_listings import field_mismatches

    assert set(rows) == set(want), f"missing {len(set(want) - set(rows))}, extra {len(set(rows) - set(want))}"
    bad = field_mismatches(rows.values(), want)
    assert not bad, f"{len(bad)} mismatches, e.g. {bad[:5]}"


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'etl.db'}"
    return request.getfixturevalue("pg_url" if request.param == "postgresql" else "mysql_url")


def test_day_one_fetches_list_pages_and_only_new_and_changed_details(db_url, tmp_path, monkeypatch) -> None:
    log = tmp_path / "requests.log"
    state0, stats0, day0 = crawl(db_url, 0, log, monkeypatch)
    assert stats0.pages_failed == 0
    lists0 = [p for p in day0 if not DETAIL.search(p)]
    assert len(day0) - len(lists0) == LISTINGS  # day 0: every detail page

    state1, stats1, day1 = crawl(db_url, 1, log, monkeypatch)
    assert stats1.pages_failed == 0
    changed = {c["listing_id"] for c in site_changes(options(0), "bj", 0, 1) if c["change"] != "removed"}
    assert changed  # the day has new and repriced listings
    details = [DETAIL.search(p).group(1) for p in day1 if DETAIL.search(p)]
    lists1 = [p for p in day1 if not DETAIL.search(p)]
    assert sorted(details) == sorted(changed)  # each new or changed listing's detail page, once; no other
    assert len(lists1) >= len(lists0) - 1 and len(day1) == len(lists1) + len(changed)
    # every listing on the day-1 site is stored as day 1 shows it, detail-only fields carried over
    assert_rows_equal_truth(rows_of_run(db_url, state1.run_id), truth(1))
    removed = {c["listing_id"] for c in site_changes(options(0), "bj", 0, 1) if c["change"] == "removed"}
    assert {r["listing_id"] for r in table(db_url, "SELECT listing_id FROM listings WHERE run_id = :r",
                                           r=state0.run_id)} == removed  # not seen on day 1: still day 0's


def test_succeeded_runs_leave_no_frontier_and_one_state_row_per_url(sqlite_url, tmp_path, monkeypatch) -> None:
    log = tmp_path / "requests.log"
    _, _, day0 = crawl(sqlite_url, 0, log, monkeypatch)
    assert table(sqlite_url, "SELECT count(*) AS n FROM frontier")[0]["n"] == 0
    assert table(sqlite_url, "SELECT count(*) AS n FROM url_state")[0]["n"] == len(set(day0))
    _, _, day1 = crawl(sqlite_url, 1, log, monkeypatch)
    assert table(sqlite_url, "SELECT count(*) AS n FROM frontier")[0]["n"] == 0
    # one row per URL ever fetched, whatever the port of the server that served it
    assert table(sqlite_url, "SELECT count(*) AS n FROM url_state")[0]["n"] == len(set(day0) | set(day1))
    runs = table(sqlite_url, "SELECT status, pages_ok FROM runs ORDER BY id")
    assert [r["status"] for r in runs] == ["succeeded"] * 2 and runs[1]["pages_ok"] == len(day1)


def test_refresh_days_asks_conditionally_and_a_304_keeps_the_row(sqlite_url, tmp_path, monkeypatch) -> None:
    log = tmp_path / "requests.log"
    state0, _, _ = crawl(sqlite_url, 0, log, monkeypatch)
    before = {r["listing_id"]: r for r in table(sqlite_url, "SELECT * FROM listings")}
    state1, stats1, day0_again = crawl(sqlite_url, 0, log, monkeypatch, "items.detail.refresh_days=0")
    assert sum(1 for p in day0_again if DETAIL.search(p)) == LISTINGS  # every detail re-checked …
    assert stats1.by_status.get("304") == LISTINGS and stats1.pages_failed == 0  # … and found unchanged
    after = {r["listing_id"]: r for r in table(sqlite_url, "SELECT * FROM listings")}
    assert set(after) == set(before)
    for lid, row in after.items():
        assert row["run_id"] == state1.run_id and row["last_seen"] >= before[lid]["last_seen"]
        assert {k: v for k, v in row.items() if k not in ("run_id", "last_seen")} == \
               {k: v for k, v in before[lid].items() if k not in ("run_id", "last_seen")}


def test_fetcher_sends_validators_and_takes_a_304_as_a_page() -> None:
    from etl.config.model import FetchSettings

    with DemoServer(options(0)) as server:
        fetcher = Fetcher(FetchSettings(robots=False), (f"127.0.0.1:{server.port}",))
        lid = next(iter(truth(0)))
        url = f"{server.base_url}/bj/ershoufang/{lid}.html"
        first = fetcher.fetch(Request(url, "detail"))
        assert isinstance(first, Page) and first.status == 200 and first.headers.get("etag")
        again = fetcher.fetch(Request(url, "detail", {"validators": [first.headers["etag"], None]}))
        assert isinstance(again, Page) and again.status == 304 and again.body == b""
        dated = fetcher.fetch(Request(url, "detail", {"validators": [None, first.headers["last-modified"]]}))
        assert isinstance(dated, Page) and dated.status == 304
        stale = fetcher.fetch(Request(url, "detail", {"validators": ['"other"', None]}))
        assert isinstance(stale, Page) and stale.status == 200 and stale.body == first.body


def test_refresh_days_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"refresh_days"):
        config.load(BENCH_CONFIG, ["items.detail.refresh_days=-1"])
    cfg = config.load(BENCH_CONFIG, ["items.detail.refresh_days=7"])
    assert cfg.items.refresh_days == 7.0 and cfg.items.detail.kind == "detail"
    assert config.load(BENCH_CONFIG).items.refresh_days is None


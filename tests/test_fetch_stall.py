"""Servers that trickle a byte at a time, forever (tests/hostile.py): the whole-response deadline must
free the fetch thread, so that later pages are still fetched with a few threads."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time

import pytest

from etl.config.model import FetchSettings
from etl.fetch import Fetcher, FetchFailure, FetchStage
from etl.items import Fetched, Page, Request
from tests.hostile import HostileServer

TOTAL = 1.0  # total_timeout for these tests: a trickled response must be cut about this long after it started


@pytest.fixture(params=["requests", "curl"])
def http(request) -> str:
    """requests cuts a trickle with its watchdog, libcurl with its own TIMEOUT: both within total_timeout."""
    return request.param


def settings(robots: bool = False) -> FetchSettings:
    return FetchSettings(user_agent="etl-test/1.0", per_host=16, delay=0.0, connect_timeout=2.0,
                         read_timeout=5.0, total_timeout=TOTAL, max_bytes=10_000_000, robots=robots)


def fetch_in_thread(fetcher: Fetcher, url: str, bound: float = 15.0) -> tuple[Page | FetchFailure, float]:
    """The fetch, and how long it took; fails the test (instead of hanging it) past `bound`."""
    out: list = []
    t0 = time.monotonic()
    worker = threading.Thread(target=lambda: out.append(fetcher.fetch(Request(url, "page"))), daemon=True)
    worker.start()
    worker.join(bound)
    if not out:
        pytest.fail(f"the fetch of {url} was still blocked after {bound:g} s (total_timeout = {TOTAL:g} s)")
    return out[0], time.monotonic() - t0


@pytest.mark.parametrize("path", ["/trickle-body/1", "/trickle-headers/1"])
def test_a_trickled_response_is_cut_at_total_timeout_and_may_be_retried(path: str, http: str) -> None:
    with HostileServer() as server:
        result, took = fetch_in_thread(Fetcher(settings(), server.domains, http=http), server.base + path)
    assert isinstance(result, FetchFailure) and result.retryable
    assert result.error == f"response slower than total_timeout={TOTAL:g}s"
    assert took < TOTAL + 5


def test_the_thread_is_reused_after_a_cut_for_a_good_page_on_the_same_host(http: str) -> None:
    with HostileServer() as server:
        fetcher = Fetcher(settings(), server.domains, http=http)
        fetch_in_thread(fetcher, server.base + "/trickle-body/1")
        page, _ = fetch_in_thread(fetcher, server.base + "/good")
    assert isinstance(page, Page) and b"/good" in page.body


def test_a_trickled_robots_txt_is_a_retryable_failure_not_a_hang(http: str) -> None:
    with HostileServer(robots="TRICKLE") as server:
        result, took = fetch_in_thread(Fetcher(settings(robots=True), server.domains, http=http),
                                       server.base + "/page")
        paths = server.paths()
    assert isinstance(result, FetchFailure) and result.retryable and "robots.txt" in result.error
    assert "/page" not in paths  # robots.txt unread: nothing else is fetched from the origin yet


def test_four_threads_on_eight_tricklers_still_fetch_the_page_queued_after_them(http: str) -> None:
    """The testers' case: 8 trickling pages, 4 threads, and a good page behind them that was never
    requested. Each thread is freed at total_timeout, so the good page comes after about two of them."""
    with HostileServer() as server:
        stage = FetchStage(mp.get_context("spawn"), settings(), server.domains, 4, http=http)
        try:
            urls = [f"{server.base}/trickle-{'body' if i % 2 else 'headers'}/{i}" for i in range(8)]
            stage.submit([Request(u, "page") for u in urls] + [Request(server.base + "/good", "page")])
            results: dict[str, object] = {}
            deadline = time.monotonic() + 30
            while len(results) < 9 and time.monotonic() < deadline:
                if stage.conn.poll(0.5):
                    for r in stage.results():
                        results[r.url if isinstance(r, Fetched) else r.request.url] = r
            assert isinstance(results.get(server.base + "/good"), Fetched), sorted(results)
            sent = {s.url for s in stage.take_sent() if not s.waiting}
        finally:
            stage.close()
    assert len(results) == 9
    for url in urls:
        failure = results[url]
        assert isinstance(failure, FetchFailure) and "slower than total_timeout" in failure.error
    assert sent == set(urls) | {server.base + "/good"}  # every request reported as it left


def test_a_crawl_with_more_tricklers_than_threads_still_gets_its_good_page(tmp_path, http: str) -> None:
    """End to end, as the testers ran it: 8 trickling start pages and a good one behind them, 4 threads.
    The good page becomes a row; the tricklers are failures "slower than total_timeout" (each attempt
    cut at total_timeout), never "stalled"."""
    from sqlalchemy import create_engine, text

    from etl.config import load
    from etl.pipeline import run_job
    from etl.progress import Progress
    from tests.test_config import MINIMAL

    with HostileServer() as server:
        urls = [f"{server.base}/trickle-{'body' if i % 2 else 'headers'}/{i}" for i in range(8)]
        config = tmp_path / "trickle.toml"
        config.write_text(
            MINIMAL.replace('["http://demo.test/{city}/list/"]', repr(urls + [server.base + "/good"]).replace("'", '"'))
            + f"\n[politeness]\nrobots = false\nretries = 1\nbackoff = 0.05\ntotal_timeout = {TOTAL}\n"
              "connect_timeout = 2.0\nread_timeout = 5.0\n"
            + f"\n[run]\nfetch_threads = 4\nparse_processes = 1\nhttp = \"{http}\"\n\n[database]\nurl = \"sqlite:///{tmp_path / 'etl.db'}\"\n")
        out: list = []
        worker = threading.Thread(target=lambda: out.append(run_job(load(config), progress=Progress(enabled=False))),
                                  daemon=True)
        worker.start()
        worker.join(60)
        assert out, "the run was still going after 60 s"
        paths = server.paths()
    assert "/good" in paths and sum(p.startswith("/trickle") for p in paths) == 16  # two attempts each
    engine = create_engine(f"sqlite:///{tmp_path / 'etl.db'}")
    with engine.connect() as conn:
        titles = [r[0] for r in conn.execute(text("SELECT title FROM listings"))]
        failures = conn.execute(text("SELECT url, error, attempts FROM failures")).all()
    engine.dispose()
    assert titles == ["/good"]
    assert sorted(f.url for f in failures) == sorted(urls)
    assert all("slower than total_timeout" in f.error and f.attempts == 2 for f in failures), failures


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_every_connection_of_a_session_reports_to_the_watchdog(scheme: str) -> None:
    """The cut needs the connection: both schemes' pools must make watched connections."""
    fetcher = Fetcher(settings(), ("example.test",), http="requests")
    adapter = fetcher.http.session().get_adapter(f"{scheme}://example.test/")
    pool = adapter.poolmanager.connection_from_url(f"{scheme}://example.test/")
    assert pool.ConnectionCls.request.__module__ == "etl.fetch.watchdog"

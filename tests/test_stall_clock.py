"""The coordinator's stall clock (etl/pipeline.py) starts when the fetch process reports a request sent,
not when it is handed over: requests queued behind a Crawl-delay are waiting politely, not stalled."""

from __future__ import annotations

import multiprocessing as mp
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING

from etl.config.model import FetchSettings
from etl.fetch import FetchStage
from etl.items import Fetched, Request
from etl.pipeline import Coordinator
from tests.hostile import HostileServer

if TYPE_CHECKING:
    from etl.fetch import Sent

LIMIT = 2 * (1 + 2 + 3) + 30  # the backstop for connect_timeout 1, read_timeout 2, total_timeout 3


class FakeFetch:
    def __init__(self) -> None:
        self.handed: list[Request] = []
        self.reports: list[Sent] = []

    def submit(self, requests: list[Request]) -> bool:
        self.handed.extend(requests)
        return True

    def results(self) -> list:
        return []

    def take_sent(self) -> list[Sent]:
        reports, self.reports = self.reports, []
        return reports


def coordinator(queued: list[Request]) -> tuple[SimpleNamespace, list[tuple[str, str]]]:
    """Just what _hand_out, _handle_fetches and _give_up_stalled read, with a Crawl-delay-sized queue."""
    cfg = SimpleNamespace(fetch=SimpleNamespace(connect_timeout=1.0, read_timeout=2.0, total_timeout=3.0, delay=0.0),
                          run=SimpleNamespace(fetch_threads=16))
    failed: list[tuple[str, str]] = []
    todo = list(queued)
    fake = SimpleNamespace(
        cfg=cfg, fetch=FakeFetch(), pool=SimpleNamespace(has_room=lambda: True),
        frontier=SimpleNamespace(next=lambda now: todo.pop(0) if todo else None, given_up=lambda: []),
        _failed=lambda req, stage, error, status=None: failed.append((req.url, error)))
    return fake, failed


def test_requests_handed_over_but_never_sent_are_never_given_up_as_stalled() -> None:
    """The testers' Crawl-delay: 60 run: pages still queued in the fetch process were recorded as
    "no complete response after 320 s" although they were never requested."""
    requests = [Request(f"http://slow.test/p{i}", "page") for i in range(6)]
    fake, failed = coordinator(requests)
    fetching: dict = {}
    Coordinator._hand_out(fake, fetching, 1000.0, 0, None)
    assert [r.url for r in fake.fetch.handed] == [r.url for r in requests]
    Coordinator._give_up_stalled(fake, fetching, 1000.0 + 100 * LIMIT)
    assert failed == [] and len(fetching) == 6


def test_the_stall_clock_runs_from_sent_and_stops_while_a_redirect_waits_its_turn() -> None:
    from etl.fetch import Sent

    requests = [Request(f"http://slow.test/p{i}", "page") for i in range(3)]
    fake, failed = coordinator(requests)
    fetching: dict = {}
    Coordinator._hand_out(fake, fetching, time.monotonic(), 0, None)
    fake.fetch.reports = [Sent(requests[0].url), Sent(requests[1].url), Sent(requests[1].url, waiting=True)]
    Coordinator._handle_fetches(fake, fetching)
    Coordinator._give_up_stalled(fake, fetching, time.monotonic() + LIMIT - 5)
    assert failed == []
    Coordinator._give_up_stalled(fake, fetching, time.monotonic() + LIMIT + 1)
    assert [url for url, _ in failed] == [requests[0].url]  # p1 is back in the queue, p2 never left
    assert "after it was sent" in failed[0][1]
    assert sorted(fetching) == [requests[1].url, requests[2].url]


def test_the_fetch_process_reports_sent_when_a_request_leaves_not_when_it_arrives() -> None:
    """With robots.txt asking for Crawl-delay: 1, four requests handed over at once leave about a second
    apart, and each is reported sent just before it leaves (and before its result)."""
    with HostileServer(robots="User-agent: *\nCrawl-delay: 1\n") as server:
        settings = FetchSettings(user_agent="etl-test/1.0", per_host=4, delay=0.0, connect_timeout=2.0,
                                 read_timeout=5.0, total_timeout=5.0, robots=True)
        stage = FetchStage(mp.get_context("spawn"), settings, server.domains, 4)
        try:
            urls = [f"{server.base}/p{i}" for i in range(4)]
            stage.submit([Request(u, "page") for u in urls])
            sent_at: dict[str, float] = {}
            done: set[str] = set()
            deadline = time.monotonic() + 30
            while len(done) < 4 and time.monotonic() < deadline:
                if stage.conn.poll(0.1):
                    results = stage.results()
                    now = time.monotonic()
                    for s in stage.take_sent():
                        sent_at.setdefault(s.url, now)
                    for r in results:
                        assert isinstance(r, Fetched) and r.url in sent_at  # Sent came first
                        done.add(r.url)
        finally:
            stage.close()
    assert done == set(urls)
    times = sorted(sent_at.values())
    assert times[-1] - times[0] >= 2.0  # three Crawl-delays between the first and the last

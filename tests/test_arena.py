"""Fetched pages cross from the fetch process to a parse process once, through the shared arena
(etl/arena.py): the coordinator forwards slot numbers, not bytes. A slot is filled again only after its
page's result is back, so a crawl through a handful of slots must still give every row exactly."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from etl.arena import Arena, Slot
from etl.config.model import FetchSettings
from etl.fetch import FetchStage
from etl.items import Fetched, Page, Request
from tests.test_e2e_listings import assert_matches_truth, crawl

SMALL, BIG = b"<p>" + b"s" * 10_000, b"<p>" + b"b" * 400_000  # BIG is larger than a slot


class _Pages(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = BIG if self.path.startswith("/big") else SMALL
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def site():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _settings() -> FetchSettings:
    return FetchSettings(user_agent="etl-test/1.0", per_host=8, delay=0.0, connect_timeout=5, read_timeout=10,
                         max_bytes=10_000_000, robots=False)


def _fetch(stage: FetchStage, urls: list[str]) -> dict[str, Fetched]:
    urls = [f"http://{u}" for u in urls]
    stage.submit([Request(u, "page") for u in urls])
    got: dict[str, Fetched] = {}
    deadline = time.monotonic() + 30
    while len(got) < len(urls) and time.monotonic() < deadline:
        if stage.conn.poll(1):
            for item in stage.results():
                assert type(item) is Fetched, item
                got[item.url] = item
    assert len(got) == len(urls), f"only {len(got)} of {len(urls)} results"
    return got


@contextmanager
def _stage(site: str, slots: int) -> Iterator[tuple[FetchStage, Arena]]:
    """A fetch stage on `slots` slots of 64 KB, closed with its arena afterwards."""
    arena = Arena.create(slots, 64 * 1024)
    stage = FetchStage(mp.get_context("spawn"), _settings(), (site,), 2, arena=arena)
    try:
        yield stage, arena
    finally:
        stage.close()
        arena.close()


def test_a_page_lies_in_the_arena_and_a_page_larger_than_a_slot_takes_the_pipe(site) -> None:
    with _stage(site, 4) as (stage, arena):
        got = _fetch(stage, [f"{site}/small", f"{site}/big"])
        small, big = got[f"http://{site}/small"], got[f"http://{site}/big"]
        assert small.payload == b"" and small.slot is not None
        page = arena.load(small.slot)
        assert isinstance(page, Page) and page.body == SMALL
        assert big.slot is None and pickle.loads(big.payload).body == BIG


def test_a_slot_is_filled_again_only_once_it_is_given_back(site) -> None:
    with _stage(site, 2) as (stage, arena):
        first = _fetch(stage, [f"{site}/a", f"{site}/b"])
        held = {f.slot.index for f in first.values()}
        assert held == {0, 1}
        third = _fetch(stage, [f"{site}/c"])[f"http://{site}/c"]
        assert third.slot is None and pickle.loads(third.payload).body == SMALL  # both slots are held
        stage.free(first[f"http://{site}/a"].slot)
        again = _fetch(stage, [f"{site}/d"])[f"http://{site}/d"]
        assert again.slot == Slot(first[f"http://{site}/a"].slot.index, again.slot.length)
        assert arena.load(first[f"http://{site}/b"].slot).body == SMALL  # the held slot was not written over


def test_a_restarted_fetch_process_leaves_the_slots_still_in_use_alone(site) -> None:
    with _stage(site, 2) as (stage, arena):
        first = _fetch(stage, [f"{site}/a", f"{site}/b"])
        kept = first[f"http://{site}/a"].slot.index  # its page still waits for a parse process
        os.kill(stage.process.pid, signal.SIGKILL)
        stage.process.join(10)
        stage.restart(in_use={kept})
        # a parse result that came back in the same turn gives the other slot back late: the new process
        # already has it, and holding it twice would let two pages be written into it at once
        stage.free(first[f"http://{site}/b"].slot)
        after = _fetch(stage, [f"{site}/c", f"{site}/d"])
        slots = [f.slot.index for f in after.values() if f.slot is not None]
        assert slots == [1 - kept]  # the other slot once; the second page found none free and took the pipe
        assert arena.load(first[f"http://{site}/a"].slot).body == SMALL


def test_an_arena_is_shared_with_a_spawned_process() -> None:
    arena = Arena.create(2, 4096)
    slot = arena.put(deque([1]), pickle.dumps({"x": "页"}))
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_echo_from_arena, args=(child, arena, slot))
    proc.start()
    try:
        assert parent.poll(30) and parent.recv() == {"x": "页"}
    finally:
        proc.join(10)
        arena.close()


def _echo_from_arena(conn, arena: Arena, slot: Slot) -> None:
    conn.send(arena.load(slot))


def test_a_crawl_through_three_slots_gives_every_row_exactly(demo_config, sqlite_url, monkeypatch) -> None:
    """16 fetch threads share 3 slots: slots are reused thousands of times and most pages find none
    free. A slot given back before its page was parsed would hand a parse process another page's bytes,
    and some listing would go missing or come twice."""
    import etl.pipeline

    real_create, uses = Arena.create, {"slot": 0, "pipe": 0}
    monkeypatch.setattr(etl.pipeline.Arena, "create", classmethod(lambda cls, n: real_create(3)))
    real_fetched = etl.pipeline.Job.fetched

    def counted(request, status, payload, slot=None):
        uses["slot" if slot is not None else "pipe"] += 1
        return real_fetched(request, status, payload, slot)

    monkeypatch.setattr(etl.pipeline.Job, "fetched", staticmethod(counted))
    state, stats = crawl(demo_config, sqlite_url, "run.fetch_threads=16")
    assert stats.pages_failed == 0
    assert_matches_truth(sqlite_url)
    assert uses["slot"] > 500 and uses["pipe"] > 0, uses

"""The curl engine's transfers run on one driver thread (etl/fetch/curl_multi.py): many fetch threads,
one thread in libcurl's callbacks, each page whole and its own, and nothing lost when the driver idles
out, is slower than its limit, or meets descriptor numbers select() could not watch."""

from __future__ import annotations

import os
import resource
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from etl.config.model import FetchSettings
from etl.fetch import Fetcher, FetchFailure, curl_engine, curl_multi
from etl.items import Page, Request
from tests.test_fetch_wire import RawServer, reply


def _page(n: int) -> bytes:
    body = (f"<html><body>page {n} " + "二手房 " * 3000 + "</body></html>").encode()
    return reply("200 OK", {"Content-Type": "text/html", "Content-Length": str(len(body))}, body)


def _fetcher(server: RawServer, **settings) -> Fetcher:
    s = FetchSettings(**{"robots": False, "connect_timeout": 2.0, "read_timeout": 2.0, "total_timeout": 10.0,
                         **settings})
    return Fetcher(s, (server.base.split("/")[2],), pool_size=16, http="curl")


def test_sixteen_fetch_threads_share_one_driver_thread_and_each_gets_its_own_page(monkeypatch) -> None:
    callers: set[str] = set()
    write = curl_engine._Transfer.write

    def recording(self, data: bytes):
        callers.add(threading.current_thread().name)
        return write(self, data)

    monkeypatch.setattr(curl_engine._Transfer, "write", recording)
    replies = {f"/p{n}": _page(n) for n in range(64)}
    with RawServer(replies) as server:
        fetcher = _fetcher(server)
        with ThreadPoolExecutor(16, thread_name_prefix="fetch") as pool:
            pages = list(pool.map(lambda n: fetcher.fetch(Request(f"{server.base}/p{n}", "page")), range(64)))
    assert [getattr(p, "error", None) for p in pages] == [None] * 64
    assert all(isinstance(p, Page) and p.status == 200 for p in pages)
    assert [p.body for p in pages] == [replies[f"/p{n}"].partition(b"\r\n\r\n")[2] for n in range(64)]
    assert callers == {"curl-multi"}  # libcurl called back into Python on the driver thread only


def test_an_idle_driver_thread_ends_and_the_next_fetch_starts_another(monkeypatch) -> None:
    monkeypatch.setattr(curl_multi, "IDLE_EXIT", 0.2)
    monkeypatch.setattr(curl_multi, "POLL_MAX", 0.05)
    with RawServer({"/a": _page(1), "/b": _page(2)}) as server:
        fetcher = _fetcher(server)
        first = fetcher.fetch(Request(server.base + "/a", "page"))
        driver = fetcher.http.driver
        gone = driver.thread
        assert gone is not None and gone.is_alive()
        gone.join(timeout=5)
        assert not gone.is_alive() and driver.thread is None
        second = fetcher.fetch(Request(server.base + "/b", "page"))
    assert isinstance(first, Page) and b"page 1" in first.body
    assert isinstance(second, Page) and b"page 2" in second.body
    assert driver.thread is not gone


def test_a_transfer_the_driver_does_not_finish_in_time_is_a_retryable_too_slow_failure(monkeypatch) -> None:
    """The wait for the driver has a limit of its own: past it the fetch thread gives up with the
    whole-response failure and takes a new handle, since the old one may still be on the multi stack."""
    monkeypatch.setattr(curl_engine, "DRIVER_GRACE", -9.5)  # 10 s total_timeout: a 0.5 s wait

    def stall(handler) -> None:
        time.sleep(3)

    with RawServer({"/slow": stall, "/ok": _page(3)}) as server:
        fetcher = _fetcher(server, read_timeout=30.0)
        t0 = time.monotonic()
        failed = fetcher.fetch(Request(server.base + "/slow", "page"))
        took = time.monotonic() - t0
        after = fetcher.fetch(Request(server.base + "/ok", "page"))
    assert isinstance(failed, FetchFailure) and failed.retryable
    assert failed.error == "response slower than total_timeout=10s" and took < 2.5
    assert isinstance(after, Page) and b"page 3" in after.body


def test_sockets_numbered_past_select_limit_are_driven_as_any_other() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1300:
        pytest.skip(f"the hard descriptor limit ({hard}) leaves no room past 1024")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1300) if hard == resource.RLIM_INFINITY
                                                else min(max(soft, 1300), hard), hard))
    spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]  # every new socket is numbered > 1024
    try:
        with RawServer({f"/p{n}": _page(n) for n in range(8)}) as server:
            fetcher = _fetcher(server)
            t0 = time.monotonic()
            with ThreadPoolExecutor(4) as pool:
                pages = list(pool.map(lambda n: fetcher.fetch(Request(f"{server.base}/p{n}", "page")), range(8)))
            took = time.monotonic() - t0
    finally:
        for fd in spare:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert all(isinstance(p, Page) and f"page {n} ".encode() in p.body for n, p in enumerate(pages))
    assert took < 5  # not one poll interval per step of each transfer

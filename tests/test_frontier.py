"""The frontier on its own: priorities, the canonical seen-set with a stable hash, retries with due times,
spilling past its memory and reading back."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from etl.frontier import LocalFrontier
from etl.items import Request
from etl.urls import canonical, fingerprint


def prio(req: Request) -> int:
    return 0 if req.kind == "detail" else 1 if req.meta.get("page", 1) > 1 else 2


def test_details_first_then_more_of_a_list_then_newest_facet() -> None:
    f = LocalFrontier(prio, memory=100)
    f.add([Request("http://a/f1", "facet"), Request("http://a/f2", "facet"),
           Request("http://a/l?p=2", "list", {"page": 2}), Request("http://a/d1", "detail"),
           Request("http://a/d2", "detail")])
    order = [f.next(0.0).url for _ in range(5)]
    assert order == ["http://a/d1", "http://a/d2", "http://a/l?p=2", "http://a/f2", "http://a/f1"]
    assert f.next(0.0) is None and not f.remaining()


@pytest.mark.parametrize("spelling", [
    "HTTP://A.example:80/x/./y/../z?b=2&a=1#top",
    "http://a.example/x/z?a=1&b=2",
    "http://a.example/x/%7A?a=1&b=2",
])
def test_spellings_of_one_page_are_one_entry(spelling: str) -> None:
    f = LocalFrontier(prio, memory=10)
    assert [r.url for r in f.add([Request("http://a.example/x/z?a=1&b=2", "detail")])]
    assert f.add([Request(spelling, "detail")]) == []  # seen: not queued, not persisted again
    assert canonical(spelling) == "http://a.example/x/z?a=1&b=2"


def test_a_page_is_fetched_as_written_while_deduplicated_canonically() -> None:
    f = LocalFrontier(prio, memory=10)
    f.add([Request("http://a.example/Path/%7euser/?q=1#frag", "detail")])
    assert f.next(0.0).url == "http://a.example/Path/%7euser/?q=1#frag"


def test_different_pages_stay_different() -> None:
    urls = ["http://a.example/x", "http://a.example/X", "https://a.example/x", "http://a.example:8080/x",
            "http://a.example/x?a=1", "http://a.example/x/"]
    assert len({fingerprint(u) for u in urls}) == len(urls)


def test_fingerprint_is_the_same_in_every_process() -> None:
    """Python's hash() of a str is salted per process; the frontier's key must not be."""
    url = "http://a.example/列表/pg2/?x=1"
    code = f"from etl.urls import fingerprint; print(fingerprint({url!r}), hash({url!r}))"
    outs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout.split() for seed in ("1", "2")]
    assert outs[0][0] == outs[1][0] == str(fingerprint(url))
    assert outs[0][1] != outs[1][1]  # the salted hash the frontier used to key on differs


def test_retries_come_back_when_due() -> None:
    f = LocalFrontier(prio, memory=10)
    req = Request("http://a/x", "detail")
    f.retry(req, due=10.0)
    assert f.next(5.0) is None and f.remaining().retrying == 1 and bool(f.remaining())
    assert f.next(10.0) is req and not f.remaining()


def test_spill_past_memory_and_read_back_skipping_busy() -> None:
    stored: list[Request] = []

    def read_back(limit: int, busy: set[str]) -> list[Request]:
        return stored[:limit]

    f = LocalFrontier(prio, memory=2, read_back=read_back)
    links = [Request(f"http://a/d{i}", "detail") for i in range(5)]
    stored.extend(f.add(links))  # the writer persists every new link
    assert len(stored) == 5 and f.remaining().ready == 2 and f.remaining().spilled
    got = [f.next(0.0).url, f.next(0.0).url]
    stored[:] = [r for r in stored if r.url not in got]  # done in the database
    assert f.needs_refill()
    f.refill(busy={"http://a/d2"})  # in flight elsewhere: the database still says pending
    assert f.remaining().ready == 2 and not f.remaining().spilled
    assert {f.next(0.0).url, f.next(0.0).url} == {"http://a/d3", "http://a/d4"}


def test_load_takes_pending_and_seen_from_the_database() -> None:
    f = LocalFrontier(prio, memory=1)
    f.load([Request("http://a/1", "detail"), Request("http://a/2", "detail")], {fingerprint("http://a/3")})
    assert f.remaining().spilled and f.remaining().ready == 1
    assert f.add([Request("http://a/3", "detail")]) == []

"""The frontier on its own: priorities, the canonical seen-set with a stable hash, retries with due times,
spilling past its memory and reading back."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


class FakeTable:
    """The frontier table as the frontier relies on it: insert-if-new by key, pending rows read back."""

    def __init__(self) -> None:
        self.rows: dict[int, tuple[Request, str]] = {}

    def insert_new(self, links: list[Request]) -> None:
        for link in links:
            self.rows.setdefault(fingerprint(link.url), (link, "pending"))

    def read_back(self, limit: int, busy: set[str]) -> list[Request]:
        return [Request(r.url, r.kind, key=k) for k, (r, st) in self.rows.items() if st == "pending"][:limit]

    def known(self, keys: list[int]) -> set[int]:
        return {k for k in keys if k in self.rows}


def crawl_graph(f: LocalFrontier, table: FakeTable, pages: int) -> dict[str, int]:
    """Page i links to the next five and back to page 0 (duplicates everywhere); returns fetches by URL."""
    start = Request("http://a/p/0", "detail")
    table.insert_new([start])
    f.load([start], {fingerprint(start.url)})
    fetched: dict[str, int] = {}
    while True:
        if f.needs_refill():
            f.refill(busy=set())
        req = f.next(0.0)
        if req is None:
            assert not f.remaining()
            return fetched
        fetched[req.url] = fetched.get(req.url, 0) + 1
        i = int(req.url.rsplit("/", 1)[1])
        links = [Request(f"http://a/p/{(i + d) % pages}", "detail") for d in (1, 2, 3, 4, 5)]
        table.insert_new(f.add(links + [Request("http://a/p/0", "detail")]))  # the writer's insert-if-new
        table.rows[fingerprint(req.url)] = (req, "done")


@pytest.mark.parametrize("lookup", [True, False])
def test_past_its_cap_the_seen_set_stops_growing_and_the_database_dedupes(lookup: bool) -> None:
    """A seen-set of 10 on a site of 300 pages: every page is fetched once, none twice, none lost, with or
    without the database lookup (which only keeps the count of distinct URLs exact)."""
    table = FakeTable()
    f = LocalFrontier(prio, memory=5, read_back=table.read_back, seen_memory=10,
                      known=table.known if lookup else None)
    fetched = crawl_graph(f, table, pages=300)
    assert len(fetched) == 300 and set(fetched.values()) == {1}
    assert len(f.seen) == 10
    if lookup:
        assert f.urls == 300


def test_max_urls_drops_new_links_and_counts_each_once() -> None:
    f = LocalFrontier(prio, memory=100, max_urls=5)
    f.load([Request("http://a/start", "detail")], {fingerprint("http://a/start")})
    links = [Request(f"http://a/d{i}", "detail") for i in range(10)]
    assert [r.url for r in f.add(links + [Request("http://a/start", "detail")])] == [f"http://a/d{i}" for i in range(4)]
    assert f.urls == 5 and f.dropped == 6 and f.reached
    assert f.add(links) == [] and f.dropped == 6  # seen again: neither new nor dropped again


def test_max_urls_counts_distinct_urls_past_the_seen_cap() -> None:
    """Past the cap the database says what is new, so links seen before are not counted towards max_urls."""
    table = FakeTable()
    f = LocalFrontier(prio, memory=100, read_back=table.read_back, seen_memory=2, max_urls=6, known=table.known)
    f.load([], set())
    table.insert_new(f.add([Request(f"http://a/d{i}", "detail") for i in range(4)]))
    for _ in range(3):  # the same links again and again: known to the database, not counted
        assert f.add([Request(f"http://a/d{i}", "detail") for i in range(4)]) == []
    assert f.urls == 4 and f.dropped == 0
    new = f.add([Request(f"http://a/e{i}", "detail") for i in range(5)])
    assert len(new) == 2 and f.urls == 6 and f.dropped == 3


def test_a_resume_reads_a_bounded_share_of_a_big_frontier() -> None:
    """A resume after a link farm streamed every row into memory (Requests and keys): now the share the
    frontier holds, and the count of all."""
    from sqlalchemy import create_engine, insert

    from etl import schema
    from etl.frontier import store

    engine = create_engine("sqlite://")
    schema.metadata.create_all(engine, tables=[schema.frontier])
    with engine.begin() as conn:
        conn.execute(insert(schema.frontier), [
            {"run_id": 1, "url_key": fingerprint(f"http://a/{i}"), "url": f"http://a/{i}", "kind": "detail",
             "meta": "{}", "state": "done" if i % 4 == 0 else "pending"} for i in range(2000)])
        snap = store.load(conn, 1, pending_limit=10, seen_limit=50)
        assert len(snap.pending) == 11 and len(snap.seen) == 50  # one more than held: "more wait"
        assert snap.urls == 2000 and snap.done == 500
        assert store.known(conn, 1, [fingerprint("http://a/7"), fingerprint("http://b/7")]) == {fingerprint("http://a/7")}
    f = LocalFrontier(prio, memory=10, seen_memory=50)
    f.load(snap.pending, snap.seen, snap.urls)
    assert f.remaining().spilled and f.seen_full and f.urls == 2000


_CLEAN = {"hosts": ["a.example", "127.0.0.1", "localhost", "sub.a-b.example"], "ports": ["", ":8000"],
          "segments": ["a", "B", "~u", "a.b", "-_", "", "x."], "keys": ["a", "b", "B", "a.b", "~"],
          "values": ["", "1", "2", "x~y"], "schemes": ["http", "https"], "tails": [""]}
_ODD = {"hosts": ["A.example", "xn--fsq.example", "a-.example", "-a.example", "a..example", "a.example.",
                  "x" * 64 + ".example"], "ports": [":80", ":443", ":080", ":0", ":99999", ":"],
        "segments": [".", "..", "%7e", "%41", "é", "a b", "!", "'", "(x)", "a;b", "a,b", ".x"],
        "keys": ["a+b", "%41", ""], "values": ["é", "a b", "%2f"], "schemes": ["HTTP"],
        "tails": ["?", "#frag", "?#x"]}


@st.composite
def _urls(draw) -> str:
    """Mostly clean URLs (the fast path's own) with, now and then, one odd part of each kind."""
    def part(kind: str) -> str:
        odd = draw(st.integers(0, 9)) == 0
        return draw(st.sampled_from(_ODD[kind] if odd else _CLEAN[kind]))

    path = "".join("/" + part("segments") for _ in range(draw(st.integers(0, 4))))
    pairs = [(part("keys"), part("values")) for _ in range(draw(st.integers(0, 4)))]
    query = "&".join(f"{k}={v}" if draw(st.integers(0, 9)) or v else k for k, v in pairs)
    return (f"{part('schemes')}://{part('hosts')}{part('ports')}{path}" + (f"?{query}" if query else "")
            + part("tails"))


@settings(max_examples=2000, deadline=None)
@given(_urls())
def test_the_fast_path_of_canonical_agrees_with_w3lib(url: str) -> None:
    """canonical() returns a URL as it is when it looks canonical already, without asking w3lib: on
    every spelling around the edges of that test (case, default and zero-led ports, dot segments,
    escapes, IDNA labels, query order and blank values, fragments), the answer is w3lib's."""
    from etl.urls import _canonicalized

    assert canonical(url) == _canonicalized(url)


def test_the_fast_path_takes_the_usual_links() -> None:
    from etl.urls import _already_canonical

    for url in ["http://127.0.0.1:8000/bj/ershoufang/pg2/", "https://sh.example.com/ershoufang/1011.html",
                "https://a.example/list?city=bj&page=2"]:
        assert _already_canonical(url), url
    for url in ["https://a.example/list?page=2&city=bj", "HTTP://a.example/", "http://a.example:80/",
                "http://a.example/a/../b", "http://a.example/%7e", "http://a.example"]:
        assert not _already_canonical(url), url

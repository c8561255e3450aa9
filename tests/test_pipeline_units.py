"""Coordinator decisions that need no processes: giving up on a fetch the server stalls forever."""

from __future__ import annotations

from types import SimpleNamespace

from etl.items import Request
from etl.pipeline import Coordinator


def test_a_fetch_stalled_past_the_bound_is_recorded_as_failed_and_forgotten() -> None:
    cfg = SimpleNamespace(fetch=SimpleNamespace(connect_timeout=1.0, read_timeout=2.0, total_timeout=3.0, delay=0.0),
                          run=SimpleNamespace(fetch_threads=16))
    failed: list[tuple] = []
    fake = SimpleNamespace(cfg=cfg, _failed=lambda req, stage, error, status=None: failed.append((req.url, stage, error)))
    limit = 2 * (1 + 2 + 3) + 30
    fresh, stalled = Request("http://a.test/fresh", "detail"), Request("http://a.test/stalled", "detail")
    fetching = {fresh.url: (fresh, 1000.0 - limit + 5), stalled.url: (stalled, 1000.0 - limit - 1)}
    Coordinator._give_up_stalled(fake, fetching, 1000.0)
    assert list(fetching) == [fresh.url]  # a late result for the stalled one is ignored
    assert failed and failed[0][:2] == (stalled.url, "fetch") and "stalled" in failed[0][2]


def test_only_connection_trouble_is_waited_out() -> None:
    from etl.dialects.postgresql import PostgreSQLDialect

    _is_disconnect = PostgreSQLDialect().is_transient

    class PgError(Exception):
        def __init__(self, code: str) -> None:
            self.pgcode = code

    assert _is_disconnect(PgError("08006"))  # connection failure
    assert _is_disconnect(PgError("57P01"))  # admin shutdown
    assert _is_disconnect(PgError("40P01"))  # deadlock: retry the batch
    assert not _is_disconnect(PgError("54000"))  # program limit exceeded (an over-long index key)
    assert not _is_disconnect(PgError("57014"))  # query canceled
    assert not _is_disconnect(PgError("22021"))  # bad encoding


def test_text_for_the_database_has_no_nul_and_no_lone_surrogate() -> None:
    from etl.parse.cleaners import clean_text
    from etl.parse.extract import _json_path

    assert clean_text("a\x00b\ud800c") == "a\ufffdb?c"
    assert clean_text("北京") == "北京"
    assert _json_path('{"v": "x\\ud800y"}', "v") == "x?y"  # a JSON escape Python decodes to a lone surrogate


def test_a_fetch_stage_with_a_thread_stuck_on_a_silent_server_still_closes() -> None:
    """The stage process ignores SIGTERM; close() must not leave it running (the interpreter's exit would
    then wait for it forever, as a run against a server trickling bytes did)."""
    import multiprocessing as mp
    import socket
    import time

    from etl.fetch import FetchStage

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections complete in the backlog; nothing is ever answered
    port = silent.getsockname()[1]
    from etl.config.model import FetchSettings

    settings = FetchSettings(user_agent="t", per_host=4, delay=0.0, connect_timeout=5, read_timeout=120,
                             max_bytes=1000, robots=False)
    stage = FetchStage(mp.get_context("spawn"), settings, ("127.0.0.1",), 2)
    try:
        stage.submit([Request(f"http://127.0.0.1:{port}/x", "detail")])
        time.sleep(1.0)  # the request is in flight, its thread blocked in a read
        t0 = time.monotonic()
        stage.close()
        assert time.monotonic() - t0 < 30
        assert not stage.process.is_alive()
    finally:
        silent.close()


def test_a_big_page_goes_to_the_writer_in_shares_with_its_done_mark_last() -> None:
    """One page of 500,000 items took the writer to 1.6 GB: its rows now travel in shares of batch_size,
    and the page is marked done (with its links) only by the last share."""
    from etl.items import Link, PageDone, PageRows, Parsed
    from etl.pipeline import Stats
    from etl.urls import frontier_key

    posted: list = []
    new_link = Request("http://a.test/next", "list")
    fake = SimpleNamespace(cfg=SimpleNamespace(run=SimpleNamespace(batch_size=100)), stats=Stats(),
                           writer=SimpleNamespace(post=posted.append),
                           frontier=SimpleNamespace(add=lambda links: list(links), finished=lambda req: None),
                           known=SimpleNamespace(sift=lambda parsed, status: (parsed.links, [])))
    fake._send_page = lambda *args: Coordinator._send_page(fake, *args)
    page = Request("http://a.test/big", "list")
    rows = [{"listing_id": str(i)} for i in range(1050)]
    Coordinator._parsed(fake, Parsed(page, rows=rows, links=[new_link]))
    assert max(len(m.rows) for m in posted) <= 100
    assert [r for m in posted for r in m.rows] == rows
    assert all(type(m) is PageRows for m in posted[:-1]) and type(posted[-1]) is PageDone
    assert {m.key for m in posted} == {frontier_key(page)}
    assert posted[-1].state == "done" and posted[-1].links == [Link(new_link.url, frontier_key(new_link), "list", "{}")]
    assert fake.stats.rows == 1050 and fake.stats.pages_ok == 1


def test_rows_a_parse_process_pickled_reach_the_writer_unopened() -> None:
    """The coordinator only counts rows: shares the parse process pickled (Parsed.pack) are posted as they
    came, in order, the unit's replaces with the first and its done mark with the last."""
    from etl.items import PageDone, PageRows, Parsed, RowShare
    from etl.pipeline import Stats

    posted: list = []
    fake = SimpleNamespace(cfg=SimpleNamespace(run=SimpleNamespace(batch_size=100)), stats=Stats(),
                           writer=SimpleNamespace(post=posted.append),
                           frontier=SimpleNamespace(add=lambda links: list(links), finished=lambda req: None),
                           known=SimpleNamespace(sift=lambda parsed, status: (parsed.links, [])))
    fake._send_page = lambda *args: Coordinator._send_page(fake, *args)
    rows = [{"news_id": str(i // 3), "stock_code": f"{i:06d}"} for i in range(250)]
    parsed = Parsed(Request("sql://news/1-100", "range"), rows=list(rows), replaces=[("job", "0"), ("job", "1")])
    parsed.pack(100)
    assert parsed.rows == [] and [s.count for s in parsed.shares] == [100, 100, 50] and parsed.row_count == 250
    shares = list(parsed.shares)
    Coordinator._parsed(fake, parsed)
    assert [m.rows for m in posted] == shares and all(type(m.rows) is RowShare for m in posted)
    assert [type(m) for m in posted] == [PageRows, PageRows, PageDone] and posted[-1].state == "done"
    assert posted[0].replaces == [("job", "0"), ("job", "1")] and posted[1].replaces == posted[2].replaces == []
    assert [r for m in posted for r in m.rows.load()] == rows and fake.stats.rows == 250


def test_a_unit_in_one_pickled_share_carries_its_replaces_on_its_done_mark() -> None:
    from etl.items import PageDone, Parsed

    posted: list = []
    fake = SimpleNamespace(cfg=SimpleNamespace(run=SimpleNamespace(batch_size=100)),
                           writer=SimpleNamespace(post=posted.append))
    parsed = Parsed(Request("sql://news/1-2", "range"), rows=[{"news_id": "1"}], replaces=[("job", "1")])
    parsed.pack(100)
    Coordinator._send_page(fake, 7, parsed, [], {})
    assert len(posted) == 1 and type(posted[0]) is PageDone and posted[0].replaces == [("job", "1")]
    assert posted[0].rows.load() == [{"news_id": "1"}]

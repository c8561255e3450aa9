"""The writer's transactions and messages stay bounded whatever one page holds (a page of 500,000 items
took the writer to 1.6 GB), a page sent in shares is done only with its last share, and a database that
refuses every row says so in a few lines, not one per row."""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from etl.db import make_engine
from etl.items import Bundle, Link, PageDone, PageRows, RowShare, Stop, WriterDone
from etl.targets import target_spec
from etl.urls import fingerprint
from etl.write import Writer, WriterSettings, writer_main
from etl.writer_link import WriterLink
from tests.test_e2e_listings import table
from tests.test_faults_db import writer_for_run


def rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"source": "t", "listing_id": f"{i:06d}", "title": f"row {i}"} for i in range(start, start + n)]


@pytest.fixture
def signals_kept() -> Iterator[None]:
    """writer_main ignores SIGINT/SIGTERM (it runs as a child process); run in-process, put them back."""
    kept = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in kept.items():
        signal.signal(sig, handler)


def run_writer(url: str, messages: list[Any], batch_size: int, prepared: bool = False) -> WriterDone:
    """writer_main in this process, on plain queues: the messages, then Stop; returns what it reported."""
    if not prepared:
        writer_for_run(url).engine.dispose()  # migrated, run 1 open
    inbox: queue.Queue = queue.Queue()
    outbox: queue.Queue = queue.Queue()
    for msg in [*messages, Stop()]:
        inbox.put(msg)
    settings = WriterSettings(url=url, target=target_spec("listings", None, {}), run_id=1, batch_size=batch_size,
                              flush_seconds=60.0)
    writer_main(settings, inbox, outbox)
    done = outbox.get(timeout=5)
    assert type(done) is WriterDone, done
    return done


def test_a_bundle_of_pages_is_committed_in_transactions_of_at_most_batch_size(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch, signals_kept: None) -> None:
    sizes: list[int] = []
    commit = Writer._commit

    def counting(self, conn, batch, const):
        sizes.append(len(batch.rows))
        return commit(self, conn, batch, const)

    monkeypatch.setattr(Writer, "_commit", counting)
    pages = [PageDone(i, rows(30, 30 * i), [], "done") for i in range(10)]
    run_writer(sqlite_url, [Bundle(pages)], batch_size=100)
    assert sum(sizes) == 300 and max(sizes) <= 100, sizes
    assert table(sqlite_url, "SELECT count(*) AS n FROM listings")[0]["n"] == 300


def test_rows_still_pickled_are_written_as_rows_are(sqlite_url: str, signals_kept: None) -> None:
    """A parse process's shares (RowShare) reach the writer unopened: it writes them as plain rows, shares
    ahead of the done mark included."""
    first, last = RowShare.pack(rows(150), 100)
    done = run_writer(sqlite_url, [Bundle([PageRows(5, first), PageDone(5, last, [], "done")])], batch_size=100)
    assert done.rows_written == 150
    ids = [r["listing_id"] for r in table(sqlite_url, "SELECT listing_id FROM listings ORDER BY 1")]
    assert ids == [r["listing_id"] for r in rows(150)]


def test_a_page_in_shares_stays_pending_until_its_last_share_and_the_redo_is_exact(sqlite_url: str) -> None:
    url = "http://x.test/big"
    key = fingerprint(url)
    writer = writer_for_run(sqlite_url)
    writer.s.batch_size = 100
    writer.take(PageDone(1, [], [Link(url, key, "list", "{}")], "done"))  # the big page is discovered
    writer.commit()
    writer.take(PageRows(key, rows(60)))
    writer.take(PageRows(key, rows(60, 60)))  # 120 > batch_size: the first share is committed before this joins
    writer.engine.dispose()  # the writer dies here: the second share and the page's mark never arrive

    def state() -> tuple[int, str]:
        n = table(sqlite_url, "SELECT count(*) AS n FROM listings")[0]["n"]
        return n, table(sqlite_url, "SELECT state FROM frontier WHERE url_key = :k", k=key)[0]["state"]

    assert state() == (60, "pending")
    redo = Writer(writer.s)  # the next writer (recovery or resume) gets the whole page again
    for start in range(0, 240, 60):
        redo.take(PageRows(key, rows(60, start)))
    redo.take(PageDone(key, rows(10, 240), [], "done"))
    redo.commit()
    redo.engine.dispose()
    assert state() == (250, "done")
    ids = [r["listing_id"] for r in table(sqlite_url, "SELECT listing_id FROM listings ORDER BY 1")]
    assert ids == [f"{i:06d}" for i in range(250)]


def test_bundles_to_the_writer_hold_at_most_batch_size_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    link = WriterLink(ctx=None)
    link.bundle_rows = 250  # what start() sets from batch_size
    sent: list[Any] = []
    monkeypatch.setattr(link, "send", sent.append)
    for i in range(20):
        link.post(PageRows(1, rows(100, 100 * i)))
    link.post(PageDone(1, rows(10, 2000), [], "done"))
    link.flush()
    per_bundle = [sum(len(m.rows) for m in b.messages) for b in sent]
    assert sum(per_bundle) == 2010 and max(per_bundle) <= 250, per_bundle
    assert sent[-1].messages[-1].key == 1 and type(sent[-1].messages[-1]) is PageDone


def refuse_every_row(url: str) -> None:
    """What a user's extra NOT NULL column does to the writer's rows, in SQLite's words: a trigger."""
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON listings "
                          "BEGIN SELECT RAISE(ABORT, 'NOT NULL constraint failed: listings.owner'); END"))
    engine.dispose()


def test_rows_refused_for_one_reason_are_logged_a_few_times_then_counted(
        sqlite_url: str, caplog: pytest.LogCaptureFixture, signals_kept: None) -> None:
    writer_for_run(sqlite_url).engine.dispose()
    refuse_every_row(sqlite_url)
    caplog.set_level(logging.WARNING, logger="etl.write")
    done = run_writer(sqlite_url, [Bundle([PageDone(i, rows(10, 10 * i), [], "done") for i in range(5)])],
                      batch_size=1000, prepared=True)
    lines = [r.getMessage() for r in caplog.records if r.name == "etl.write"]
    assert len(lines) <= 5, lines
    assert any("47 more" in line and "listings.owner" in line for line in lines), lines
    assert done.rows_refused == 50 and "listings.owner" in (done.refusal or "")
    assert table(sqlite_url, "SELECT count(*) AS n FROM failures WHERE stage = 'write'")[0]["n"] == 50


def test_a_target_the_run_fills_keeps_planner_statistics_of_at_least_half_its_rows(pg_url: str) -> None:
    """A table filled moments ago has no statistics (autovacuum is a minute behind, or off), and
    PostgreSQL then planned each replace's DELETE … news_id IN (500 keys) as a scan of every row of the
    source, filtered: the 230k-article job spent 30 s of PostgreSQL CPU on it. The writer refreshes the
    statistics as the table grows (at ANALYZE_FIRST rows, then each time it has doubled), so the
    planner's idea of the table's size is never less than half of it."""
    from etl.write import ANALYZE_FIRST, Batch

    writer_for_run(pg_url).engine.dispose()
    writer = Writer(WriterSettings(url=pg_url, target=target_spec("stock_mentions", None, {}), run_id=1))
    articles = 3 * ANALYZE_FIRST // 2
    for start in range(0, articles, 5000):
        batch = Batch()
        for i in range(start, start + 5000):
            writer.add(batch, PageDone(i, [{"source": "j", "news_id": str(i), "stock_code": code, "stock_name": "n",
                                            "mention_count": 1} for code in ("600000", "000001")], [], "done",
                                       [("j", str(i))]))
        writer.flush(batch)
    with writer.engine.connect() as conn:
        estimate = conn.execute(text("SELECT reltuples FROM pg_class WHERE relname = 'stock_mentions'")).scalar()
        stored = conn.execute(text("SELECT count(*) FROM stock_mentions")).scalar()
    writer.engine.dispose()
    assert stored == 2 * articles
    assert estimate >= stored / 2, (estimate, stored)  # -1: never analyzed, the planner guesses


def test_a_history_table_the_run_fills_gets_planner_statistics_too(pg_url: str) -> None:
    """listing_history's version lookups (UPDATE … WHERE source = … AND listing_id IN (…)) scanned every
    version of the source per batch while the table had no statistics."""
    from etl.write import ANALYZE_FIRST, Batch

    writer = writer_for_run(pg_url)
    assert writer.history is not None  # listings keep history by default
    listings = 3 * ANALYZE_FIRST // 2
    for start in range(0, listings, 5000):
        batch = Batch()
        writer.add(batch, PageDone(start, [{"source": "t", "listing_id": str(i), "total_price": i}
                                           for i in range(start, start + 5000)], [], "done"))
        writer.flush(batch)
    with writer.engine.connect() as conn:
        estimate = conn.execute(text("SELECT reltuples FROM pg_class WHERE relname = 'listing_history'")).scalar()
        stored = conn.execute(text("SELECT count(*) FROM listing_history")).scalar()
    writer.engine.dispose()
    assert stored == listings and estimate >= stored / 2, (estimate, stored)


DIES_MID_MESSAGE = r"""
import multiprocessing, os, struct, sys, time
from etl.items import Bundle, PageDone
from etl.targets import target_spec
from etl.write import WriterSettings
from etl.writer_link import WriterLink
from tests.test_faults_db import writer_for_run
from tests.test_writer_batches import rows

url = sys.argv[1]
writer_for_run(url).engine.dispose()
link = WriterLink(multiprocessing.get_context("spawn"))
link.start(WriterSettings(url=url, target=target_spec("listings", None, {}), run_id=1, flush_seconds=60.0))
link.send(Bundle([PageDone(7, rows(5), [], "done")]))
time.sleep(1.0)  # the queue's feeder thread has written that bundle
sending = link.inbox._writer.fileno()
os.write(sending, struct.pack("!i", 1_000_000) + b"\x80\x05 only the start of a message")
print(link.process.pid, flush=True)
os._exit(0)  # as kill -9 in the middle of a send leaves the pipe
"""


def test_a_writer_whose_coordinator_died_mid_message_commits_and_exits(sqlite_url: str) -> None:
    """The flake of test_children_of_a_killed_coordinator_exit_quietly: the coordinator killed while its
    queue's feeder thread was writing a bundle left the writer reading the rest of it for ever (it held the
    pipe's sending end itself, so no EOF came). It must commit the whole messages it got, then leave."""
    root = Path(__file__).resolve().parent.parent
    coordinator = subprocess.Popen([sys.executable, "-c", DIES_MID_MESSAGE, sqlite_url], cwd=root, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    writer_pid = int(coordinator.stdout.readline())
    coordinator.wait(timeout=30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and os.path.exists(f"/proc/{writer_pid}"):
        time.sleep(0.2)
    alive = os.path.exists(f"/proc/{writer_pid}")
    if alive:
        os.kill(writer_pid, 9)
    assert not alive, "the writer was still reading a message its dead coordinator never finished"
    assert table(sqlite_url, "SELECT count(*) AS n FROM listings")[0]["n"] == 5

"""The writer: ONE process that owns every write to the database during a run.

It drains a bounded multiprocessing.Queue and commits in batches (flush on size or on time), one
transaction per batch. A batch holds the rows of finished pages *and* the frontier bookkeeping for those
pages (new links discovered, pages marked done, failures, run counters), so after a crash the database never
says a page is done without its rows, nor holds rows of a page it will fetch again without upserting
them idempotently. The coordinator writes only before the writer starts and after it has exited, so on
SQLite there is never a second writer waiting on the lock. What differs between databases (COPY,
conflict clauses, transient errors) is the dialect's (etl/dialects/).

Messages (etl/items.py): PageDone, FailureNote, Counts, Bundle of those, Sync (answered by Synced), Stop;
the writer ends with WriterDone or WriterError on its outbox.
"""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import os
import queue
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, delete, update

from etl import schema
from etl.config.model import TargetSpec
from etl.db import make_engine
from etl.dialects import dialect_for
from etl.errors import one_line
from etl.items import Bundle, Counts, FailureNote, PageDone, Stop, Sync, Synced, WriterDone, WriterError
from etl.parse.cleaners import clean_text
from etl.targets import resolve

log = logging.getLogger("etl.write")
_SLOW_BATCH = float(os.environ.get("ETL_TEST_SLOW_BATCH", "0") or 0)


@dataclass
class WriterSettings:
    url: str
    target: TargetSpec
    run_id: int
    batch_size: int = 1000
    flush_seconds: float = 1.0
    retry_seconds: float = 60.0
    rows_before: int = 0  # rows a resumed run had already written


@dataclass
class Batch:
    rows: dict[tuple, dict[str, Any]] = field(default_factory=dict)  # natural key → row (last wins)
    links: dict[int, tuple[str, str, str]] = field(default_factory=dict)  # url_key → (url, kind, meta)
    states: dict[int, str] = field(default_factory=dict)  # url_key → done | failed
    failures: list[dict[str, Any]] = field(default_factory=list)
    counts: Counts | None = None
    replaces: set[tuple] = field(default_factory=set)  # leading key values whose stored rows are replaced

    def __len__(self) -> int:
        """Size against batch_size: rows (and failures); frontier bookkeeping rides along uncounted
        up to four times as much, so a batch of 1000 rows is not split by its own page marks."""
        return max(len(self.rows) + len(self.failures), (len(self.states) + len(self.links)) // 4)


class Writer:
    def __init__(self, settings: WriterSettings) -> None:
        self.s = settings
        self.engine = make_engine(settings.url)
        self.dialect = dialect_for(settings.url)
        target = resolve(settings.target)
        self.table, self.key, self.keep = target.table, target.key, target.keep
        self.columns = [c.name for c in self.table.columns]
        self.rows_written = settings.rows_before
        self.batches = 0

    def add(self, batch: Batch, msg: Any) -> None:
        if type(msg) is Bundle:
            for inner in msg.messages:
                self.add(batch, inner)
        elif type(msg) is PageDone:
            columns, key = self.columns, self.key
            if msg.replaces:
                self._replace_in_batch(batch, msg.replaces)
            for row in msg.rows:
                full = {c: row.get(c) for c in columns}
                batch.rows[tuple(full[k] for k in key)] = full
            for link in msg.links:
                batch.links.setdefault(link.key, (link.url, link.kind, link.meta))
            batch.states[msg.key] = msg.state
        elif type(msg) is FailureNote:
            batch.failures.append({"run_id": self.s.run_id, "url": clean_text(msg.url), "stage": msg.stage,
                                   "status": msg.status, "error": clean_text(msg.error[:2000]),
                                   "attempts": msg.attempts, "at": dt.datetime.now(dt.UTC)})
        elif type(msg) is Counts:
            batch.counts = msg

    @staticmethod
    def _replace_in_batch(batch: Batch, replaces: list[tuple]) -> None:
        """A unit re-derived these keys: rows an earlier unit of this batch gave them go too (a page
        re-queued after a writer recovery), then the commit deletes what the database holds of them."""
        new = set(replaces)
        if batch.replaces and not new.isdisjoint(batch.replaces):
            n = len(replaces[0])
            batch.rows = {k: r for k, r in batch.rows.items() if k[:n] not in new}
        batch.replaces |= new

    def _delete_replaced(self, conn, replaces: set[tuple]) -> None:
        """Delete the stored rows under each replaced key prefix, in chunks (SQLite's variable limit)."""
        n = len(next(iter(replaces)))
        cols = [self.table.c[k] for k in self.key[:n]]
        by_scope: dict[tuple, list] = {}
        for prefix in replaces:
            by_scope.setdefault(prefix[:-1], []).append(prefix[-1])
        for scope, last in by_scope.items():
            same = [c == v for c, v in zip(cols[:-1], scope, strict=True)]
            last.sort()
            for i in range(0, len(last), 500):
                conn.execute(delete(self.table).where(and_(*same, cols[-1].in_(last[i:i + 500]))))

    def flush(self, batch: Batch) -> None:
        """Commit one batch in one transaction, retrying through connection loss for retry_seconds."""
        if not len(batch) and batch.counts is None and not batch.links and not batch.states:
            return
        now = dt.datetime.now(dt.UTC)
        rows = list(batch.rows.values())
        const = {c: v for c, v in (("first_seen", now), ("last_seen", now), ("run_id", self.s.run_id))
                 if c in self.columns}
        for row in rows:
            row.update(const)  # also kept on the rows: a refused batch is retried row by row
        # A page discovered and finished within one batch is inserted as finished: no UPDATE needed.
        links = [{"url_key": k, "url": u, "kind": kind, "meta": m, "state": batch.states.pop(k, "pending")}
                 for k, (u, kind, m) in batch.links.items()]
        deadline = time.monotonic() + self.s.retry_seconds
        delay = 0.5
        while True:
            try:
                with self.engine.begin() as conn:
                    written = self._commit(conn, batch, rows, links, const)
                self.rows_written = written
                self.batches += 1
                return
            except self.dialect.errors as exc:
                if not self.dialect.is_transient(exc) or time.monotonic() + delay > deadline:
                    raise
                log.warning("database unavailable (%s); retrying the batch in %.1fs", one_line(exc, 1000), delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
                self.engine.dispose()

    def _commit(self, conn, batch: Batch, rows: list[dict], links: list[dict], const: dict) -> int:
        d, f, run_id = self.dialect, schema.frontier, self.s.run_id
        if links:
            d.insert_new_rows(conn, f, ("run_id", "url_key"), links, {"run_id": run_id})
        if batch.replaces:  # same transaction as the new rows: an article is never seen half-replaced
            self._delete_replaced(conn, batch.replaces)
        if rows:
            try:
                with conn.begin_nested():
                    d.upsert_rows(conn, self.table, self.key, self.keep, rows, const)
            except Exception as exc:  # refused data (or a driver that cannot encode it)
                if d.is_transient(exc):
                    raise
                rows = self._row_by_row(conn, rows, batch)
        if batch.states:
            d.update_by_key(conn, f, {"run_id": run_id}, "url_key", "state", batch.states)
        if batch.failures:
            conn.execute(schema.failures.insert(), batch.failures)
        if _SLOW_BATCH:  # test hook: widen the window in which a crash hits an open transaction
            time.sleep(_SLOW_BATCH)
        written = self.rows_written + len(rows)
        values: dict[str, Any] = {"rows_written": written}
        if batch.counts:
            values.update(pages_ok=batch.counts.pages_ok, pages_failed=batch.counts.pages_failed)
        conn.execute(update(schema.runs).where(schema.runs.c.id == run_id).values(**values))
        return written

    def _row_by_row(self, conn, rows: list[dict[str, Any]], batch: Batch) -> list[dict[str, Any]]:
        """A batch the database refused (a value too long, say): write what it accepts, one savepoint per
        row, and record each refused row as a failure instead of losing the batch or the run."""
        good = []
        stmt = self.dialect.upsert_statement(self.table, self.key, self.keep)
        for row in rows:
            try:
                with conn.begin_nested():
                    conn.execute(stmt, [self.dialect.clean_row(row)])
                good.append(row)
            except Exception as exc:
                if self.dialect.is_transient(exc):
                    raise
                where = row.get("url") or ":".join(str(row[k]) for k in self.key)
                error = one_line(exc, 500) or type(exc).__name__
                batch.failures.append({"run_id": self.s.run_id, "url": str(where), "stage": "write",
                                       "status": None, "error": error, "attempts": 1,
                                       "at": dt.datetime.now(dt.UTC)})
                log.warning("row %s refused by the database: %s", where, error)
        return good


def writer_main(settings: WriterSettings, inbox, outbox) -> None:
    """Process entry point. Reports WriterDone or WriterError on outbox."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator stops us after the last batch
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    try:
        writer = Writer(settings)
        batch = Batch()
        last = time.monotonic()
        stopping = False
        while not stopping:
            try:
                msg = inbox.get(timeout=max(0.05, settings.flush_seconds / 2))
            except queue.Empty:
                msg = None
                if parent is not None and not parent.is_alive():
                    stopping = True  # the coordinator is gone: commit the whole pages we hold, then exit
            if type(msg) is Stop:
                stopping = True
            elif type(msg) is Sync:  # the coordinator wants to read the frontier: commit first
                writer.flush(batch)
                batch = Batch()
                last = time.monotonic()
                outbox.put(Synced())
                continue
            elif msg is not None:
                writer.add(batch, msg)
            if stopping or len(batch) >= settings.batch_size or (
                    time.monotonic() - last >= settings.flush_seconds and (len(batch) or batch.counts)):
                writer.flush(batch)
                batch = Batch()
                last = time.monotonic()
        writer.engine.dispose()
        outbox.put(WriterDone(writer.rows_written, writer.batches))
    except Exception as exc:  # reported to the coordinator, which ends the run as failed
        outbox.put(WriterError(f"{type(exc).__name__}: {one_line(exc, 1000)}"))
        raise SystemExit(3) from None

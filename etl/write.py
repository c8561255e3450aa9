"""The writer: ONE process that owns every write to the database during a run.

It drains a bounded multiprocessing.Queue and commits in batches (flush on size or on time), one
transaction per batch. A batch holds the rows of finished pages *and* the frontier bookkeeping for those
pages (new links discovered, the facet texts they refer to, pages marked done, failures, run counters), so
after a crash the database never says a page is done without its rows, nor holds rows of a page it will
fetch again without upserting them idempotently. The coordinator writes only before the writer starts and
after it has exited, so on SQLite there is never a second writer waiting on the lock. What differs between
databases (COPY, conflict clauses, transient errors) is the dialect's (etl/dialects/).

Messages (etl/items.py): PageRows, PageDone, FailureNote, Bundle of those, Sync (answered by Synced),
Stop; the writer ends with WriterDone or WriterError on its outbox. A batch is committed as soon as the next
share of rows would take it past batch_size — between the messages of a bundle too — so one transaction
holds at most batch_size rows however the rows arrive. A table that keeps history gets its versions in
the same transaction (etl/history.py): the batch's stored state is read before the upsert, the versions of
the rows actually written are written after it.
"""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import os
import queue
import signal
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update

from etl import incremental, schema
from etl.appending import AppendGuess, append_or_upsert
from etl.batch import Batch
from etl.config.model import TargetSpec
from etl.db import make_engine
from etl.dialects import dialect_for
from etl.errors import one_line
from etl.history import History
from etl.items import (
    Bundle,
    FailureNote,
    PageDone,
    PageRows,
    RowShare,
    Stop,
    Sync,
    Synced,
    Unchanged,
    UrlSeen,
    WriterDone,
    WriterError,
)
from etl.parse.cleaners import clean_text
from etl.shared import fence
from etl.targets import resolve

log = logging.getLogger("etl.write")
ANALYZE_FIRST = 10_000  # rows added to the target before its planner statistics are first refreshed
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
    lease_owner: str | None = None  # a shared run's worker: commit only the pages it holds (etl/shared/fence.py)
    lease: float = 60.0  # and its lease: a transaction left open longer (a frozen process) is ended by the server


class Repeats:
    """One warning line per refused row was 5,000 identical lines when a column the user added refused every
    row: log the first few of each error, then how many more there were, every `every` seconds and at the
    end. The failures table still has every row. At most KINDS distinct errors are told apart."""

    FIRST, KINDS, OTHER = 3, 100, "(other errors)"

    def __init__(self, every: float = 30.0) -> None:
        self.every, self.last = every, time.monotonic()
        self.seen: dict[str, int] = {}
        self.untold: dict[str, int] = {}

    def warn(self, kind: str, fmt: str, *args: Any) -> None:
        if kind not in self.seen and len(self.seen) >= self.KINDS:
            kind = self.OTHER
        n = self.seen[kind] = self.seen.get(kind, 0) + 1
        if n <= self.FIRST:
            log.warning(fmt + (" (more like this are counted, not logged)" if n == self.FIRST else ""), *args)
        else:
            self.untold[kind] = self.untold.get(kind, 0) + 1

    def summarise(self, force: bool = False) -> None:
        if self.untold and (force or time.monotonic() - self.last >= self.every):
            for kind, n in self.untold.items():
                log.warning("… %s more rows like this refused by the database: %s", f"{n:,}", kind)
            self.untold.clear()
            self.last = time.monotonic()


class Writer:
    def __init__(self, settings: WriterSettings) -> None:
        self.s = settings
        # A shared run's writer frozen inside its transaction (SIGSTOP, a paused VM) would keep its pages'
        # rows locked, and so out of every other worker's claims: the server ends such a session after a lease
        self.engine = make_engine(settings.url, **(fence.session_limits(settings.lease) if settings.lease_owner else {}))
        self.dialect = dialect_for(settings.url)
        target = resolve(settings.target)
        self.table, self.key, self.keep = target.table, target.key, target.keep
        self.columns = [c.name for c in self.table.columns]
        self.history = History(target, self.dialect) if target.history is not None else None
        self.rows_written = settings.rows_before
        self.rows_refused: int | None = None  # the run's, read from its failures in the first transaction
        self.refusal: str | None = None  # the first error a refused row got from this writer
        self.batches = 0
        self.added, self.analyzed = 0, 0  # rows added since the last statistics refresh, and before it
        self.batch = Batch()  # the open batch of take() / commit()
        self.replaced_by_unit: dict[int, set[tuple]] = {}  # units in shares: what their first share replaced
        self.last_commit = time.monotonic()
        self.repeats = Repeats()
        self.appending = AppendGuess(self.dialect.appends)

    def take(self, msg: Any) -> None:
        """Add a message to the open batch, first committing the batch if this message's rows would take it
        past batch_size: a bundle of many pages, or a page sent in many shares, is several transactions."""
        if type(msg) is Bundle:
            for inner in msg.messages:
                self.take(inner)
            return
        if type(msg) in (PageRows, PageDone) and self.batch.rows and (
                len(self.batch.rows) + len(msg.rows) > self.s.batch_size):
            self.commit()
        self.add(self.batch, msg)
        if len(self.batch) >= self.s.batch_size:
            self.commit()

    def commit(self) -> None:
        """Commit the open batch (if it holds anything) and open the next."""
        self.flush(self.batch)
        self.batch = Batch()
        self.last_commit = time.monotonic()
        self.repeats.summarise()

    def done(self) -> WriterDone:
        self.repeats.summarise(force=True)
        return WriterDone(self.rows_written, self.batches, self.rows_refused or 0, self.refusal)

    def add(self, batch: Batch, msg: Any) -> None:
        if type(msg) is Bundle:
            for inner in msg.messages:
                self.add(batch, inner)
        elif type(msg) is PageDone or type(msg) is PageRows:
            columns, key, fenced = self.columns, self.key, self.s.lease_owner is not None
            if msg.replaces:
                self._replace_in_batch(batch, msg.replaces)
                if type(msg) is PageRows:  # more shares follow: their rows fall under these prefixes too
                    self._remember_replaced(msg.key, msg.replaces)
            elif msg.rows and msg.key in self.replaced_by_unit:
                batch.replaced_earlier |= self.replaced_by_unit[msg.key]
            if fenced:
                batch.pages.add(msg.key)
                batch.replace_page.update((prefix, msg.key) for prefix in msg.replaces)
            for row in msg.rows.load() if type(msg.rows) is RowShare else msg.rows:
                full = {c: row.get(c) for c in columns}
                natural = tuple(full[k] for k in key)
                batch.rows[natural] = full
                if fenced:
                    batch.row_page[natural] = msg.key
            if type(msg) is PageDone:  # a PageRows share leaves its page pending: only the last share marks it
                for link in msg.links:
                    batch.links.setdefault(link.key, (link.url, link.kind, link.meta))
                    if fenced:
                        batch.link_page.setdefault(link.key, msg.key)
                batch.carried.update(msg.carried)
                batch.states[msg.key] = msg.state
                self.replaced_by_unit.pop(msg.key, None)
        elif type(msg) is Unchanged:
            batch.unchanged.update(msg.keys)
        elif type(msg) is UrlSeen:
            batch.urls[msg.url_key] = msg
        elif type(msg) is FailureNote:
            batch.failures.append({"run_id": self.s.run_id, "url": clean_text(msg.url), "stage": msg.stage,
                                   "status": msg.status, "error": clean_text(msg.error[:2000]),
                                   "attempts": msg.attempts, "at": dt.datetime.now(dt.UTC)})
            batch.failure_page.append(msg.key)
            if msg.key is not None and self.s.lease_owner is not None:
                batch.pages.add(msg.key)  # fenced with its unit, even in a batch before the unit's rows

    def _remember_replaced(self, unit: int, replaces: list[tuple]) -> None:
        """Bounded: a unit whose last share never comes (a failed page) is forgotten in time; forgetting only
        costs its later shares the upsert."""
        if len(self.replaced_by_unit) >= 64:
            self.replaced_by_unit.pop(next(iter(self.replaced_by_unit)))
        self.replaced_by_unit[unit] = set(replaces)

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
        """Delete the stored rows under each replaced key prefix."""
        self.dialect.delete_prefixes(conn, self.table, self.key[:len(next(iter(replaces)))], replaces)

    def flush(self, batch: Batch) -> None:
        """Commit one batch in one transaction, retrying through connection loss for retry_seconds."""
        if not len(batch) and not batch.states and not batch.links and not batch.replaces and not batch.urls \
                and not batch.unchanged:
            return
        now = dt.datetime.now(dt.UTC)
        const = {c: v for c, v in (("first_seen", now), ("last_seen", now), ("run_id", self.s.run_id))
                 if c in self.columns}
        for row in batch.rows.values():
            row.update(const)  # also kept on the rows: a refused batch is retried row by row
        deadline = time.monotonic() + self.s.retry_seconds
        delay = 0.5
        while True:
            try:
                with self.engine.begin() as conn:
                    written, refused = self._commit(conn, self._fenced(conn, batch), const)
                self.rows_written = written
                self.rows_refused = refused
                self.batches += 1
                self._keep_statistics(len(batch.rows))
                return
            except self.dialect.errors as exc:
                if not self.dialect.is_transient(exc) or time.monotonic() + delay > deadline:
                    raise
                log.warning("database unavailable (%s); retrying the batch in %.1fs", one_line(exc, 1000), delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
                self.engine.dispose()

    def _keep_statistics(self, added: int) -> None:
        """A table this run fills has no planner statistics until autovacuum gets round to it (a minute
        later; never where it is off), and PostgreSQL then plans a replace's DELETE … IN (500 keys) as a
        scan of every row under the leading key column: the replaces of a 230,000-article job cost it 30 s
        of CPU instead of one; the history table's version lookups went the same way. So the writer
        refreshes both whenever the rows it added reach what the table had at the last refresh
        (ANALYZE_FIRST at first): a handful of sampled ANALYZEs per run, whatever its size. A dialect
        without the need does nothing (Dialect.analyze)."""
        self.added += added
        if self.added < max(ANALYZE_FIRST, self.analyzed):
            return
        self.analyzed, self.added = self.analyzed + self.added, 0
        try:
            with self.engine.begin() as conn:
                for table in [self.table] + ([self.history.history] if self.history else []):
                    self.dialect.analyze(conn, conn.dialect.identifier_preparer.format_table(table))
        except self.dialect.errors as exc:  # only the plans suffer: the rows are committed
            log.info("could not refresh the statistics of %s: %s", self.table.name, one_line(exc))

    def _fenced(self, conn, batch: Batch) -> Batch:
        """A shared run's batch without the units this worker no longer holds (etl/shared/fence.py)."""
        if self.s.lease_owner is None or not batch.pages:
            return batch
        lost = batch.pages - fence.held(conn, self.s.run_id, self.s.lease_owner, batch.pages)
        if not lost:
            return batch
        log.warning("%d pages were taken over by another worker (this one outlived its lease): what it made "
                    "of them is not written", len(lost))
        kept = Batch(unchanged=batch.unchanged, urls=batch.urls, carried=batch.carried)
        kept.replaces = {p for p in batch.replaces if batch.replace_page.get(p) not in lost}
        kept.rows = {k: r for k, r in batch.rows.items() if batch.row_page.get(k) not in lost}
        kept.links = {k: v for k, v in batch.links.items() if batch.link_page.get(k) not in lost}
        kept.states = {k: v for k, v in batch.states.items() if k not in lost}
        kept.failures = [f for f, page in zip(batch.failures, batch.failure_page, strict=True) if page not in lost]
        kept.pages = batch.pages - lost
        return kept

    def _commit(self, conn, batch: Batch, const: dict) -> tuple[int, int]:
        """One batch's statements; returns the run's rows written and rows refused as of this commit."""
        d, f, run_id = self.dialect, schema.frontier, self.s.run_id
        rows = list(batch.rows.values())
        # runs.pages_ok/failed move with the frontier marks, in their transaction: never behind after a kill
        ended = {"pages_ok": 0, "pages_failed": 0}
        for state in batch.states.values():
            ended["pages_ok" if state == "done" else "pages_failed"] += 1
        # A page discovered and finished within one batch is inserted as finished, and still UPDATEd: a link
        # may already be in the table (the frontier's seen-set is capped, the database dedupes), and then the
        # insert does nothing and only the UPDATE marks the page done (else it is fetched again and again).
        links = [{"url_key": k, "url": u, "kind": kind, "meta": m, "state": batch.states.get(k, "pending"),
                  "lease_owner": None, "lease_until": None, "claims": 0}
                 for k, (u, kind, m) in batch.links.items()]
        now = const.get("last_seen") or dt.datetime.now(dt.UTC)  # a version begins when its row was seen
        refused = self.rows_refused
        if refused is None:  # earlier sessions' and dead writers' refusals count too: the run's outcome is the run's
            fl = schema.failures
            refused = conn.execute(select(func.count()).select_from(fl)
                                   .where(fl.c.run_id == run_id, fl.c.stage == "write")).scalar() or 0
        if batch.carried:  # what the links below refer to, in their transaction (etl/carried.py)
            d.insert_new_rows(conn, schema.carried, ("run_id", "carried_key"),
                              [{"carried_key": k, "via": v} for k, v in batch.carried.items()], {"run_id": run_id})
        if links:
            d.insert_new_rows(conn, f, ("run_id", "url_key"), links, {"run_id": run_id})
        failures = batch.failures
        stored = self.history.read(conn, list(batch.rows)) if self.history and rows else None  # before any write
        if batch.replaces:  # same transaction as the new rows: an article is never seen half-replaced
            self._delete_replaced(conn, batch.replaces)
        if rows:
            try:
                self._write_rows(conn, rows, const, batch.rows_all_replaced())
            except Exception as exc:  # refused data (or a driver that cannot encode it)
                if d.is_transient(exc):
                    raise
                rows, refusals = self._row_by_row(conn, rows)
                failures, refused = failures + refusals, refused + len(refusals)
        if stored is not None:  # the versions of the rows written (not of those refused)
            self.history.write(conn, self.history.plan(rows, stored, run_id, now), run_id, now)
        if batch.unchanged or batch.urls:
            incremental.store(conn, d, self.table, self.key, batch.unchanged, batch.urls, const, run_id)
        if batch.states:
            d.update_by_key(conn, f, {"run_id": run_id}, "url_key", "state", batch.states)
        if failures:
            conn.execute(schema.failures.insert(), failures)
        if _SLOW_BATCH:  # test hook: widen the window in which a crash hits an open transaction
            time.sleep(_SLOW_BATCH)
        written = self.rows_written + len(rows)
        # added, not set: the writers of a shared run's workers all count into the one row
        values: dict[str, Any] = {c: schema.runs.c[c] + n for c, n in ended.items() if n}
        if rows:
            values["rows_written"] = schema.runs.c.rows_written + len(rows)
        if values:
            conn.execute(update(schema.runs).where(schema.runs.c.id == run_id).values(**values))
        if self.s.lease_owner is not None:
            fence.count_worker(conn, run_id, self.s.lease_owner, ended["pages_ok"], ended["pages_failed"], len(rows))
        return written, refused

    def _write_rows(self, conn, rows: list[dict[str, Any]], const: dict, replaced: bool) -> None:
        """Rows under replaced prefixes are appended where the dialect can, others when its guess says so
        (etl/appending.py: a first crawl's); a key that is there after all (a re-run, another writer of
        the same unit, a unit redone after a crash) sends the batch through the upsert instead."""
        append_or_upsert(conn, self.dialect, None if replaced else self.appending, self.table, self.key,
                         self.keep, rows, const)

    def _row_by_row(self, conn, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """A batch the database refused (a value too long, say): write what it accepts, one savepoint per
        row, and record each refused row as a failure instead of losing the batch or the run. Returns the
        rows written and the failure rows (not put on the batch: a retried transaction would add them twice)."""
        good, refusals = [], []
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
                refusals.append({"run_id": self.s.run_id, "url": str(where), "stage": "write", "status": None,
                                 "error": error, "attempts": 1, "at": dt.datetime.now(dt.UTC)})
                self.refusal = self.refusal or error
                self.repeats.warn(error, "row %s refused by the database: %s", where, error)
        return good, refusals


def _close_sending_end(inbox) -> None:
    """A multiprocessing.Queue handed to a child brings both ends of its pipe. The writer never puts on its
    inbox, but while it holds that sending end, a message the coordinator was killed in the middle of
    writing never ends: the writer's read waited for the rest of it for ever, after every other process
    had left. Closed, that read ends with EOFError instead. (A queue.Queue, as the tests use, has no pipe.)"""
    sending = getattr(inbox, "_writer", None)
    if sending is not None:
        sending.close()


def writer_main(settings: WriterSettings, inbox, outbox) -> None:
    """Process entry point. Reports WriterDone or WriterError on outbox."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator stops us after the last batch
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    _close_sending_end(inbox)
    try:
        writer = Writer(settings)
        stopping = False
        while not stopping:
            try:
                msg = inbox.get(timeout=max(0.05, settings.flush_seconds / 2))
            except queue.Empty:
                msg = None
                if parent is not None and not parent.is_alive():
                    stopping = True  # the coordinator is gone: commit what we hold (whole pages are marked), exit
            except (EOFError, OSError):  # the coordinator died in the middle of sending a message
                msg, stopping = None, True
            if type(msg) is Stop:
                stopping = True
            elif type(msg) is Sync:  # the coordinator wants to read the frontier: commit first
                writer.commit()
                outbox.put(Synced())
                continue
            elif msg is not None:
                writer.take(msg)  # commits whenever the batch is full
            batch = writer.batch
            if stopping or (time.monotonic() - writer.last_commit >= settings.flush_seconds
                            and (len(batch) or batch.states or batch.links)):
                writer.commit()
        writer.engine.dispose()
        outbox.put(writer.done())
    except Exception as exc:  # reported to the coordinator, which ends the run as failed
        outbox.put(WriterError(f"{type(exc).__name__}: {one_line(exc, 1000)}"))
        raise SystemExit(3) from None

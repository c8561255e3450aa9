"""The writer: ONE process that owns every write to the database during a run.

It drains a bounded multiprocessing.Queue and commits in batches (flush on size or on time), one
transaction per batch. A batch holds the rows of finished pages *and* the frontier bookkeeping for those
pages (new links discovered, pages marked done, failures, run counters), so after a crash the database never
says a page is done without its rows, nor holds rows of a page it will fetch again without upserting
them idempotently. The coordinator writes only before the writer starts and after it has exited, so on
SQLite there is never a second writer waiting on the lock.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import multiprocessing
import operator
import os
import queue
import re
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, and_, bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError

from etl import schema
from etl.db import make_engine
from etl.errors import one_line
from etl.parse.cleaners import clean_text

log = logging.getLogger("etl.write")
_SLOW_BATCH = float(os.environ.get("ETL_TEST_SLOW_BATCH", "0") or 0)

# Messages on the writer queue (plain tuples: cheap to pickle):
#   ("page", url, rows, links, state)   links = [(url, kind, meta_json)], state = "done" | "failed"
#   ("fail", url, stage, status, error, attempts)
#   ("counts", pages_ok, pages_failed)
#   ("bundle", [message, ...])         several of the above in one pickle
#   ("sync",)                          commit now and answer ("synced",) on the outbox
#   ("stop",)


@dataclass
class WriterSettings:
    url: str
    table: str
    run_id: int
    batch_size: int = 1000
    flush_seconds: float = 1.0
    retry_seconds: float = 60.0
    rows_before: int = 0  # rows a resumed run had already written


@dataclass
class Batch:
    rows: dict[tuple, dict[str, Any]] = field(default_factory=dict)  # natural key → row (last wins)
    links: dict[str, tuple[str, str]] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    counts: tuple[int, int] | None = None

    def __len__(self) -> int:
        """Size against batch_size: rows (and failures); frontier bookkeeping rides along uncounted
        up to four times as much, so a batch of 1000 rows is not split by its own page marks."""
        return max(len(self.rows) + len(self.failures), (len(self.states) + len(self.links)) // 4)


COPY_THRESHOLD = 50  # below this, a plain multi-row INSERT is as fast and simpler


try:  # errors raised by the raw driver cursor used for COPY (not wrapped by SQLAlchemy)
    from psycopg2 import Error as DriverError
    from psycopg2 import InterfaceError as _DriverInterfaceError
    from psycopg2 import OperationalError as _DriverOperationalError
except ImportError:  # pragma: no cover - psycopg2 is a dependency
    class DriverError(Exception):  # type: ignore[no-redef]
        pass

    _DriverInterfaceError = _DriverOperationalError = DriverError


# SQLSTATE classes worth waiting out: connection exception, insufficient resources, operator intervention
# (shutdown, crash recovery), transaction rollback (serialization failure, deadlock). Others in psycopg2's
# OperationalError — program limit exceeded (an over-long index key), query canceled — are the data's fault.
_TRANSIENT_SQLSTATE = ("08", "53", "57P", "40")


def _is_disconnect(exc: BaseException) -> bool:
    """Connection trouble (retry the batch later) as opposed to data the database refuses."""
    wrapped = isinstance(exc, DBAPIError)
    if wrapped and exc.connection_invalidated:
        return True
    code = getattr(exc.orig if wrapped else exc, "pgcode", None)
    if code:
        return code.startswith(_TRANSIENT_SQLSTATE)
    return isinstance(exc, OperationalError | _DriverOperationalError | _DriverInterfaceError)


# COPY text format escapes, and the NUL rule (PostgreSQL text cannot hold U+0000). Most values hold none
# of these characters: one regex scan finds that, and only the others pay for translate (a per-character
# mapping lookup, slow on CJK text).
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x00": "\ufffd"})
_COPY_SPECIAL = re.compile("[\\\\\t\n\r\x00]")


def _copy_text(text: str) -> str:
    return text.translate(_COPY_ESCAPES) if _COPY_SPECIAL.search(text) else text


def copy_value(value: Any) -> str:
    """One value in PostgreSQL's COPY text format (NULL as \\N, escapes, the NUL rule)."""
    if value is None:
        return "\\N"
    kind = type(value)
    if kind is str:
        return _copy_text(value)
    if kind is int or kind is float:
        return repr(value)
    if isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False)
        if "\\u0000" in text:  # maybe a NUL inside (JSON writes it as an escape): apply the NUL rule
            text = json.dumps(strip_nul(value), ensure_ascii=False)
        return _copy_text(text)
    if isinstance(value, dt.date):
        return value.isoformat()
    return _copy_text(str(value))


def strip_nul(value: Any) -> Any:
    """PostgreSQL text cannot hold NUL (U+0000): it is stored as U+FFFD, the replacement character.
    SQLite stores NUL verbatim. Everything else (quotes, SQL fragments) is always stored verbatim."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {strip_nul(k): strip_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_nul(v) for v in value]
    return value


def upsert_statement(engine: Engine, table_name: str):
    """INSERT … ON CONFLICT (natural key) DO UPDATE: re-running a job rewrites rows instead of adding them."""
    table = schema.metadata.tables[table_name]
    key = schema.NATURAL_KEYS[table_name]
    keep = schema.KEEP_ON_UPDATE.get(table_name, ())
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table)
    updates = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in key and c.name not in keep}
    return stmt.on_conflict_do_update(index_elements=list(key), set_=updates)


def link_statement(engine: Engine):
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(schema.frontier).on_conflict_do_nothing(index_elements=["run_id", "url"])


class Writer:
    def __init__(self, settings: WriterSettings) -> None:
        self.s = settings
        self.engine = make_engine(settings.url)
        self.table = schema.metadata.tables[settings.table]
        self.columns = [c.name for c in self.table.columns]
        self.key = schema.NATURAL_KEYS[settings.table]
        self.upsert = upsert_statement(self.engine, settings.table)
        self.insert_link = link_statement(self.engine)
        f = schema.frontier
        self.mark = (update(f).where(and_(f.c.run_id == bindparam("r"), f.c.url == bindparam("u")))
                     .values(state=bindparam("s")))
        self.rows_written = settings.rows_before
        self.postgres = self.engine.dialect.name == "postgresql"
        keep = schema.KEEP_ON_UPDATE.get(settings.table, ())
        self.update_set = ", ".join(f"{c} = EXCLUDED.{c}" for c in self.columns
                                    if c not in self.key and c not in keep)
        self.batches = 0

    def add(self, batch: Batch, msg: tuple) -> None:
        kind = msg[0]
        if kind == "bundle":
            for inner in msg[1]:
                self.add(batch, inner)
        elif kind == "page":
            _, url, rows, links, state = msg
            for row in rows:
                full = {c: row.get(c) for c in self.columns}
                batch.rows[tuple(full[k] for k in self.key)] = full
            for link_url, link_kind, meta in links:
                batch.links.setdefault(link_url, (link_kind, meta))
            batch.states[url] = state
        elif kind == "fail":
            _, url, stage, status, error, attempts = msg
            batch.failures.append({"run_id": self.s.run_id, "url": clean_text(url), "stage": stage,
                                   "status": status, "error": clean_text(error[:2000]), "attempts": attempts,
                                   "at": dt.datetime.now(dt.UTC)})
        elif kind == "counts":
            batch.counts = (msg[1], msg[2])

    def flush(self, batch: Batch) -> None:
        """Commit one batch in one transaction, retrying through connection loss for retry_seconds."""
        if not len(batch) and batch.counts is None and not batch.links:
            return
        now = dt.datetime.now(dt.UTC)
        rows = list(batch.rows.values())
        for row in rows:
            row["first_seen"] = row["last_seen"] = now
            row["run_id"] = self.s.run_id
        if self.postgres and len(rows) < COPY_THRESHOLD:  # COPY applies the NUL rule itself
            rows = [{c: strip_nul(v) for c, v in row.items()} for row in rows]
        # A page discovered and finished within one batch is inserted as finished: no UPDATE needed.
        links = {u: (k, m, batch.states.pop(u, "pending")) for u, (k, m) in batch.links.items()}
        deadline = time.monotonic() + self.s.retry_seconds
        delay = 0.5
        while True:
            try:
                with self.engine.begin() as conn:
                    if links and self.postgres:
                        self._pg_links(conn, links)
                    elif links:
                        conn.execute(self.insert_link, [
                            {"run_id": self.s.run_id, "url": u, "kind": k, "meta": m, "state": st}
                            for u, (k, m, st) in links.items()])
                    if rows:
                        try:
                            with conn.begin_nested():
                                if self.postgres and len(rows) >= COPY_THRESHOLD:
                                    self._copy_upsert(conn, rows)
                                else:
                                    conn.execute(self.upsert, rows)
                        except Exception as exc:  # refused data (or a driver that cannot encode it)
                            if _is_disconnect(exc):
                                raise
                            rows = self._row_by_row(conn, rows, batch)
                    if batch.states and self.postgres:
                        self._pg_states(conn, batch.states)
                    elif batch.states:
                        conn.execute(self.mark, [{"r": self.s.run_id, "u": u, "s": s}
                                                 for u, s in batch.states.items()])
                    if batch.failures:
                        conn.execute(schema.failures.insert(), batch.failures)
                    if _SLOW_BATCH:  # test hook: widen the window in which a crash hits an open transaction
                        time.sleep(_SLOW_BATCH)
                    written = self.rows_written + len(rows)
                    values: dict[str, Any] = {"rows_written": written}
                    if batch.counts:
                        values.update(pages_ok=batch.counts[0], pages_failed=batch.counts[1])
                    conn.execute(update(schema.runs).where(schema.runs.c.id == self.s.run_id).values(**values))
                self.rows_written = written
                self.batches += 1
                return
            except (DBAPIError, DriverError) as exc:
                if not _is_disconnect(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("database unavailable (%s); retrying the batch in %.1fs",
                            one_line(exc, 1000), delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
                self.engine.dispose()


    def _copy_upsert(self, conn, rows: list[dict[str, Any]]) -> None:
        """PostgreSQL: COPY the batch into a session temp table, then one INSERT … SELECT … ON CONFLICT.
        Same semantics as the executemany upsert, a fraction of the per-row cost (bench/writer.py)."""
        table, cols = self.table.name, self.columns
        stage = f"etl_stage_{table}"
        # Columns equal for the whole batch (timestamps, run id) are not copied row by row: they are
        # parameters of the INSERT … SELECT. The rest go through one C-level getter and one map per row.
        const = [c for c in ("first_seen", "last_seen", "run_id") if c in cols]
        varying = [c for c in cols if c not in const]
        get = operator.itemgetter(*varying)
        lines = "".join("\t".join(map(copy_value, get(row))) + "\n" for row in rows)
        collist, varlist = ", ".join(cols), ", ".join(varying)
        select = ", ".join(f"%({c})s" if c in const else c for c in cols)
        self._pg_stage(conn, stage, f"ON COMMIT DELETE ROWS AS SELECT {varlist} FROM {table} WITH NO DATA",
                       lines, f"INSERT INTO {table} ({collist}) SELECT {select} FROM {stage} "
                              f"ON CONFLICT ({', '.join(self.key)}) DO UPDATE SET {self.update_set}",
                       {c: rows[0][c] for c in const}, analyze=False)  # column types, no constraints

    def _pg_stage(self, conn, stage: str, definition: str, lines: str, then: str,
                  params: dict | None = None, analyze: bool = True) -> None:
        """COPY text lines into a session temp table (`definition`: its columns or AS SELECT, with ON
        COMMIT DELETE ROWS), then run one statement that reads it."""
        cur = conn.connection.driver_connection.cursor()
        try:
            cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} {definition}")
            cur.copy_expert(f"COPY {stage} FROM STDIN", io.StringIO(lines))
            if analyze:  # else the planner guesses a big stage and scans all of frontier to join it
                cur.execute(f"ANALYZE {stage}")
            cur.execute(then, params)
            cur.execute(f"TRUNCATE {stage}")
        finally:
            cur.close()

    def _pg_links(self, conn, links: dict[str, tuple[str, str, str]]) -> None:
        lines = "".join(f"{copy_value(u)}\t{copy_value(k)}\t{copy_value(m)}\t{st}\n"
                        for u, (k, m, st) in links.items())
        self._pg_stage(conn, "etl_stage_links", "(url text, kind text, meta text, state text) ON COMMIT DELETE ROWS", lines,
                       f"INSERT INTO frontier (run_id, url, kind, meta, state) SELECT {int(self.s.run_id)}, url, "
                       "kind, meta, state FROM etl_stage_links ON CONFLICT DO NOTHING")

    def _pg_states(self, conn, states: dict[str, str]) -> None:
        lines = "".join(f"{copy_value(u)}\t{s}\n" for u, s in states.items())
        self._pg_stage(conn, "etl_stage_states", "(url text, state text) ON COMMIT DELETE ROWS", lines,
                       "UPDATE frontier AS f SET state = s.state FROM etl_stage_states AS s "
                       f"WHERE f.run_id = {int(self.s.run_id)} AND f.url = s.url")

    def _row_by_row(self, conn, rows: list[dict[str, Any]], batch: Batch) -> list[dict[str, Any]]:
        """A batch the database refused (a value too long, say): write what it accepts, one savepoint per
        row, and record each refused row as a failure instead of losing the batch or the run."""
        good = []
        if self.postgres:
            rows = [{c: strip_nul(v) for c, v in row.items()} for row in rows]
        for row in rows:
            try:
                with conn.begin_nested():
                    conn.execute(self.upsert, [row])
                good.append(row)
            except Exception as exc:
                if _is_disconnect(exc):
                    raise
                where = row.get("url") or ":".join(str(row[k]) for k in self.key)
                error = one_line(exc, 500) or type(exc).__name__
                batch.failures.append({"run_id": self.s.run_id, "url": str(where), "stage": "write",
                                       "status": None, "error": error, "attempts": 1,
                                       "at": dt.datetime.now(dt.UTC)})
                log.warning("row %s refused by the database: %s", where, error)
        return good


def writer_main(settings: WriterSettings, inbox, outbox) -> None:
    """Process entry point. Reports ("done", rows_written, batches) or ("error", message) on outbox."""
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
            if msg is not None:
                if msg[0] == "stop":
                    stopping = True
                elif msg[0] == "sync":  # the coordinator wants to read the frontier: commit first
                    writer.flush(batch)
                    batch = Batch()
                    last = time.monotonic()
                    outbox.put(("synced",))
                    continue
                else:
                    writer.add(batch, msg)
            if stopping or len(batch) >= settings.batch_size or (
                    time.monotonic() - last >= settings.flush_seconds and (len(batch) or batch.counts)):
                writer.flush(batch)
                batch = Batch()
                last = time.monotonic()
        writer.engine.dispose()
        outbox.put(("done", writer.rows_written, writer.batches))
    except Exception as exc:  # reported to the coordinator, which ends the run as failed
        outbox.put(("error", f"{type(exc).__name__}: {one_line(exc, 1000)}"))
        raise SystemExit(3) from None

"""SQLite, the embedded default: WAL so readers never block the one writer, a long busy timeout, and
`query_only` for read-only source reads."""

from __future__ import annotations

import os
import sqlite3
from typing import Any, ClassVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import make_url

from etl.dialects.base import Dialect
from etl.locks import FileLock, NamedLock

LOCK_PROBE_SECONDS = 10.0  # how long a run waits at start for another process's write lock


class SQLiteDialect(Dialect):
    name: ClassVar[str] = "sqlite"
    example: ClassVar[str] = "sqlite:///file.db"

    def create_engine(self, url: str, **kwargs: Any) -> Engine:
        engine = create_engine(url, connect_args={"timeout": 60}, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        return engine

    def insert(self, table):
        return sqlite.insert(table)

    def named_lock(self, url: str, name: str, shared: bool = False) -> NamedLock:
        """The database is a file on this machine: the kernel's flock, not a server session, holds the lock."""
        if shared:
            raise NotImplementedError("a SQLite file is one machine's: etl worker needs PostgreSQL")
        return FileLock(make_url(url).database or "", name)

    def writable_problem(self, url: str) -> str | None:
        """One real write (the header's user_version, set to what it is) in a transaction taken with a short
        wait: a file another process holds locked, or a read-only file or directory, answers at once."""
        path = make_url(url).database
        if not path or path == ":memory:" or path.startswith("file:") or not os.path.exists(path):
            return None  # new files are created by the migration, which reports its own errors
        try:
            con = sqlite3.connect(path, timeout=LOCK_PROBE_SECONDS, isolation_level=None)
            try:
                version = con.execute("PRAGMA user_version").fetchone()[0]
                con.execute("BEGIN IMMEDIATE")
                con.execute(f"PRAGMA user_version = {int(version)}")
                con.execute("COMMIT")
            finally:
                con.close()
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if "locked" in text or "busy" in text:
                return (f"{path} is locked by another process (no write lock within {LOCK_PROBE_SECONDS:.0f} s); "
                        "is another program holding a transaction open?")
            if "readonly" in text or "read-only" in text or "unable to open" in text:
                return f"{path} is read-only (the file or its directory cannot be written)"
            return f"{path}: {text}"
        except sqlite3.DatabaseError as exc:
            return f"{path} is not a usable SQLite database: {exc}"
        return None

    def begin_read_only(self, conn) -> None:
        """`query_only` lasts as long as the connection: only for connections of an engine that reads."""
        conn.exec_driver_sql("PRAGMA query_only = ON")

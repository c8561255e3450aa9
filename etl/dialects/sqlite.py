"""SQLite, the embedded default: WAL so readers never block the one writer, a long busy timeout, and
`query_only` for read-only source reads."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import make_url

from etl.dialects.base import Dialect
from etl.locks import FileLock, NamedLock


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

    def named_lock(self, url: str, name: str) -> NamedLock:
        """The database is a file on this machine: the kernel's flock, not a server session, holds the lock."""
        return FileLock(make_url(url).database or "", name)

    def begin_read_only(self, conn) -> None:
        """`query_only` lasts as long as the connection: only for connections of an engine that reads."""
        conn.exec_driver_sql("PRAGMA query_only = ON")

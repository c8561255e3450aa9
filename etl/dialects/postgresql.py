"""PostgreSQL: psycopg2, COPY as the bulk path (into a session temp table, then one INSERT … SELECT …
ON CONFLICT or UPDATE … FROM), SQLSTATE classes for what is transient, and no NUL in text."""

from __future__ import annotations

import datetime as dt
import io
import operator
import re
from collections.abc import Sequence
from typing import Any, ClassVar

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError, OperationalError

from etl import jsontext
from etl.dialects.base import Dialect, prefix_groups, strip_nul
from etl.locks import lock_key

try:  # errors raised by the raw driver cursor used for COPY (not wrapped by SQLAlchemy)
    from psycopg2 import Error as DriverError
    from psycopg2 import InterfaceError as _DriverInterfaceError
    from psycopg2 import OperationalError as _DriverOperationalError
except ImportError:  # pragma: no cover - psycopg2 is a dependency
    class DriverError(Exception):  # type: ignore[no-redef]
        pass

    _DriverInterfaceError = _DriverOperationalError = DriverError

KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
COPY_THRESHOLD = 50  # below this, a plain multi-row INSERT is as fast and simpler

# SQLSTATE classes worth waiting out: connection exception, insufficient resources, operator intervention
# (shutdown, crash recovery), transaction rollback (serialization failure, deadlock). Others in psycopg2's
# OperationalError — program limit exceeded (an over-long index key), query canceled — are the data's fault.
_TRANSIENT_SQLSTATE = ("08", "53", "57P", "40")

# COPY text format escapes, and the NUL rule. Most values hold none of these characters: one regex scan
# finds that, and only the others pay for translate (a per-character mapping lookup, slow on CJK text).
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
        text = jsontext.text(value)
        if "\\u0000" in text:  # maybe a NUL inside (JSON writes it as an escape): apply the NUL rule
            text = jsontext.text(strip_nul(value))
        return _copy_text(text)
    if isinstance(value, dt.date):
        return value.isoformat()
    return _copy_text(str(value))


NULL = "\\N"


def copy_lines(rows: list[dict[str, Any]], columns: list[str], tail: str = "\n") -> str:
    """COPY text of `columns` of each row; `tail` ends every line (the constant columns' values, encoded once)."""
    if not rows:
        return ""
    get = operator.itemgetter(*columns)
    return copy_columns([list(map(get, rows))] if len(columns) == 1 else list(zip(*map(get, rows), strict=True)), tail)


def copy_columns(columns: list[Sequence[Any]], tail: str = "\n") -> str:
    """COPY text of rows given column by column (each the same length), `tail` ending every line. A
    writer batch is tens of thousands of values, and one copy_value() call each was a large share of the
    writer's CPU; a column of one kind (all text, all numbers, with or without NULLs) takes a few passes
    in C instead."""
    if not columns or not columns[0]:
        return ""
    lines = map("\t".join, zip(*map(_column_text, columns), strict=True))
    return tail.join(lines) + tail


def _column_text(values: Sequence[Any]) -> Sequence[str]:
    """One column's values in COPY text, exactly as copy_value() would give each."""
    kinds = set(map(type, values))
    nulls = type(None) in kinds
    kinds.discard(type(None))
    if kinds == {str} or not kinds:
        present = [v for v in values if v is not None] if nulls else values
        if _COPY_SPECIAL.search("".join(present)):  # some need escapes: value by value
            return list(map(copy_value, values))
        return [NULL if v is None else v for v in values] if nulls else values
    if kinds <= {int, float}:  # exactly these types (bool is not one): repr, as copy_value
        return [NULL if v is None else repr(v) for v in values] if nulls else list(map(repr, values))
    return list(map(copy_value, values))


class PostgreSQLDialect(Dialect):
    name: ClassVar[str] = "postgresql"
    example: ClassVar[str] = "postgresql://user@host/db"
    nul_in_text: ClassVar[bool] = False
    max_key_bytes: ClassVar[int | None] = 2704  # a btree entry at most a third of an 8 kB page
    bytes_per_char: ClassVar[int] = 4
    errors: ClassVar[tuple[type[BaseException], ...]] = (DBAPIError, DriverError)  # COPY runs on the raw cursor
    leases: ClassVar[bool] = True  # FOR UPDATE SKIP LOCKED, now(), shared advisory locks: etl worker
    appends: ClassVar[bool] = True  # insert_fresh_rows: COPY straight into the table

    def create_engine(self, url: str, **kwargs: Any):
        """TCP keepalives on every connection: a half-open one (a cut link, a vanished host) fails within
        about 30 s instead of blocking a statement until the kernel's two hours."""
        connect_args = {**KEEPALIVES, **kwargs.pop("connect_args", {})}
        return super().create_engine(url, connect_args=connect_args, **kwargs)

    def driver_url(self, url: str) -> str:
        """`postgresql://` means psycopg2 here (SQLAlchemy 2.1 would otherwise pick psycopg 3)."""
        if url.startswith(("postgresql://", "postgres://")):
            return "postgresql+psycopg2://" + url.split("://", 1)[1]
        return url

    def insert(self, table):
        return postgresql.insert(table)

    def is_transient(self, exc: BaseException) -> bool:
        wrapped = isinstance(exc, DBAPIError)
        if wrapped and exc.connection_invalidated:
            return True
        code = getattr(exc.orig if wrapped else exc, "pgcode", None)
        if code:
            return code.startswith(_TRANSIENT_SQLSTATE)
        return isinstance(exc, OperationalError | _DriverOperationalError | _DriverInterfaceError)

    def lock_statements(self, name: str, shared: bool = False) -> tuple[str, str, dict[str, Any]]:
        mode = "_shared" if shared else ""
        return (f"SELECT pg_try_advisory_lock{mode}(:k)", f"SELECT pg_advisory_unlock{mode}(:k)",
                {"k": lock_key(name)})

    def begin_read_only(self, conn) -> None:
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")

    # ------------------------------------------------------------------------------------ COPY paths
    def upsert_rows(self, conn, table: Table, key, keep, rows, const=None) -> None:
        """COPY the batch into a session temp table, then one INSERT … SELECT … ON CONFLICT: the same
        semantics as the executemany upsert at a fraction of the per-row cost (bench/writer.py)."""
        const = const or {}
        if len(rows) < COPY_THRESHOLD:
            return super().upsert_rows(conn, table, key, keep, rows, const)
        cols = [c.name for c in table.columns]
        varying = [c for c in cols if c not in const]
        lines = copy_lines(rows, varying)
        q = conn.dialect.identifier_preparer.quote  # config-defined tables may name a column "order"
        name, stage = q(table.name), f"etl_stage_{table.name}"
        select = ", ".join(f"%({c})s" if c in const else q(c) for c in cols)
        update_set = ", ".join(f"{q(c)} = EXCLUDED.{q(c)}" for c in cols if c not in key and c not in keep)
        action = f"DO UPDATE SET {update_set}" if update_set else "DO NOTHING"
        self._stage(conn, stage, f"ON COMMIT DELETE ROWS AS SELECT {', '.join(map(q, varying))} FROM {name} WITH NO DATA",
                    lines, f"INSERT INTO {name} ({', '.join(map(q, cols))}) SELECT {select} FROM {stage} "
                           f"ON CONFLICT ({', '.join(map(q, key))}) {action}", const, analyze=False)

    def insert_fresh_rows(self, conn, table: Table, key, keep, rows, const=None) -> None:
        """COPY straight into the table: no stage, no ON CONFLICT. A key already there fails the COPY with
        a unique violation (the caller's fallback), and the table's own indexes are maintained as it goes."""
        const = const or {}
        if len(rows) < COPY_THRESHOLD:
            return super().insert_fresh_rows(conn, table, key, keep, rows, const)
        cols = [c.name for c in table.columns]
        varying = [c for c in cols if c not in const]
        fixed = [c for c in cols if c in const]
        lines = copy_lines(rows, varying, "".join("\t" + copy_value(const[c]) for c in fixed) + "\n")
        q = conn.dialect.identifier_preparer.quote
        cur = conn.connection.driver_connection.cursor()
        try:
            cur.copy_expert(f"COPY {q(table.name)} ({', '.join(map(q, varying + fixed))}) FROM STDIN",
                            io.StringIO(lines))
        finally:
            cur.close()

    def insert_new_rows(self, conn, table: Table, key, rows, const=None) -> None:
        const = const or {}
        if len(rows) < COPY_THRESHOLD:
            return super().insert_new_rows(conn, table, key, rows, const)
        self.upsert_rows(conn, table, key, tuple(c.name for c in table.columns), rows, const)

    def delete_prefixes(self, conn, table: Table, columns: tuple[str, ...], prefixes: set[tuple]) -> None:
        """The base's DELETE … IN (500 keys) statements, given to psycopg2 directly: SQLAlchemy's rendering
        of 500 expanding parameters per statement cost the writer more CPU than the statement cost here."""
        q = conn.dialect.identifier_preparer.quote
        same = "".join(f"{q(c)} = %s AND " for c in columns[:-1])
        sql = f"DELETE FROM {q(table.name)} WHERE {same}{q(columns[-1])} IN %s"
        clean = self.clean_value  # a key is stored without NUL (and psycopg2 refuses one in a literal)
        cur = conn.connection.driver_connection.cursor()
        try:
            for scope, last in prefix_groups(prefixes).items():
                scope = tuple(map(clean, scope))
                for i in range(0, len(last), 500):
                    cur.execute(sql, (*scope, tuple(map(clean, last[i:i + 500]))))
        finally:
            cur.close()

    def update_by_key(self, conn, table: Table, where: dict[str, Any], key: str, column: str,
                      values: dict[Any, Any]) -> None:
        if len(values) < COPY_THRESHOLD:
            return super().update_by_key(conn, table, where, key, column, values)
        stage = f"etl_stage_{table.name}_{column}"
        kcol, vcol = table.c[key], table.c[column]
        lines = copy_columns([list(values), list(values.values())])
        cond = " AND ".join(f"t.{c} = %({c})s" for c in where)
        self._stage(conn, stage, f"(k {kcol.type.compile(conn.dialect)}, v {vcol.type.compile(conn.dialect)}) "
                                 "ON COMMIT DELETE ROWS", lines,
                    f"UPDATE {table.name} AS t SET {column} = s.v FROM {stage} AS s "
                    f"WHERE {cond + ' AND ' if cond else ''}t.{key} = s.k", where)

    @staticmethod
    def _stage(conn, stage: str, definition: str, lines: str, then: str, params: dict | None = None,
               analyze: bool = True) -> None:
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

    # ------------------------------------------------------------------------------------ bulk load
    def encode_bulk(self, columns: list[str], rows: list[tuple]) -> str:
        return copy_columns(list(zip(*rows, strict=True)))

    def load_bulk(self, conn, table: Table, payload: str) -> None:
        cur = conn.connection.driver_connection.cursor()
        try:
            cols = ", ".join(c.name for c in table.columns)
            cur.copy_expert(f"COPY {table.name} ({cols}) FROM STDIN", io.StringIO(payload))
        finally:
            cur.close()

    def analyze(self, conn, table: str) -> None:
        conn.exec_driver_sql(f"ANALYZE {table}")

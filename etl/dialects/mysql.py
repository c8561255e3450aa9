"""MySQL 8.0+ and MariaDB 10.6+: PyMySQL by default, INSERT … ON DUPLICATE KEY UPDATE as the upsert,
multi-row INSERTs of literals as the bulk path, MySQL error numbers for what is transient, START
TRANSACTION READ ONLY for source reads, strict mode on every connection, and every table this tool
creates in utf8mb4 with a binary no-pad collation.

Why each of those:
- PyMySQL is a pure-Python wheel (mysqlclient needs a compiler and the client headers), and its
  executemany rewrite also matches MySQL 8.0.20+'s `VALUES (…) AS new ON DUPLICATE KEY UPDATE` form,
  which mysqlclient's regex does not (there it falls back to one round trip per row).
- Bulk path: a batch of BULK_THRESHOLD rows or more is rendered here as the VALUES lists of a few
  multi-row statements (sql_literal: one escaping rule that means the same whatever the server's
  sql_mode), the ON DUPLICATE KEY clause taken from SQLAlchemy's own statement. That is the driver's
  executemany rewrite without the driver's per-value escaping (most of the writer's CPU with PyMySQL,
  bench/writer.py), and without depending on which driver's regex matches which statement form.
- "Insert if new" is `ON DUPLICATE KEY UPDATE <key> = <key>`, a no-op on conflict. INSERT IGNORE would also
  turn a too-long value or a bad date into a warning and a silently altered row.
- Strict mode (STRICT_ALL_TABLES added to the session's sql_mode) for the same reason: a value the column
  cannot hold is refused, and the writer records that row as a `write` failure.
- Collation: keys are compared as the code points they are. utf8mb4_bin pads with spaces ('a' = 'a '), so
  MariaDB's utf8mb4_nopad_bin and MySQL's utf8mb4_0900_bin are used; utf8mb4_bin only where neither exists.
  Text columns without a length are MEDIUMTEXT (16 MB) rather than TEXT (64 KB), as PostgreSQL's text and
  SQLite's have no practical limit. Both apply to the tables created through an engine of this dialect
  (migrations, config-defined targets, the demo news table); a table that names its own charset or
  collation keeps it.
- Errors: PyMySQL raises OperationalError for most server errors it has no class for (an invalid JSON
  value, a CHECK constraint, an incorrect date), so "OperationalError = connection trouble" would retry
  refused data for retry_seconds. The error number decides instead.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import defaultdict
from decimal import Decimal
from functools import lru_cache
from typing import Any, ClassVar

from sqlalchemy import Engine, Table, create_engine, event, update
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from etl import jsontext
from etl.dialects.base import Dialect
from etl.locks import NamedLock, lock_key

DRIVER = "pymysql"  # what mysql:// and mariadb:// mean; mysql+mysqldb:// etc. are kept as written
STRICT = "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), 'STRICT_ALL_TABLES')"
BULK_THRESHOLD = 50  # rows; below this the driver's executemany is as fast
BULK_BYTES = 900_000  # VALUES text per statement: below the smallest max_allowed_packet in use (1 MB)
IN_CHUNK = 1000  # keys per UPDATE … WHERE key IN (…)
RAW = {"no_parameters": True}  # a statement of literals: cursor.execute(sql), so the driver does no %-formatting

# Error numbers worth waiting out (PyMySQL's pymysql.constants.CR / ER; MariaDB's own where noted).
# Client side: 2002 CR_CONNECTION_ERROR (socket), 2003 CR_CONN_HOST_ERROR (TCP), 2006 CR_SERVER_GONE_ERROR,
# 2013 CR_SERVER_LOST, 2055 CR_SERVER_LOST_EXTENDED. Server side: 1040 ER_CON_COUNT_ERROR and 1203
# ER_TOO_MANY_USER_CONNECTIONS (too many connections), 1053 ER_SERVER_SHUTDOWN, 1158-1161 ER_NET_* (the
# network between us failed), 1205 ER_LOCK_WAIT_TIMEOUT, 1213 ER_LOCK_DEADLOCK (retry the batch), 1927
# MariaDB's ER_CONNECTION_KILLED, 4031 MySQL 8.0.24+'s ER_CLIENT_INTERACTION_TIMEOUT (on MariaDB 4031 is a
# CREATE TRIGGER error, which no statement of ours can raise). Not transient: 1317 ER_QUERY_INTERRUPTED
# (KILL QUERY, max_execution_time: someone meant it, as PostgreSQL's 57014), 1406 data too long, 1366
# incorrect string value, 1062 duplicate key, 1045 access denied, 1064 syntax.
TRANSIENT_CODES = frozenset({2002, 2003, 2006, 2013, 2055, 1040, 1203, 1053, 1158, 1159, 1160, 1161, 1205, 1213,
                             1927, 4031})


def _error_code(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


class MySQLDialect(Dialect):
    name: ClassVar[str] = "mysql"
    example: ClassVar[str] = "mysql://user@host/db"
    nul_in_text: ClassVar[bool] = True  # utf8mb4 text holds U+0000: kept verbatim on both write paths
    max_key_bytes: ClassVar[int | None] = 3072  # InnoDB, DYNAMIC row format
    bytes_per_char: ClassVar[int] = 4  # utf8mb4
    transactional_ddl: ClassVar[bool] = False  # every CREATE/ALTER/DROP commits
    errors: ClassVar[tuple[type[BaseException], ...]] = (DBAPIError,)  # every statement goes through SQLAlchemy

    # ------------------------------------------------------------------------------------ connecting
    def driver_url(self, url: str) -> str:
        """`mysql://`/`mariadb://` → PyMySQL; charset=utf8mb4 unless the URL names a charset."""
        backend, rest = url.split("://", 1)  # edited as text: the rest stays as the user wrote it
        if "+" not in backend:
            backend = f"{backend}+{DRIVER}"
        if "charset" not in make_url(url).query:
            rest += ("&" if "?" in rest else "?") + "charset=utf8mb4"
        return f"{backend}://{rest}"

    def create_engine(self, url: str, **kwargs: Any) -> Engine:
        kwargs.setdefault("json_serializer", _json)  # the same JSON text on the executemany and the bulk path
        engine = create_engine(self.driver_url(url), pool_pre_ping=True, **kwargs)

        @event.listens_for(engine, "connect")
        def _strict(dbapi_conn, _record) -> None:  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute(STRICT)
            cur.close()

        _create_tables_utf8mb4(engine)
        return engine

    # ------------------------------------------------------------------------------------ statements
    def insert(self, table: Table):
        return mysql.insert(table)

    @lru_cache(maxsize=64)  # noqa: B019 - dialects are per-process singletons
    def upsert_statement(self, table: Table, key: tuple[str, ...], keep: tuple[str, ...] = ()):
        stmt = mysql.insert(table)
        updates = {c.name: stmt.inserted[c.name] for c in table.columns if c.name not in key and c.name not in keep}
        return stmt.on_duplicate_key_update(updates or {key[0]: table.c[key[0]]})

    @lru_cache(maxsize=64)  # noqa: B019
    def insert_new_statement(self, table: Table, key: tuple[str, ...]):
        """A duplicate key sets the key to itself: nothing changes, and nothing else is ignored."""
        return mysql.insert(table).on_duplicate_key_update({key[0]: table.c[key[0]]})

    # ------------------------------------------------------------------------------------ bulk paths
    def upsert_rows(self, conn, table: Table, key, keep, rows, const=None) -> None:
        if len(rows) < BULK_THRESHOLD or not _utf8(conn):
            return super().upsert_rows(conn, table, key, keep, rows, const)
        _insert_literals(conn, self.upsert_statement(table, key, keep), table, rows, const or {})

    def insert_new_rows(self, conn, table: Table, key, rows, const=None) -> None:
        if len(rows) < BULK_THRESHOLD or not _utf8(conn):
            return super().insert_new_rows(conn, table, key, rows, const)
        _insert_literals(conn, self.insert_new_statement(table, key), table, rows, const or {})

    def update_by_key(self, conn, table: Table, where: dict[str, Any], key: str, column: str,
                      values: dict[Any, Any]) -> None:
        """One `UPDATE … SET column = v WHERE … AND key IN (…)` per distinct value (the writer's values
        are two page states): an executemany of UPDATE is one round trip per row on both drivers."""
        by_value: dict[Any, list] = defaultdict(list)
        try:
            for k, v in values.items():
                by_value[v].append(k)
        except TypeError:  # unhashable values: one statement per row after all
            return super().update_by_key(conn, table, where, key, column, values)
        cond = [table.c[c] == v for c, v in where.items()]
        for value, keys in by_value.items():
            for i in range(0, len(keys), IN_CHUNK):
                conn.execute(update(table).where(*cond, table.c[key].in_(keys[i:i + IN_CHUNK]))
                             .values({column: value}))

    # ------------------------------------------------------------------------------------ bulk load
    def encode_bulk(self, columns: list[str], rows: list[tuple]) -> tuple[list[str], list[str]]:
        """Rows as the VALUES lists of multi-row INSERTs, rendered in the worker that made them.
        LOAD DATA LOCAL INFILE is not used: it needs local_infile on both ends (off by default on
        MySQL 8), and a client that allows it sends whichever file the server asks for."""
        return list(columns), values_chunks(["(" + ",".join(map(sql_literal, row)) + ")" for row in rows])

    def load_bulk(self, conn, table: Table, payload: tuple[list[str], list[str]]) -> None:
        columns, chunks = payload
        quote = conn.dialect.identifier_preparer.quote
        head = f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, columns))}) VALUES "
        for chunk in chunks:
            conn.exec_driver_sql(head + chunk, execution_options=RAW)

    def analyze(self, conn, table: str) -> None:
        conn.exec_driver_sql(f"ANALYZE TABLE {conn.dialect.identifier_preparer.quote(table)}").fetchall()

    # ------------------------------------------------------------------------------------ errors, reads
    def is_transient(self, exc: BaseException) -> bool:
        """By error number, following the exception's context: after a deadlock InnoDB has rolled back
        the whole transaction, so the ROLLBACK TO SAVEPOINT that follows fails (1305), and that failure
        stands for the deadlock."""
        seen = 0
        current: BaseException | None = exc
        while current is not None and seen < 5:
            if self._transient_here(current):
                return True
            current, seen = current.__context__, seen + 1
        return False

    @staticmethod
    def _transient_here(exc: BaseException) -> bool:
        wrapped = isinstance(exc, DBAPIError)
        if wrapped and exc.connection_invalidated:
            return True
        orig = exc.orig if wrapped else exc
        code = _error_code(orig)
        if code == 0:  # PyMySQL's InterfaceError(0, ''): the connection is already closed
            return True
        return code in TRANSIENT_CODES

    def named_lock(self, url: str, name: str, shared: bool = False) -> NamedLock:
        """GET_LOCK names are server-wide (PostgreSQL's advisory locks are per database): the database's
        name goes into the lock's, so one job name in two databases of one server are two locks."""
        return super().named_lock(url, f"{make_url(url).database or ''}/{name}", shared)

    def lock_statements(self, name: str, shared: bool = False) -> tuple[str, str, dict[str, Any]]:
        """GET_LOCK names are at most 64 characters: a hash of the name, prefixed so a DBA can tell whose."""
        if shared:
            raise NotImplementedError("GET_LOCK has no shared mode (etl worker needs PostgreSQL)")
        key = f"etl:{lock_key(name) & (2**64 - 1):016x}"
        return ("SELECT GET_LOCK(:k, 0)", "SELECT RELEASE_LOCK(:k)", {"k": key})

    def begin_read_only(self, conn) -> None:
        """START TRANSACTION READ ONLY opens a transaction of its own. SQLAlchemy's begin() has sent
        nothing yet, and SET TRANSACTION READ ONLY would apply only to a transaction not yet started
        (error 1568 inside one), so the explicit START is the order that cannot go wrong."""
        conn.exec_driver_sql("START TRANSACTION READ ONLY")


# ---------------------------------------------------------------------------------------- literals
def _json(value: Any) -> str:
    return jsontext.text(value)


def _text_literal(text: str) -> str:
    """A utf8mb4 string literal that means the same with or without NO_BACKSLASH_ESCAPES: quotes doubled,
    and text holding a backslash or NUL sent as hex instead, so no backslash is ever inside quotes."""
    if "\\" in text or "\x00" in text:
        return "_utf8mb4 X'" + text.encode().hex() + "'"
    return "_utf8mb4'" + text.replace("'", "''") + "'"


def sql_literal(value: Any) -> str:
    """One value as a MySQL literal, as the column types' bind processing would send it."""
    if value is None:
        return "NULL"
    kind = type(value)
    if kind is str:
        return _text_literal(value)
    if kind is int or kind is Decimal:
        return str(value)
    if kind is bool:
        return "1" if value else "0"
    if kind is float:
        if not math.isfinite(value):
            raise ValueError(f"MySQL cannot store {value!r}")
        return repr(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:  # DATETIME holds UTC wall time
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return _text_literal(value.isoformat(" "))
    if isinstance(value, dt.date):
        return _text_literal(value.isoformat())
    if isinstance(value, dict | list):
        return _text_literal(_json(value))
    if isinstance(value, bytes):
        return "X'" + value.hex() + "'"
    return _text_literal(str(value))


def values_chunks(values: list[str]) -> list[str]:
    """`(…)` row literals joined into VALUES lists of at most BULK_BYTES (a longer row goes alone)."""
    chunks: list[str] = []
    part: list[str] = []
    size = 0
    for v in values:
        if part and size + len(v) > BULK_BYTES:
            chunks.append(",".join(part))
            part, size = [], 0
        part.append(v)
        size += len(v) + 1
    if part:
        chunks.append(",".join(part))
    return chunks


def _utf8(conn) -> bool:
    """Literals are sent as UTF-8 text: only where the connection's charset is utf8mb4 (the default)."""
    return str(conn.engine.url.query.get("charset", "utf8mb4")).lower() in ("utf8mb4", "utf8", "utf8mb3")


_VALUES = re.compile(r"\bVALUES\s*\((?:\s*(?:%s|%\([^)]+\)s|\?)\s*,?)+\)", re.IGNORECASE)


@lru_cache(maxsize=64)
def _around_values(stmt, dialect) -> tuple[str, str]:
    """SQLAlchemy's statement for this dialect, cut around its one VALUES (…) group: the INSERT INTO
    head with its column list, and the tail (`AS new` and ON DUPLICATE KEY UPDATE, as this server
    wants them)."""
    sql = stmt.compile(dialect=dialect).string
    found = _VALUES.search(sql)
    if found is None:  # pragma: no cover - SQLAlchemy always renders one VALUES group here
        raise ValueError(f"no VALUES group in {sql[:200]!r}")
    return sql[:found.start()] + "VALUES ", sql[found.end():].replace("%%", "%")


def _insert_literals(conn, stmt, table: Table, rows: list[dict[str, Any]], const: dict[str, Any]) -> None:
    head, tail = _around_values(stmt, conn.dialect)
    fixed = {c: sql_literal(v) for c, v in const.items()}  # the same for every row: rendered once
    columns = [c.name for c in table.columns]
    # a column the rows leave out gets its default, as an INSERT naming it not would (frontier.claims = 0)
    for c in table.columns:
        if c.name not in fixed and c.default is not None and c.default.is_scalar and rows and c.name not in rows[0]:
            fixed[c.name] = sql_literal(c.default.arg)
    values = ["(" + ",".join(fixed[c] if c in fixed else sql_literal(row.get(c)) for c in columns) + ")"
              for row in rows]
    for chunk in values_chunks(values):
        conn.exec_driver_sql(head + chunk + tail, execution_options=RAW)


# ---------------------------------------------------------------------------------------- tables
def table_collation(dialect) -> str:
    """A binary collation that does not pad: 'A', 'a' and 'a ' are three keys."""
    if dialect.is_mariadb:
        return "utf8mb4_nopad_bin"
    return "utf8mb4_0900_bin" if (dialect.server_version_info or (0,)) >= (8, 0, 17) else "utf8mb4_bin"


def _create_tables_utf8mb4(engine: Engine) -> None:
    """CREATE TABLE through this engine: utf8mb4 with table_collation() unless the table names its own
    charset or collation, and MEDIUMTEXT for a Text without a length. This engine's dialect only: the
    compilers are subclassed on its instance, not registered for MySQL process-wide."""
    dialect = engine.dialect

    class DDLCompiler(dialect.ddl_compiler):  # type: ignore[name-defined, misc]
        def post_create_table(self, table: Table) -> str:
            options = super().post_create_table(table)
            if any(k.endswith(("_charset", "_collate", "_character_set")) for k in table.kwargs):
                return options
            return f"{options} DEFAULT CHARSET=utf8mb4 COLLATE={table_collation(self.dialect)}"

    class TypeCompiler(type(dialect.type_compiler_instance)):  # type: ignore[misc]
        def visit_text(self, type_, **kw: Any) -> str:
            if type_.length is None:
                return self._extend_string(type_, {}, "MEDIUMTEXT")
            return super().visit_text(type_, **kw)

    dialect.ddl_compiler = DDLCompiler
    dialect.type_compiler_instance = dialect.type_compiler = TypeCompiler(dialect)

"""What differs between databases, declared in one place per database (dlt's destination capabilities).

A Dialect answers: how a URL becomes an engine (driver, connect options), the upsert and insert-if-new
statements, the bulk path for many rows (COPY, multi-row INSERT), which errors are worth waiting out,
how to open a read-only transaction, and limits (index key length, NUL in text, whether DDL can be rolled
back). The writer, the run bookkeeping, the SQL source and the migration runner call these and never ask
which database it is.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, ClassVar

from sqlalchemy import Engine, Table, and_, bindparam, create_engine, delete, update
from sqlalchemy.exc import DBAPIError, OperationalError

from etl.locks import NamedLock, SessionLock


def mask_url(url: str) -> str:
    """A database URL safe to print and store: the password replaced by *** wherever it is written
    (user:secret@host, a raw '@' inside the password, ?password=… / passwd / sslpassword / *token / *secret)."""
    out = re.sub(r"(://[^:/?#]*:)(.*)@(?=[^@]*$)", r"\1***@", url)
    return re.sub(r"(?i)([?&](?:[a-z_]*pass(?:word|wd)?|pwd|[a-z_]*secret|[a-z_]*token)=)[^&]*", r"\1***", out)


class Dialect:
    name: ClassVar[str]
    example: ClassVar[str]  # a URL shown when a URL is refused
    nul_in_text: ClassVar[bool] = True  # can a text column hold U+0000?
    max_key_bytes: ClassVar[int | None] = None  # longest index key (None: no practical limit)
    bytes_per_char: ClassVar[int] = 1  # worst case, for key-length checks
    transactional_ddl: ClassVar[bool] = True  # does a failed migration roll back its CREATE/ALTER?
    errors: ClassVar[tuple[type[BaseException], ...]] = (DBAPIError,)  # what a failed statement raises
    # Can several machines share one run (etl worker)? Needs row locks with SKIP LOCKED, a server clock and
    # session locks that can be shared (etl/shared/)
    leases: ClassVar[bool] = False
    # Does insert_fresh_rows append without conflict handling (cheaper than the upsert), raising at a key
    # that is stored? Then the writer appends a first crawl's rows too (etl/appending.py)
    appends: ClassVar[bool] = False

    # ------------------------------------------------------------------------------------ connecting
    def driver_url(self, url: str) -> str:
        return url

    def create_engine(self, url: str, **kwargs: Any) -> Engine:
        return create_engine(self.driver_url(url), pool_pre_ping=True, **kwargs)

    # ------------------------------------------------------------------------------------ statements
    def insert(self, table: Table):
        """The dialect's INSERT construct (with its conflict clause methods)."""
        raise NotImplementedError

    @lru_cache(maxsize=64)  # noqa: B019 - dialects are per-process singletons
    def upsert_statement(self, table: Table, key: tuple[str, ...], keep: tuple[str, ...] = ()):
        """INSERT … that updates every column but the key and `keep` when the key exists."""
        stmt = self.insert(table)
        updates = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in key and c.name not in keep}
        return stmt.on_conflict_do_update(index_elements=list(key), set_=updates)

    @lru_cache(maxsize=64)  # noqa: B019
    def insert_new_statement(self, table: Table, key: tuple[str, ...]):
        """INSERT … that leaves an existing row with the same key alone."""
        return self.insert(table).on_conflict_do_nothing(index_elements=list(key))

    # ------------------------------------------------------------------------------------ bulk paths
    def clean_value(self, value: Any) -> Any:
        """A value as this database can store it (see nul_in_text)."""
        return value if self.nul_in_text else strip_nul(value)

    def clean_row(self, row: dict[str, Any]) -> dict[str, Any]:
        return row if self.nul_in_text else {c: strip_nul(v) for c, v in row.items()}

    def upsert_rows(self, conn, table: Table, key: tuple[str, ...], keep: tuple[str, ...],
                    rows: list[dict[str, Any]], const: dict[str, Any] | None = None) -> None:
        """Many rows in one go (executemany; drivers that rewrite it to multi-row INSERT do so).
        `const` are columns with one value for every row (timestamps, run id), not repeated in `rows`."""
        const = const or {}
        conn.execute(self.upsert_statement(table, key, keep), [self.clean_row({**r, **const}) for r in rows])

    def insert_fresh_rows(self, conn, table: Table, key: tuple[str, ...], keep: tuple[str, ...],
                          rows: list[dict[str, Any]], const: dict[str, Any] | None = None) -> None:
        """Rows whose keys no stored row holds (this transaction just deleted everything under their key
        prefixes): a dialect may append them without conflict handling. A key that is there after all (a
        concurrent writer of the same unit) must raise, so that the caller falls back to the upsert; by
        default this is the upsert."""
        self.upsert_rows(conn, table, key, keep, rows, const)

    def insert_new_rows(self, conn, table: Table, key: tuple[str, ...], rows: list[dict[str, Any]],
                        const: dict[str, Any] | None = None) -> None:
        const = const or {}
        conn.execute(self.insert_new_statement(table, key), [self.clean_row({**r, **const}) for r in rows])

    def update_by_key(self, conn, table: Table, where: dict[str, Any], key: str, column: str,
                      values: dict[Any, Any]) -> None:
        """UPDATE table SET column = values[k] WHERE <where> AND key = k, for every k."""
        cond = and_(*(table.c[c] == v for c, v in where.items()), table.c[key] == bindparam("k"))
        conn.execute(update(table).where(cond).values({column: bindparam("v")}),
                     [{"k": k, "v": v} for k, v in values.items()])

    def delete_prefixes(self, conn, table: Table, columns: tuple[str, ...], prefixes: set[tuple]) -> None:
        """DELETE the rows whose leading key `columns` equal one of `prefixes` (the rows a unit replaces),
        in chunks of 500 values (SQLite's variable limit)."""
        cols = [table.c[k] for k in columns]
        for scope, last in prefix_groups(prefixes).items():
            same = [c == v for c, v in zip(cols[:-1], scope, strict=True)]
            for i in range(0, len(last), 500):
                conn.execute(delete(table).where(and_(*same, cols[-1].in_(last[i:i + 500]))))

    # ------------------------------------------------------------------------------------ bulk load
    def encode_bulk(self, columns: list[str], rows: list[tuple]) -> Any:
        """Rows for load_bulk, encoded where they are made (a worker process), not where they are loaded."""
        return [dict(zip(columns, row, strict=True)) for row in rows]

    def load_bulk(self, conn, table: Table, payload: Any) -> None:
        """Append encoded rows to a table (a freshly created one: no conflicts)."""
        conn.execute(table.insert(), payload)

    def analyze(self, conn, table: str) -> None:  # noqa: B027 - optional hook
        """Refresh the planner's statistics after a bulk load."""

    # ------------------------------------------------------------------------------------ errors, reads
    def is_transient(self, exc: BaseException) -> bool:
        """Connection trouble worth waiting out (retry the batch) rather than data the database refuses."""
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return True
        return isinstance(exc, OperationalError)

    def begin_read_only(self, conn) -> None:
        """Make the transaction just begun on `conn` read-only (a source's `where` is raw SQL)."""

    def writable_problem(self, url: str) -> str | None:
        """Why the database cannot take writes right now (locked, read-only), asked once before a run so that
        the answer is one line at once rather than a traceback after the busy timeout; None when it can."""
        return None

    # ------------------------------------------------------------------------------------ locks
    def lock_statements(self, name: str, shared: bool = False) -> tuple[str, str, dict[str, Any]]:
        """SQL that takes (without waiting; true when taken) and frees a lock named `name` for the session.
        `shared`: held by many sessions at once, but never together with the exclusive one (the workers of
        a shared run against an `etl run` of the same job); only dialects with `leases` have it."""
        raise NotImplementedError

    def named_lock(self, url: str, name: str, shared: bool = False) -> NamedLock:
        """A lock held until released or until this process dies (etl/locks.py): a job runs once at a time,
        migrations run one at a time."""
        take, free, params = self.lock_statements(name, shared)
        return SessionLock(lambda: self.create_engine(url, pool_size=1, max_overflow=0), name, take, free, params)


def prefix_groups(prefixes: set[tuple]) -> dict[tuple, list]:
    """Key prefixes grouped by all but their last value ({(job, id), ...} -> {(job,): [ids, sorted]}): one
    DELETE … IN (…) per group and chunk."""
    groups: dict[tuple, list] = {}
    for prefix in prefixes:
        groups.setdefault(prefix[:-1], []).append(prefix[-1])
    for last in groups.values():
        last.sort()
    return groups


def strip_nul(value: Any) -> Any:
    """Text that cannot hold NUL (U+0000) stores U+FFFD, the replacement character, instead. Everything
    else (quotes, SQL fragments) is always stored verbatim."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {strip_nul(k): strip_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_nul(v) for v in value]
    return value

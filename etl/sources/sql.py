"""A table in a database, read in key ranges: the plan finds a boundary every `chunk_rows` keys (a window
function: any sortable key type), and each range is read on a parse process over its own connection,
in a read-only transaction (`where` is SQL the config's author answers for).

`published` becomes a date in `[source.sql] timezone` (default Asia/Shanghai, the A-share market's zone):
a value that knows its instant — a PostgreSQL `timestamptz`, or text with an offset such as
'2026-06-01T16:30:00Z' or '2026-06-02 00:30+08' (SQLite) — is converted to that zone first, so
'2026-06-02 00:30+08' is 2026-06-02 whatever the session's TimeZone is. A value without an offset
(`timestamp`, MySQL DATETIME/TIMESTAMP as the driver returns them, '2026-06-01 23:30', a date) is taken as
written, already in local time."""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import text

from etl.config.checker import Checker
from etl.config.model import Config
from etl.errors import one_line
from etl.items import Parsed, Request
from etl.sources.base import Reader, Source
from etl.sources.records import shape

log = logging.getLogger("etl.sources.sql")

_NAME = re.compile(r"[A-Za-z_][\w.]*")
DEFAULT_TIMEZONE = "Asia/Shanghai"


@dataclass(frozen=True)
class SqlSettings:
    url: str | None  # None: the target database
    table: str
    key: str
    columns: dict[str, str]  # row field → table column; `id` is required
    chunk_rows: int = 5000
    where: str | None = None
    timezone: str = DEFAULT_TIMEZONE  # the zone `published` instants are dated in (module doc)
    updated: str | None = None  # a column a row's edits move forward: the cursor's (etl/sources/sql_cursor.py)


class SqlSource(Source):
    name: ClassVar[str] = "sql"
    keys: ClassVar[frozenset[str]] = frozenset({"sql"})
    fetches: ClassVar[bool] = False
    unit: ClassVar[str] = "row ranges"

    @classmethod
    def check(cls, source, raw, ck: Checker, variables) -> tuple[SqlSettings, tuple[str, ...]]:
        where = "[source.sql]"
        s = ck.table(source.get("sql"), where, {"url", "table", "key", "columns", "chunk_rows", "where",
                                                "timezone", "updated"},
                     {"table", "key", "columns"})
        cols = ck.table(s["columns"], f"{where}.columns", set(s["columns"]) if isinstance(s["columns"], dict)
                        else set(), {"id"})
        updated = ck.typed(s, "updated", where, str)
        for name in [s["table"], s["key"], *cols.values(), *cols, *([updated] if updated is not None else [])]:
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise ck.fail(where, f"{name!r} is not a plain table/column name")
        clause = ck.typed(s, "where", where, str)
        if clause is not None and (";" in clause or "--" in clause or "/*" in clause):
            raise ck.fail(f"{where}.where", "one condition, without ';' or comments (it is SQL the config's "
                                             "author answers for, run read-only)")
        settings = SqlSettings(url=ck.typed(s, "url", where, str), table=s["table"], key=s["key"],
                               columns=dict(cols), chunk_rows=ck.typed(s, "chunk_rows", where, int, 5000),
                               where=clause, timezone=ck.typed(s, "timezone", where, str, DEFAULT_TIMEZONE),
                               updated=updated)
        if settings.chunk_rows < 1:
            raise ck.fail(f"{where}.chunk_rows", "must be at least 1")
        try:
            ZoneInfo(settings.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ck.fail(f"{where}.timezone", f"{settings.timezone!r} is not a time zone name (an IANA name "
                                               f"such as {DEFAULT_TIMEZONE!r} or 'UTC')") from None
        return settings, ()

    @classmethod
    def validate(cls, cfg: Config, ck: Checker) -> None:
        if cfg.transform.type == "none":
            raise ck.fail("[transform]", "a sql source needs a transform (stock_mentions or plugin)")
        cls.check_text_fields(cfg, ck, set(cfg.source.columns))

    @property
    def url(self) -> str:
        return self.cfg.source.url or self.cfg.database_url

    def prepare(self) -> None:
        """`[source] demo = { news = N }`: seed a missing table with N synthetic articles. Then ask the
        table for nothing: a missing table, a wrong column or a `where` that is not SQL is a config
        problem, said in one line before anything is written."""
        demo = self.cfg.demo or {}
        if demo.get("news"):
            from etl.sources.news_seed import seed_news, table_exists

            if not table_exists(self.url, self.cfg.source.table):
                log.info("no %s table yet: seeding %s synthetic articles ([source] demo.news)",
                         self.cfg.source.table, f"{int(demo['news']):,}")
                seed_news(self.url, int(demo["news"]), table=self.cfg.source.table)
        self._probe()

    def _probe(self) -> None:
        from etl.db import DatabaseError, make_engine
        from etl.dialects import dialect_for

        src, engine = self.cfg.source, make_engine(self.url)
        names = ", ".join([src.key, *src.columns.values(), *([src.updated] if src.updated else [])])
        where = f" AND ({src.where})" if src.where else ""
        try:
            with engine.connect() as conn, conn.begin():
                dialect_for(self.url).begin_read_only(conn)
                conn.execute(text(f"SELECT {names} FROM {src.table} WHERE 1 = 0{where}")).all()
        except Exception as exc:
            raise DatabaseError(f"[source.sql] table {src.table}: {one_line(exc, 300)} (check table, key, "
                                "updated, columns and where: they are the table's real names)") from None
        finally:
            engine.dispose()

    def plan(self, engine: Any) -> list[Request]:
        """Key ranges over the rows of this run's window (etl/sources/sql_cursor.py: all rows, or those
        after the last successful run's cursor), a boundary every `chunk_rows` keys; the window goes in
        every unit's meta, so a resumed run reads what was planned and the run's end can move the cursor."""
        from etl.db import make_engine
        from etl.dialects import dialect_for
        from etl.sources import sql_cursor

        src = self.cfg.source
        cursor = None if self.full else sql_cursor.load(engine, self.cfg.job)
        own = make_engine(self.url)  # its own connection: a read-only one must not go back to the writer's pool
        try:
            with own.connect() as conn, conn.begin():
                dialect_for(self.url).begin_read_only(conn)
                window = sql_cursor.plan_window(conn, src, sql_cursor.identity(src), cursor, self.full)
                found, rows, has_null = self._boundaries(conn, window)
        except Exception as exc:  # the probe passed, yet the table cannot be planned (a `where` that writes)
            from etl.db import DatabaseError

            raise DatabaseError(f"[source.sql] table {src.table}: {one_line(exc, 300)}") from None
        finally:
            own.dispose()
        meta = window.meta()
        # a key repeated across a boundary would give two ranges starting at one value: keep the first
        bounds = [b for i, b in enumerate(found) if i == 0 or b != found[i - 1]]
        units = [Request(f"sql:{src.table}:{lo}", "rows",
                         {"lo": lo, "hi": bounds[i + 1] if i + 1 < len(bounds) else None, "window": meta})
                 for i, lo in enumerate(bounds)]
        if has_null:  # NULL keys sort nowhere (no cursor places them): a range of their own, read every run
            units.append(Request(f"sql:{src.table}:NULL", "rows", {"null": True, "window": meta}))
        if not units and window.full:  # an empty table read in full: the run's end must know it read it all
            units.append(Request(f"sql:{src.table}:(empty)", "rows", {"empty": True, "window": meta}))
        since = "every row" if window.full else f"rows added or changed since run {cursor['run_id']}"
        log.info("%s: %s: %s rows in %d ranges%s", src.table, since, f"{rows:,}", len(units),
                 " (and those with a NULL key)" if has_null else "")
        return units

    def _boundaries(self, conn, window) -> tuple[list[Any], int, bool]:
        """Every `chunk_rows`-th key inside the window, how many rows it holds, and whether NULL keys exist."""
        src = self.cfg.source
        inside, params = window.condition(src.key)
        where = f" WHERE {src.key} IS NOT NULL" + (f" AND ({src.where})" if src.where else "") + inside
        query = text(f"SELECT k, total FROM (SELECT {src.key} AS k, ROW_NUMBER() OVER (ORDER BY {src.key}) AS rn, "
                     f"COUNT(*) OVER () AS total FROM {src.table}{where}) AS numbered "
                     "WHERE (rn - 1) % :chunk = 0 ORDER BY k")
        found, rows = [], 0
        for k, total in conn.execute(query, {"chunk": src.chunk_rows, **params}):
            rows = total
            if k is not None:
                found.append(k)
        has_null = conn.execute(text(f"SELECT 1 FROM {src.table} WHERE {src.key} IS NULL"
                                     f"{' AND (' + src.where + ')' if src.where else ''} LIMIT 1")).first()
        return found, int(rows or 0), has_null is not None

    def reader(self, domains: tuple[str, ...]) -> Reader:
        return _RangeReader(self.cfg.source, self.url)


class _RangeReader:
    """One key range → rows named as `[source.sql] columns` names them (`published` as a date, `score`
    as a float: a value that is neither is that row's failure, not the range's)."""

    def __init__(self, src: SqlSettings, url: str) -> None:
        from etl.db import make_engine
        from etl.dialects import dialect_for

        self.src, self.engine, self.dialect = src, make_engine(url), dialect_for(url)
        self.zone = ZoneInfo(src.timezone)
        names = ", ".join(f"{col} AS {name}" for name, col in src.columns.items())
        self.query_open = f"SELECT {names} FROM {src.table} WHERE {src.key} >= :lo"
        self.extra = f" AND ({src.where})" if src.where else ""

    def read(self, unit: Request) -> Parsed:
        from etl.sources.sql_cursor import Window

        result = Parsed(unit)
        if unit.meta.get("empty"):
            return result
        lo, hi = unit.meta.get("lo"), unit.meta.get("hi")
        params: dict[str, Any] = {"lo": lo, "hi": hi}
        if unit.meta.get("null"):
            query = self.query_open.replace(f"{self.src.key} >= :lo", f"{self.src.key} IS NULL") + self.extra
        else:
            query = self.query_open + (f" AND {self.src.key} < :hi" if hi is not None else "") + self.extra
            if unit.meta.get("window"):  # (a run planned before windows existed reads its ranges whole)
                inside, window_params = Window.from_meta(unit.meta["window"]).condition(self.src.key)
                query += inside
                params.update(window_params)
        try:
            with self.engine.connect() as conn, conn.begin():
                self.dialect.begin_read_only(conn)
                found = conn.execute(text(query), params)
                names, records = list(found.keys()), found.all()  # plain rows: no mapping view per record
        except Exception as exc:
            self.engine.dispose()
            result.error = f"read error: {type(exc).__name__}: {one_line(exc)}"
            return result
        for rec in records:
            row = dict(zip(names, rec, strict=True))
            if row.get("published") is not None:
                row["published"] = local_date(row["published"], self.zone)
            shape(row, None, result, f"row {row.get('id')}")
        return result


def local_date(value: Any, zone: ZoneInfo) -> Any:
    """An instant (aware datetime, ISO text with an offset) → its date in `zone`; anything else as it came
    (shape() dates it as written, or says why it cannot)."""
    if isinstance(value, str) and len(value) > 10:
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            return value
        if value.tzinfo is None:
            return value.date()
    if isinstance(value, dt.datetime):
        return (value.astimezone(zone) if value.tzinfo is not None else value).date()
    return value

"""Versions of a table's tracked columns, and rows marked gone (listing_history, `<table>_history`).

A nightly job's real output is a time series: a changed price must not overwrite the old one, and a
listing that disappeared must stop looking current. So a table that keeps history (listings; a
config-defined table that names `[target] track`) has a history table with one row per version of the
tracked values — `valid_from`, `valid_to` (NULL while current), the run that saw it first, and `kind`
(new | changed | relisted) — and a `delisted_at` column.

Versions are written by the writer, in the transaction that upserts the rows (`History.read` before the
upsert, `History.write` after it), so the history never disagrees with the table, even after a kill -9.
They are set-based: one SELECT of the batch's keys (chunked), then an INSERT of the new versions and an
UPDATE closing the old ones. A run keeps at most one version per key (the history's primary key is
(key, run_id)): a page written twice in a run, by a redo after a crash or by a writer recovery, finds
its own version and adds nothing; a value that moves again within one run amends the run's version.

Delistings (`finish`) happen only at the end of a *complete* run — status succeeded: no failed page, no
max_pages cut, not interrupted — since only a run that saw everything can say what is gone. The rows it
may mark are its scope: rows last written by a run of the same job (`runs.job`) whose constant columns
(`source` = the site, and every config field given by `value`, such as city = "{city}") equal this run's,
and that this run did not write (run_id differs). A run of city=sh never delists bj listings; a job that
crawls one district never delists another job's. A row that comes back is relisted: delisted_at is
cleared by the upsert and a new version begins.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Float, Integer, Numeric, and_, bindparam, exists, func, select, update

from etl import schema
from etl.appending import AppendGuess, append_or_upsert
from etl.targets import DELISTED, Target

CHUNK = 500  # keys per IN list: SQLite's variable limit, and statements of a sane size


@dataclass
class Stored:
    """What the database holds of one key before the batch: is it marked gone, and its current version."""

    delisted: bool
    open_run: int | None  # run_id of the current version; None: there is none
    values: tuple = ()


@dataclass
class Versions:
    """What one batch does to the history."""

    insert: list[dict[str, Any]] = field(default_factory=list)  # versions that begin now
    close: list[tuple] = field(default_factory=list)  # keys whose current version ends now
    amend: list[dict[str, Any]] = field(default_factory=list)  # this run's versions whose values moved again


@dataclass
class RunCounts:
    """What a run did to the table, for `runs` and the summary."""

    new: int
    changed: int
    unchanged: int
    relisted: int
    delisted: int | None  # None: the run did not complete, so it marked nothing


def _chunks(key: tuple[str, ...], keys: list[tuple]) -> list[tuple[tuple, list]]:
    """Keys grouped by all but their last column, then cut into IN lists of CHUNK values."""
    by_scope: dict[tuple, list] = {}
    for k in keys:
        by_scope.setdefault(k[:-1], []).append(k[-1])
    out = []
    for scope, last in by_scope.items():
        last.sort()
        out += [(scope, last[i:i + CHUNK]) for i in range(0, len(last), CHUNK)]
    return out


def _same(a: Any, b: Any, type_: Any) -> bool:
    """Equal as the column stores them: 5235000 and Decimal('5235000.00') are one price, and a float read
    back may differ from the one written in its last bit."""
    if a is None or b is None:
        return a is None and b is None
    try:
        if isinstance(type_, Numeric) and not isinstance(type_, Float):
            a, b = Decimal(str(a)), Decimal(str(b))
            if type_.scale is not None:
                q = Decimal(1).scaleb(-type_.scale)
                return a.quantize(q) == b.quantize(q)
            return a == b
        if isinstance(type_, Float):
            return math.isclose(float(a), float(b), rel_tol=1e-12)
        if isinstance(type_, Integer):
            return int(a) == int(b)
    except (InvalidOperation, ValueError, TypeError):
        pass
    return a == b or str(a) == str(b)


class History:
    """The writer's half: read the batch's keys before its upsert, write its versions after."""

    def __init__(self, target: Target, dialect) -> None:
        self.table, self.history, self.key, self.track = target.table, target.history, target.key, target.track
        self.types = [self.history.c[c].type for c in self.track]
        self.dialect = dialect
        self.clean = dialect.clean_value  # the values compared are those the upsert stores
        self.appending = AppendGuess(dialect.appends)

    def _where(self, table, scope: tuple, last: list):
        cols = [table.c[k] for k in self.key]
        return and_(*(c == v for c, v in zip(cols[:-1], scope, strict=True)), cols[-1].in_(last))

    def read(self, conn, keys: list[tuple]) -> dict[tuple, Stored]:
        """One SELECT (per CHUNK keys) of the stored rows joined with their current versions."""
        t, h = self.table, self.history
        current = and_(*(h.c[k] == t.c[k] for k in self.key), h.c.valid_to.is_(None))
        cols = [*(t.c[k] for k in self.key), t.c[DELISTED], h.c.run_id, *(h.c[c] for c in self.track)]
        n, out = len(self.key), {}
        keys = [tuple(map(self.clean, k)) for k in keys]  # as stored: a NUL in a key is not sent, nor found
        for scope, last in _chunks(self.key, keys):
            stmt = select(*cols).select_from(t.outerjoin(h, current)).where(self._where(t, scope, last))
            for r in conn.execute(stmt):
                out[tuple(r[:n])] = Stored(r[n] is not None, r[n + 1], tuple(r[n + 2:]))
        return out

    def plan(self, rows: list[dict[str, Any]], stored: dict[tuple, Stored], run_id: int,
             now: dt.datetime) -> Versions:
        """Compare the rows written with what was stored: which versions begin, end, or are amended."""
        out = Versions()
        for row in rows:
            k = tuple(self.clean(row[c]) for c in self.key)
            values = tuple(self.clean(row.get(c)) for c in self.track)
            s = stored.get(k)
            if s is not None and not s.delisted and s.open_run is not None:
                if all(_same(a, b, t) for a, b, t in zip(values, s.values, self.types, strict=True)):
                    continue  # unchanged, or this run wrote it already (a redo)
                if s.open_run == run_id:  # moved again within the run: one version per run
                    out.amend.append({"k": list(k), "values": values})
                    continue
                kind = "changed"
            else:  # never stored, back after a delisting, or stored before its history began
                kind = "new" if s is None else "relisted" if s.delisted else "changed"
            out.close.append(k)
            out.insert.append({**dict(zip(self.key, k, strict=True)), **dict(zip(self.track, values, strict=True)),
                               "valid_from": now, "valid_to": None, "run_id": run_id, "kind": kind})
        return out

    def write(self, conn, versions: Versions, run_id: int, now: dt.datetime) -> None:
        h = self.history
        for scope, last in _chunks(self.key, versions.close):  # before the insert: never two current versions
            conn.execute(update(h).where(h.c.valid_to.is_(None), h.c.run_id != run_id, self._where(h, scope, last))
                         .values(valid_to=now))
        if versions.insert:  # the dialect's bulk path (COPY on PostgreSQL), not one INSERT per version;
            # appended while that works, else upserted, so that a version this run already wrote under
            # rows deleted since (a replaced prefix, a unit redone) is rewritten, one version per key per run
            append_or_upsert(conn, self.dialect, self.appending, h, (*self.key, "run_id"), (), versions.insert)
        if versions.amend:
            cond = and_(h.c.run_id == run_id, *(h.c[k] == bindparam(f"k_{k}") for k in self.key))
            conn.execute(update(h).where(cond).values({c: bindparam(f"v_{c}") for c in self.track}),
                         [{**{f"k_{k}": v for k, v in zip(self.key, a["k"], strict=True)},
                           **{f"v_{c}": v for c, v in zip(self.track, a["values"], strict=True)}}
                          for a in versions.amend])


def delisting_scope(cfg) -> dict[str, Any]:
    """The constant columns of a job's rows: `source` (the site) and every config field given by `value`
    that is a column, as the parser types it. A complete run marks gone only rows that match them all."""
    from etl.parse.extract import Extractor

    columns = set(cfg.target.column_names)
    scope: dict[str, Any] = {"source": cfg.site}
    for spec in cfg.fields.values():
        if spec.source == "config" and spec.name in columns and spec.name not in scope:
            value = Extractor.typed(spec, spec.value)
            if value is not None:
                scope[spec.name] = value
    return scope


def finish(conn, target: Target, run_id: int, job: str, scope: dict[str, Any], complete: bool,
           now: dt.datetime) -> RunCounts:
    """Count what the run did and, after a complete run only, mark the rows it did not see as gone (and
    end their current versions), in the transaction that records how the run ended."""
    t, h, runs = target.table, target.history, schema.runs
    by_kind = dict(conn.execute(select(h.c.kind, func.count()).where(h.c.run_id == run_id).group_by(h.c.kind)).all())
    seen = conn.execute(select(func.count()).select_from(t).where(t.c.run_id == run_id)).scalar() or 0
    new, changed, relisted = (int(by_kind.get(k, 0)) for k in ("new", "changed", "relisted"))
    delisted = None
    if complete:
        gone = and_(t.c[DELISTED].is_(None), t.c.run_id != run_id,
                    t.c.run_id.in_(select(runs.c.id).where(runs.c.job == job)),
                    *(t.c[c] == v for c, v in scope.items() if c in t.c))
        same = and_(*(t.c[k] == h.c[k] for k in target.key))
        conn.execute(update(h).where(h.c.valid_to.is_(None), exists().where(same, gone)).values(valid_to=now))
        delisted = conn.execute(update(t).where(gone).values({DELISTED: now})).rowcount
    return RunCounts(new, changed, max(0, seen - new - changed - relisted), relisted, delisted)

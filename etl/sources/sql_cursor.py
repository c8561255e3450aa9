"""Which rows of a `[source.sql]` table a run reads: every row (the first run, `etl run --full`, or a
cursor taken on another table, key, `updated` column or `where`), or only the rows after the cursor the
last *successful* run left.

The cursor is a position in an order of the table's rows:
- `key` alone: rows whose key is greater. Right for a table rows are appended to under growing keys (an
  id sequence, an insert time) and never edited in place — an edit under an old key is not seen.
- `updated` (`[source.sql] updated = "updated_at"`), the key as tie-breaker: rows whose (updated, key)
  pair is greater, so an edited row whose `updated` moves forward is read again, and many rows sharing
  one timestamp are told apart by their keys.

A run's window is fixed when it is planned — after the cursor, up to the highest position in the table
at that moment — and travels in every unit's meta, so a resumed run reads what it planned, and rows
arriving while it runs are the next run's. Only a run that ends `succeeded` moves the cursor to its
window's top (`advance`, called by etl/runs.py in the transaction that records the run's end): after a
partial, interrupted or failed run the next run reads again from the old cursor (reading a row twice is
harmless: rows are upserted, an article's mentions replaced).

Exact at the boundary: the cursor remembers how many rows sat at its top value (that key; that
`updated` timestamp, under keys up to the cursor's). When the next plan counts more there — a row was
added with the cursor's very key, or stamped with its very timestamp under a lower key — every row at
that value is read again rather than one lost. Rows the cursor cannot place, a NULL key or a NULL `updated`, are read
by every run. What no cursor can see: a row committed late with a value below one already read (two
writers racing; at the boundary value itself, unless the count there grows), or rows deleted — `--full` reads (and, for the stock job, sweeps) everything.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, text

from etl import schema

log = logging.getLogger("etl.sources.sql")


def encode(value: Any) -> Any:
    """A key or timestamp as JSON that decodes to the same Python value (bound back into a query)."""
    if isinstance(value, dt.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {"decimal": str(value)}
    return value


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        (kind, raw), = value.items()
        return {"datetime": dt.datetime.fromisoformat, "date": dt.date.fromisoformat,
                "decimal": decimal.Decimal}[kind](raw)
    return value


@dataclass(frozen=True)
class Window:
    """The rows one run reads. `lower`/`upper` are positions: (key,) or (updated, key); `lower` None
    reads from the start (a full read); `reread` reads every row at `lower`'s value again (its boundary
    changed); `upper` None means the table had no placeable row when planned; `at` counts the rows at
    `upper`'s value then (the next cursor's boundary check)."""

    updated: str | None
    lower: tuple | None = None
    reread: bool = False
    upper: tuple | None = None
    at: int = 0
    of: dict | None = None  # what the cursor is a position in: table, key, updated, where, url

    @property
    def full(self) -> bool:
        return self.lower is None

    def meta(self) -> dict[str, Any]:
        return {"updated": self.updated, "reread": self.reread, "at": self.at, "of": self.of,
                "lower": None if self.lower is None else [encode(v) for v in self.lower],
                "upper": None if self.upper is None else [encode(v) for v in self.upper]}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> Window:
        lower, upper = meta.get("lower"), meta.get("upper")
        return cls(meta.get("updated"), None if lower is None else tuple(decode(v) for v in lower),
                   bool(meta.get("reread")), None if upper is None else tuple(decode(v) for v in upper),
                   int(meta.get("at") or 0), meta.get("of"))

    def condition(self, key: str) -> tuple[str, dict[str, Any]]:
        """SQL (starting with ' AND', or empty) keeping a non-NULL-key row inside the window, and its
        parameters. Column names are the config's, checked plain names."""
        parts, params = [], {}
        if self.lower is not None:
            params.update(lo_k=self.lower[-1], **({"lo_u": self.lower[0]} if self.updated else {}))
            if self.updated is None:
                parts.append(f"{key} {'>=' if self.reread else '>'} :lo_k")
            elif self.reread:
                parts.append(f"{self.updated} >= :lo_u")
            else:
                parts.append(f"({self.updated} > :lo_u OR ({self.updated} = :lo_u AND {key} > :lo_k))")
        if self.upper is not None:
            params.update(up_k=self.upper[-1], **({"up_u": self.upper[0]} if self.updated else {}))
            parts.append(f"{key} <= :up_k" if self.updated is None else
                         f"({self.updated} < :up_u OR ({self.updated} = :up_u AND {key} <= :up_k))")
        if not parts:
            return "", params
        inside = " AND ".join(parts)
        # a row without an `updated` value cannot be placed: every run reads it
        return (f" AND ({self.updated} IS NULL OR ({inside}))" if self.updated else f" AND {inside}"), params


def identity(src) -> dict[str, Any]:
    """What a cursor is a position in; a cursor taken on anything else is not used."""
    from etl.dialects.base import mask_url

    return {"table": src.table, "key": src.key, "updated": src.updated, "where": src.where,
            "url": mask_url(src.url) if src.url else None}


def load(engine, job: str) -> dict[str, Any] | None:
    """The job's cursor (the target database's `sql_cursors`), or None."""
    t = schema.sql_cursors
    with engine.connect() as conn:
        row = conn.execute(select(t.c.upto, t.c.run_id).where(t.c.job == job)).first()
    if row is None:
        return None
    return {**json.loads(row.upto), "run_id": row.run_id}


def plan_window(conn, src, of: dict[str, Any], cursor: dict[str, Any] | None, full: bool) -> Window:
    """The window of a new run, on the source's read-only connection: its top is the table's highest
    position now; its bottom the cursor, unless the run is full or the cursor was taken on other rows."""
    key, updated = src.key, src.updated
    extra = f" AND ({src.where})" if src.where else ""
    if updated:
        top = conn.execute(text(f"SELECT {updated}, {key} FROM {src.table} WHERE {updated} IS NOT NULL AND "
                                f"{key} IS NOT NULL{extra} ORDER BY {updated} DESC, {key} DESC LIMIT 1")).first()
    else:
        top = conn.execute(text(f"SELECT {key} FROM {src.table} WHERE {key} IS NOT NULL{extra} "
                                f"ORDER BY {key} DESC LIMIT 1")).first()
    upper = tuple(top) if top is not None else None
    at = _count_at(conn, src, upper) if upper is not None else 0
    if full or cursor is None:
        return Window(updated, upper=upper, at=at, of=of)
    if cursor.get("of") != of:
        log.info("the cursor of run %s was taken on other rows (%s): reading every row of %s",
                 cursor.get("run_id"), _differs(cursor.get("of") or {}, of), src.table)
        return Window(updated, upper=upper, at=at, of=of)
    lower = tuple(decode(v) for v in cursor["upto"])
    # more rows there than when the cursor was taken: one may sort before the cursor's own row (fewer is
    # rows edited away from the boundary, or deleted: nothing to re-read for)
    reread = _count_at(conn, src, lower) > int(cursor.get("at") or 0)
    if reread:
        log.info("rows were added at the cursor's own value %r: reading them all again", lower[0])
    return Window(updated, lower=lower, reread=reread, upper=upper, at=at, of=of)


def _count_at(conn, src, position: tuple) -> int:
    """Rows at a position's value and not after it: that key (key cursor); that `updated` timestamp
    under a key up to the position's (updated cursor; a later key there is after the cursor anyway)."""
    extra = f" AND ({src.where})" if src.where else ""
    if src.updated:
        where = f"{src.updated} = :v AND {src.key} <= :k"
    else:
        where = f"{src.key} = :v"
    return conn.execute(text(f"SELECT count(*) FROM {src.table} WHERE {where}{extra}"),
                        {"v": position[0], "k": position[-1]}).scalar() or 0


def _differs(old: dict[str, Any], new: dict[str, Any]) -> str:
    return ", ".join(f"{k} {old.get(k)!r} → {new.get(k)!r}" for k in new if old.get(k) != new.get(k)) or "?"


def advance(conn, cfg, run_id: int) -> bool:
    """After run `run_id` succeeded: move the job's cursor to the top of the window the run read (stored
    in its units' meta, so a resumed run's is the one it planned). Returns whether the run read the
    whole table — only such a run may sweep what it did not see. Other source kinds have no cursor and
    answer True (whether they sweep is etl/stocks/store.py's rule)."""
    if cfg.source_type != "sql":  # (not an isinstance check: etl.sources.sql imports this module)
        return True
    f = schema.frontier
    meta = conn.execute(select(f.c.meta).where(f.c.run_id == run_id, f.c.kind == "rows").limit(1)).scalar()
    window = (json.loads(meta) if meta else {}).get("window")
    if window is None:  # nothing was new: no unit, and the cursor stays where it is
        return False
    win, t = Window.from_meta(window), schema.sql_cursors
    conn.execute(delete(t).where(t.c.job == cfg.job))
    if win.upper is not None:  # else the table had nothing a cursor could stand on: the next run reads all
        upto = json.dumps({"upto": [encode(v) for v in win.upper], "at": win.at, "of": win.of}, default=str)
        conn.execute(insert(t).values(job=cfg.job, upto=upto, run_id=run_id, saved_at=dt.datetime.now(dt.UTC)))
    return win.full

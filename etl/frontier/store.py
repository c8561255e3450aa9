"""The frontier's rows in the database: what a run (re)starts from, what a spilled frontier reads back,
and whether a key is there at all (the seen-set's cap). Writes during a run are the writer's (with the
page's rows, in one transaction). A row's meta may refer to carried facet texts ("via@"): every Request
read back has them resolved (etl/carried.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import insert, select
from sqlalchemy.exc import SQLAlchemyError

from etl import carried, db, schema
from etl.errors import one_line
from etl.items import Request
from etl.urls import fingerprint, frontier_key

log = logging.getLogger("etl.frontier")

IN_CHUNK = 500  # keys per `IN (…)`: well under every database's parameter limit
STREAM = 10_000  # rows fetched at a time when a run's whole frontier is read (a resume after millions)


@dataclass
class Snapshot:
    pending: list[Request] = field(default_factory=list)  # at most pending_limit + 1 (so "more" shows)
    seen: set[int] = field(default_factory=set)  # url_key of the entries, at most seen_limit of them
    urls: int = 0  # entries of the run, all of them
    done: int = 0
    failed: int = 0


def load(conn, run_id: int, pending_limit: int | None = None, seen_limit: int | None = None) -> Snapshot:
    """A run's entries: the pending ones as Requests, their keys, page counts by outcome. The limits are
    the frontier's memory: a resume after a link farm streams millions of rows and keeps a bounded share
    (the rest stay in the database, read back when memory runs dry)."""
    f = schema.frontier
    snap = Snapshot()
    query = select(f.c.url_key, f.c.url, f.c.kind, f.c.meta, f.c.state).where(f.c.run_id == run_id)
    for key, url, kind, meta, st in conn.execute(query, execution_options={"yield_per": STREAM}):
        snap.urls += 1
        if seen_limit is None or len(snap.seen) < seen_limit:
            snap.seen.add(key)
        if st == "pending":
            if pending_limit is None or len(snap.pending) <= pending_limit:
                snap.pending.append(Request.from_frontier(url, kind, meta, key))
        elif st == "done":
            snap.done += 1
        else:
            snap.failed += 1
    carried.resolve(conn, run_id, snap.pending)
    return snap


def known(conn, run_id: int, keys: list[int]) -> set[int]:
    """The keys among `keys` the run's frontier holds (committed): the membership test past the seen-set."""
    f = schema.frontier
    found: set[int] = set()
    for i in range(0, len(keys), IN_CHUNK):
        found.update(conn.execute(select(f.c.url_key).where(f.c.run_id == run_id,
                                                            f.c.url_key.in_(keys[i:i + IN_CHUNK]))).scalars())
    return found


class Lookup:
    """The coordinator's read-only view of its run's frontier, on an engine of its own made on first use
    (most runs never need it). A database that fails it answers "unknown": the writer's insert-if-new still
    deduplicates, only the count of distinct URLs may run high."""

    def __init__(self, url: str, run_id: int) -> None:
        self.url, self.run_id = url, run_id
        self.engine = None
        self.failed = False

    def known(self, keys: list[int]) -> set[int]:
        if not keys:
            return set()
        try:
            if self.engine is None:
                self.engine = db.make_engine(self.url)
            with self.engine.connect() as conn:
                return known(conn, self.run_id, keys)
        except SQLAlchemyError as exc:
            if not self.failed:
                log.warning("frontier: cannot look URLs up in the database (%s); counting them as new",
                            one_line(exc, 300))
            self.failed = True
            return set()

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None


def read_pending(conn, run_id: int, limit: int, urgent_kinds: tuple[str, ...] = ()) -> list[Request]:
    """Pending entries, the urgent kinds first (detail pages finish listings), at most `limit`."""
    f = schema.frontier
    query = select(f.c.url, f.c.kind, f.c.meta, f.c.url_key).where(f.c.run_id == run_id, f.c.state == "pending")
    if urgent_kinds:
        query = query.order_by(f.c.kind.notin_(urgent_kinds))
    pending = [Request.from_frontier(url, kind, meta, key) for url, kind, meta, key in conn.execute(query.limit(limit))]
    return carried.resolve(conn, run_id, pending)


def add(conn, run_id: int, requests: list[Request]) -> set[int]:
    """A fresh run's first work (before the writer starts); returns their keys."""
    rows, packer = {}, carried.Packer()
    for r in requests:
        key = frontier_key(r)
        if key not in rows:
            rows[key] = {"run_id": run_id, "url_key": key, "url": r.url, "kind": r.kind,
                         "meta": packer.meta_json(r), "state": "pending"}
    if packer.texts:
        conn.execute(insert(schema.carried), [{**row, "run_id": run_id} for row in packer.rows()])
    if rows:
        conn.execute(insert(schema.frontier), list(rows.values()))
    return set(rows)


def rebase(conn, run_id: int, old: str, new: str) -> None:
    """The demo server came back on another port: rewrite the run's URLs, and their keys with them."""
    f = schema.frontier
    rows = conn.execute(select(f.c.url_key, f.c.url, f.c.kind, f.c.meta, f.c.state)
                        .where(f.c.run_id == run_id)).all()
    moved = [r for r in rows if r.url.startswith(old)]
    if not moved:
        return
    keys = [r.url_key for r in moved]
    for i in range(0, len(keys), 1000):
        conn.execute(f.delete().where(f.c.run_id == run_id, f.c.url_key.in_(keys[i:i + 1000])))
    fresh = {}
    for r in moved:
        url = new + r.url[len(old):]
        key = fingerprint(url)
        fresh.setdefault(key, {"run_id": run_id, "url_key": key, "url": url, "kind": r.kind, "meta": r.meta,
                               "state": r.state})
    conn.execute(insert(f), list(fresh.values()))

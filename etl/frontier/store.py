"""The frontier's rows in the database: what a run (re)starts from and what a spilled frontier reads
back. Writes during a run are the writer's (with the page's rows, in one transaction)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import insert, select

from etl import schema
from etl.items import Request
from etl.urls import fingerprint, frontier_key


@dataclass
class Snapshot:
    pending: list[Request] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)  # url_key of every entry
    done: int = 0
    failed: int = 0


def load(conn, run_id: int) -> Snapshot:
    """Every entry of a run: the pending ones as Requests, the keys of all, page counts by outcome."""
    f = schema.frontier
    snap = Snapshot()
    for key, url, kind, meta, st in conn.execute(select(f.c.url_key, f.c.url, f.c.kind, f.c.meta, f.c.state)
                                                 .where(f.c.run_id == run_id)):
        snap.seen.add(key)
        if st == "pending":
            snap.pending.append(Request.from_frontier(url, kind, meta, key))
        elif st == "done":
            snap.done += 1
        else:
            snap.failed += 1
    return snap


def read_pending(conn, run_id: int, limit: int, urgent_kinds: tuple[str, ...] = ()) -> list[Request]:
    """Pending entries, the urgent kinds first (detail pages finish listings), at most `limit`."""
    f = schema.frontier
    query = select(f.c.url, f.c.kind, f.c.meta, f.c.url_key).where(f.c.run_id == run_id, f.c.state == "pending")
    if urgent_kinds:
        query = query.order_by(f.c.kind.notin_(urgent_kinds))
    return [Request.from_frontier(url, kind, meta, key) for url, kind, meta, key in conn.execute(query.limit(limit))]


def add(conn, run_id: int, requests: list[Request]) -> set[int]:
    """A fresh run's first work (before the writer starts); returns their keys."""
    rows = {}
    for r in requests:
        key = frontier_key(r)
        rows.setdefault(key, {"run_id": run_id, "url_key": key, "url": r.url, "kind": r.kind,
                              "meta": r.meta_json(), "state": "pending"})
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

"""The fencing check of a shared run: a worker's writer commits a page only while the worker holds it.

Inside the batch's transaction, before anything is written, the batch's pages are locked (SELECT … FOR
UPDATE) and kept only if they are still pending and leased by this worker. A worker paused past its
lease (SIGSTOP, a long GC, a cut network) whose pages another worker claimed meanwhile finds them lost
and drops what it made of them; the row lock keeps the check and the write atomic against a claim, which
skips locked entries. What a lost page gave is dropped whole: its rows, links, failures and marks.
"""

from __future__ import annotations

from sqlalchemy import func, select, update

from etl import schema

CHUNK = 500


def held(conn, run_id: int, owner: str, keys: set[int]) -> set[int]:
    """The pages among `keys` this worker still holds, locked until the transaction ends."""
    f = schema.frontier
    ordered = sorted(keys)  # one lock order for every writer: two batches never deadlock on each other
    found: set[int] = set()
    for i in range(0, len(ordered), CHUNK):
        found.update(conn.execute(
            select(f.c.url_key).where(f.c.run_id == run_id, f.c.url_key.in_(ordered[i:i + CHUNK]),
                                      f.c.state == "pending", f.c.lease_owner == owner)
            .order_by(f.c.url_key).with_for_update()).scalars())
    return found


def count_worker(conn, run_id: int, owner: str, pages_ok: int, pages_failed: int, rows: int) -> None:
    """This worker's share of the run, in the transaction that did it."""
    w = schema.workers
    conn.execute(update(w).where(w.c.run_id == run_id, w.c.worker == owner).values(
        pages_ok=w.c.pages_ok + pages_ok, pages_failed=w.c.pages_failed + pages_failed,
        rows_written=w.c.rows_written + rows, seen_at=func.now()))


def session_limits(lease: float) -> dict:
    """Engine arguments for a shared run's writer (PostgreSQL): a transaction idle for longer than a lease
    is ended by the server, which frees its row locks."""
    return {"connect_args": {"options": f"-c idle_in_transaction_session_timeout={int(lease * 1000)}"}}

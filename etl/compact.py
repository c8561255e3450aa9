"""Compaction of a finished run's frontier.

A run's frontier rows are what a resume needs: which pages are still to do. A run that `succeeded` will
never be resumed (the next run of the job starts a new one), so its rows are dead weight — 20,679 a night
on a 20,000-listing site, forever. What a later run does need from them — each URL's validators, when it
was last fetched, which item a detail page completed — is kept per job and URL in `url_state`
(etl/incremental.py), written by the writer as pages are done. So the frontier of a succeeded run is
deleted when the run finishes, in the transaction that records its end; page counts are already in `runs`.
The facet texts its rows referred to (the `carried` table, etl/carried.py) go with them.

A partial, failed or interrupted run keeps its frontier: it may be resumed, and its failed entries say
what was not done.
"""

from __future__ import annotations

from sqlalchemy import delete

from etl import schema


def compact(conn, run_id: int, status: str) -> int:
    """Delete the frontier rows (and carried texts) of run `run_id` if it succeeded; returns how many
    frontier rows went."""
    if status != "succeeded":
        return 0
    for table in (schema.host_turns, schema.host_slots, schema.robots_txt):  # a shared run's coordination
        conn.execute(delete(table).where(table.c.run_id == run_id))
    f, c = schema.frontier, schema.carried
    conn.execute(delete(c).where(c.c.run_id == run_id))
    return conn.execute(delete(f).where(f.c.run_id == run_id)).rowcount or 0

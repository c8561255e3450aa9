"""Several machines share one run through the database (etl worker).

    machine A: etl worker ─┐                              ┌─ claim: FOR UPDATE SKIP LOCKED, lease (owner, until)
    machine B: etl worker ─┼─▶ PostgreSQL: frontier rows ─┤─ commit: rows + marks + links, only while leased
    machine C: etl worker ─┘   workers · host_turns · …   └─ politeness: one turn per host across workers

Nothing else coordinates: no broker, no reaper. A worker claims a small batch of pending entries with a
lease; a claim also takes entries whose lease expired (their worker died or stopped); the worker's writer
commits a page's rows, its new links and its done mark in one transaction that first locks the page's
entry and checks that this worker still holds it (fencing: a worker that wakes up after its lease was
taken over writes nothing for those pages). New links are deduplicated by the frontier's key.
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Share:
    """A process's part in a shared run: the database that coordinates it, the run, and this worker's name
    (the lease owner). Passed to the stages that talk to the database for the run."""

    url: str
    run_id: int
    owner: str

"""The frontier of a shared run (etl worker): work is claimed from the database, not held in memory.

Each worker keeps only what it claimed (a small batch, in LocalFrontier's priority queues and retry heap)
and renews its leases while it works on them. New links are not queued here at all: the writer inserts
them with the page's rows, and from then on they are claimable by every worker, this one included. The
run has work left while any entry is pending anywhere; this worker is finished with the run when nothing
is in flight here and the database holds no pending entry (an entry can only appear by the commit of a
page that was itself pending, so "none pending" is final).
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable

from etl.errors import one_line
from etl.frontier.base import Remaining
from etl.frontier.local import LocalFrontier, Priority
from etl.items import Request
from etl.shared.claims import MAX_CLAIMS, Claims
from etl.urls import frontier_key

log = logging.getLogger("etl.frontier")

IDLE_CLAIM = 0.5  # seconds between claims while the database has nothing claimable
DB_AWAY = 2.0  # seconds between claims while the database cannot be reached


class LeasedFrontier(LocalFrontier):
    def __init__(self, priority: Priority, claims: Claims, batch: int, sync: Callable[[], None]) -> None:
        super().__init__(priority, batch)
        self.claims, self.sync = claims, sync
        self.more = True  # the database may hold pending entries
        self.next_claim = 0.0
        self.next_renew = time.monotonic() + claims.lease / 3
        self.poisoned: list[tuple[Request, str]] = []
        self.mine: set[int] = set()  # keys claimed and not yet committed: the leases this worker renews

    def load(self, pending: Iterable[Request], seen: Iterable[int], urls: int | None = None) -> None:
        """(Re)start: the database is the only queue. Leases this worker still holds (its writer was lost
        with pages in flight) go back, so they are claimed again rather than renewed and never done."""
        super().load([], [], 0)
        self.claims.release()
        self.mine.clear()
        self.more, self.next_claim = True, 0.0

    def add(self, links: Iterable[Request]) -> list[Request]:
        links = list(links)
        self.urls += len(links)
        return links  # every link goes to the writer; the frontier's key deduplicates across workers

    def needs_refill(self) -> bool:
        return not self.in_memory and time.monotonic() >= self.next_claim

    def refill(self, busy: set[str]) -> None:
        try:
            claimed = self.claims.claim(self.memory, self.mine)
            if not claimed:
                self.sync()  # links this worker's writer holds become claimable once committed
                claimed = self.claims.claim(self.memory, self.mine)
            left = True if claimed else self.claims.left()
        except self.claims.errors as exc:  # the database is away: keep going with what is in flight, ask again later
            log.warning("frontier: cannot claim work (%s); trying again in %.0f s", one_line(exc, 300), DB_AWAY)
            self.claims.engine.dispose()
            self.next_claim = time.monotonic() + DB_AWAY
            return
        busy = busy | {req.url for _, _, req in self.retries}
        for c in claimed:
            if c.request.url in busy:
                continue  # ours already: its lease lapsed and came back to us
            self.mine.add(frontier_key(c.request))
            if c.claims > MAX_CLAIMS:
                self.poisoned.append((c.request, f"claimed {c.claims - 1} times by workers that never finished it "
                                                 "(each died or lost its lease while on it)"))
            else:
                self._queue(c.request)
        if not claimed:
            self.more = left
            self.next_claim = time.monotonic() + IDLE_CLAIM

    def remaining(self) -> Remaining:
        return Remaining(ready=self.in_memory + len(self.poisoned), retrying=len(self.retries), spilled=self.more)

    def tick(self, now: float) -> None:
        if now >= self.next_renew:
            self.next_renew = now + self.claims.lease / 3
            held = self.claims.renew(self.mine)
            if held is not None:
                self._forget_lost(held)
                # What is no longer held was committed done (or taken over): a unit stays in `mine` from its
                # claim until then, not only until the coordinator hands it to the writer, so its lease is
                # renewed while the writer holds it, and a claim never takes it back from this worker
                self.mine &= held

    def _forget_lost(self, held: set[int]) -> None:
        """Drop queued and retrying entries this worker no longer holds: another worker took them over
        while this one was away (paused, cut off) and may have finished them already."""
        lost = 0
        for i, q in enumerate(self.queues):
            kept = [r for r in q if frontier_key(r) in held]
            lost += len(q) - len(kept)
            self.queues[i] = deque(kept)
        kept_retries = [entry for entry in self.retries if frontier_key(entry[2]) in held]
        lost += len(self.retries) - len(kept_retries)
        if len(kept_retries) != len(self.retries):
            self.retries = kept_retries
            heapq.heapify(self.retries)
        if lost:
            log.warning("frontier: %d claimed pages were taken over by other workers while this one was away; "
                        "dropped here", lost)

    def given_up(self) -> list[tuple[Request, str]]:
        out, self.poisoned = self.poisoned, []
        return out

    def close(self) -> None:
        self.claims.release()
        self.claims.close()

"""Today's frontier: three priority queues in memory, a seen-set of fingerprints, a retry heap, and the
database as overflow.

Every new link is persisted by the writer anyway (that is what makes a run resumable), so "spilling" is
only deciding not to hold a link in memory once `memory` links are queued; when memory runs dry the
pending rows are read back from the database (`read_back`, which first makes the writer commit). A
link farm therefore costs database rows, not RAM. Priority 0 (detail pages, row ranges) and 1 (further
pages of a list) are first in, first out; priority 2 (new facets) last in, first out, so a crawl
finishes the lists it started before opening new ones and the in-memory part stays short.
"""

from __future__ import annotations

import heapq
import logging
from collections import deque
from collections.abc import Callable, Iterable

from etl.frontier.base import Frontier, Remaining
from etl.items import Request
from etl.urls import frontier_key

log = logging.getLogger("etl.frontier")

Priority = Callable[[Request], int]  # 0, 1 or 2 (see the module docstring)
ReadBack = Callable[[int, set[str]], list[Request]]  # (limit, urls busy elsewhere) → pending requests


class LocalFrontier(Frontier):
    def __init__(self, priority: Priority, memory: int, read_back: ReadBack | None = None) -> None:
        self.priority, self.memory, self.read_back = priority, memory, read_back
        self.queues: list[deque[Request]] = [deque(), deque(), deque()]
        self.seen: set[int] = set()
        self.retries: list[tuple[float, int, Request]] = []
        self.spilled = False
        self._seq = 0

    # ------------------------------------------------------------------------------- filling
    def load(self, pending: Iterable[Request], seen: Iterable[int]) -> None:
        self.queues = [deque(), deque(), deque()]
        self.retries = []
        self.seen = set(seen)
        pending = list(pending)
        for req in pending[:self.memory]:
            self._queue(req)
        self.spilled = len(pending) > self.memory  # the rest wait in the database

    def add(self, links: Iterable[Request]) -> list[Request]:
        new = []
        for link in links:
            key = frontier_key(link)
            if key in self.seen:
                continue
            self.seen.add(key)
            new.append(link)
            if self.in_memory < self.memory:
                self._queue(link)
            else:
                self.spilled = True  # persisted as pending by the writer; read back by refill
        return new

    def give_back(self, requests: Iterable[Request]) -> None:
        for req in requests:
            self._queue(req)

    def retry(self, request: Request, due: float) -> None:
        self._seq += 1
        heapq.heappush(self.retries, (due, self._seq, request))

    def _queue(self, req: Request) -> None:
        self.queues[self.priority(req)].append(req)

    # ------------------------------------------------------------------------------- handing out
    @property
    def in_memory(self) -> int:
        return sum(len(q) for q in self.queues)

    def next(self, now: float) -> Request | None:
        while self.retries and self.retries[0][0] <= now:
            self._queue(heapq.heappop(self.retries)[2])
        for i, q in enumerate(self.queues):
            if q:
                return q.pop() if i == 2 else q.popleft()
        return None

    def remaining(self) -> Remaining:
        return Remaining(ready=self.in_memory, retrying=len(self.retries), spilled=self.spilled)

    def needs_refill(self) -> bool:
        return self.spilled and not self.in_memory

    def refill(self, busy: set[str]) -> None:
        """Memory ran dry while more pending work waits in the database: read the next share back.
        `busy` are URLs handed out and not finished (the database still says pending for them)."""
        if self.read_back is None:
            self.spilled = False
            return
        busy = busy | {req.url for _, _, req in self.retries}
        rows = self.read_back(self.memory + len(busy) + 1, busy)
        fresh = [r for r in rows if r.url not in busy]
        self.spilled = len(rows) > self.memory + len(busy)
        for req in fresh[:self.memory]:
            self._queue(req)
        log.info("frontier: %d pending URLs read back from the database%s", min(len(fresh), self.memory),
                 " (more remain)" if self.spilled else "")

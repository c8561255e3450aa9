"""Today's frontier: three priority queues in memory, a bounded seen-set of fingerprints, a retry heap, and
the database as overflow and as the memory of what was seen.

Every new link is persisted by the writer anyway (that is what makes a run resumable), so "spilling" is
only deciding not to hold a link in memory once `memory` links are queued; when memory runs dry the
pending rows are read back from the database (`read_back`, which first makes the writer commit). A
link farm therefore costs database rows, not RAM. Priority 0 (detail pages, row ranges) and 1 (further
pages of a list) are first in, first out; priority 2 (new facets) last in, first out, so a crawl
finishes the lists it started before opening new ones and the in-memory part stays short.

The seen-set is the one structure that would grow with the site (a Python int in a set costs 70-90 bytes),
so it holds at most `seen_memory` keys. Past that, a link it does not know may still be in the database:
such links are never queued in memory, only handed to the writer, whose insert-if-new on (run_id, url_key)
is the real dedupe, and they come back through the read-back like spilled work — so no page is queued
twice and none is lost. `known` (a database lookup of committed keys) and a short memory of the latest
such links only keep the count of distinct URLs honest; correctness does not depend on them.

`max_urls` bounds discovery itself: once the run's frontier holds that many distinct URLs, new links are
dropped and counted, and the coordinator ends the run partial saying so (like max_pages).
"""

from __future__ import annotations

import heapq
import logging
from collections import deque
from collections.abc import Callable, Iterable
from itertools import islice

from etl.frontier.base import Frontier, Remaining
from etl.items import Request
from etl.urls import frontier_key

log = logging.getLogger("etl.frontier")

Priority = Callable[[Request], int]  # 0, 1 or 2 (see the module docstring)
ReadBack = Callable[[int, set[str]], list[Request]]  # (limit, urls busy elsewhere) → pending requests
Known = Callable[[list[int]], set[int]]  # keys → those the database already holds for this run
RECENT = 65_536  # links remembered past the seen-set's cap: the writer's commit lag, with room to spare


class LocalFrontier(Frontier):
    def __init__(self, priority: Priority, memory: int, read_back: ReadBack | None = None, *,
                 seen_memory: int = 1_000_000, max_urls: int | None = None, known: Known | None = None) -> None:
        self.priority, self.memory, self.read_back = priority, memory, read_back
        self.seen_memory, self.max_urls, self.known = seen_memory, max_urls, known
        self.queues: list[deque[Request]] = [deque(), deque(), deque()]
        self.seen: set[int] = set()
        self.recent: deque[int] = deque()  # past the cap: keys offered lately, oldest first
        self.recent_set: set[int] = set()
        self.retries: list[tuple[float, int, Request]] = []
        self.spilled = False
        self.urls = 0  # distinct URLs in the run's frontier (the database's rows), as far as we can tell
        self.dropped = 0  # new links not added because the frontier held max_urls (this session)
        self.reached = False  # the frontier held max_urls at a (re)load or dropped a link
        self._seq = 0

    # ------------------------------------------------------------------------------- filling
    def load(self, pending: Iterable[Request], seen: Iterable[int], urls: int | None = None) -> None:
        self.queues = [deque(), deque(), deque()]
        self.retries = []
        self.seen = set(islice(seen, self.seen_memory))
        self.recent, self.recent_set = deque(), set()
        self.urls = len(self.seen) if urls is None else urls
        self.reached = self.reached or self.at_limit
        pending = list(pending)
        for req in pending[:self.memory]:
            self._queue(req)
        self.spilled = len(pending) > self.memory  # the rest wait in the database

    @property
    def seen_full(self) -> bool:
        """The seen-set holds `seen_memory` keys: it answers "seen" but no longer "never seen"."""
        return len(self.seen) >= self.seen_memory

    @property
    def at_limit(self) -> bool:
        return self.max_urls is not None and self.urls >= self.max_urls

    def add(self, links: Iterable[Request]) -> list[Request]:
        new: list[Request] = []
        unsure: list[Request] = []  # not in the capped seen-set: the database may know them
        for link in links:
            key = frontier_key(link)
            if key in self.seen or key in self.recent_set:
                continue
            if self.seen_full:
                self._remember(key)
                unsure.append(link)
            elif self.at_limit:
                self.seen.add(key)  # counted once (the set is bounded all the same)
                self._drop()
            else:
                self.seen.add(key)
                self._accept(link, new, queue=self.in_memory < self.memory)
                if self.seen_full:
                    log.info("frontier: %d URLs seen; further links are deduplicated by the database "
                             "([run] seen_memory)", len(self.seen))
        if unsure:
            present = self.known([link.key for link in unsure]) if self.known else set()
            for link in unsure:
                if link.key in present:
                    continue
                if self.at_limit:
                    self._drop()
                else:
                    self._accept(link, new, queue=False)  # it may be queued or done already: the database decides
        return new

    def _accept(self, link: Request, new: list[Request], queue: bool) -> None:
        self.urls += 1
        new.append(link)
        if queue:
            self._queue(link)
        else:
            self.spilled = True  # persisted as pending by the writer (if new); read back by refill

    def _drop(self) -> None:
        if not self.reached:
            log.info("frontier: [run] max_urls = %d reached; new links are no longer added", self.max_urls)
        self.reached = True
        self.dropped += 1

    def _remember(self, key: int) -> None:
        self.recent.append(key)
        self.recent_set.add(key)
        if len(self.recent) > min(RECENT, self.seen_memory):
            self.recent_set.discard(self.recent.popleft())

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

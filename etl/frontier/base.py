"""The frontier interface: the coordinator asks it for work and tells it what finished.

Like Scrapy's scheduler (enqueue, next, has pending), with retries and "what is left" made explicit so
that two very different implementations fit behind it: LocalFrontier (today's: memory, spilling to the
database and reading back) and a leased one that claims work from PostgreSQL with `FOR UPDATE SKIP LOCKED`
for several machines (its `next` claims a batch, `finished` is committed with the page's rows by the
writer, and expired leases come back through `next` itself).

Deduplication is on `etl.urls.fingerprint`, a stable hash of the canonical URL, so every process and
every machine agrees on what was seen; the database's frontier table, keyed by (run_id, url_key), is the
final word on it, so a frontier may remember only part of what it has seen.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass

from etl.items import Request


@dataclass(frozen=True)
class Remaining:
    """What is left, as the coordinator's loop needs to know it."""

    ready: int  # can be handed out now
    retrying: int  # waiting for their retry time
    spilled: bool  # more wait in the database only

    def __bool__(self) -> bool:
        return bool(self.ready or self.retrying or self.spilled)


class Frontier(ABC):
    @abstractmethod
    def load(self, pending: Iterable[Request], seen: Iterable[int], urls: int | None = None) -> None:
        """(Re)start from what the database says: pending work, the fingerprints already known (all of
        them, or as many as the frontier keeps in memory) and how many entries the run has (`urls`;
        None: as many as `seen`)."""

    @abstractmethod
    def add(self, links: Iterable[Request]) -> list[Request]:
        """Offer newly discovered work; returns the links never seen before (the writer persists those)."""

    @abstractmethod
    def next(self, now: float) -> Request | None:
        """The next unit of work due at `now`, by priority; None when nothing is ready."""

    @abstractmethod
    def retry(self, request: Request, due: float) -> None:
        """Hand out `request` again at monotonic time `due` (backoff, Retry-After)."""

    @abstractmethod
    def give_back(self, requests: Iterable[Request]) -> None:
        """Work handed out but not done (its worker died): hand it out again soon."""

    @abstractmethod
    def remaining(self) -> Remaining:
        """What is left: ready, waiting to be retried, or only in the database."""

    def finished(self, request: Request) -> None:  # noqa: B027 - optional hook
        """A unit is done or failed for good. The local frontier has nothing to forget; a leased one
        releases its lease (the writer commits the state with the page's rows)."""

    def tick(self, now: float) -> None:  # noqa: B027 - optional hook
        """Called every turn of the coordinator's loop: a leased frontier renews its leases."""

    def given_up(self) -> list[tuple[Request, str]]:
        """Units to record as failed without trying them again, and why (a leased frontier's entries that
        every worker claiming them died on)."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook
        """The run is over for this process: give back what it holds."""

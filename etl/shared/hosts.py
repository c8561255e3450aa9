"""Politeness across the workers of a shared run: per_host, delay and robots.txt hold for all of them.

Each fetch process keeps its own gate (etl/fetch/fetcher.py HostGate) and asks the database as well:
- a request to a host first leases one of the host's `per_host` slots (host_slots, SKIP LOCKED; a slot
  whose holder died comes free when its lease ends), so all workers together have at most per_host
  requests in flight to it;
- then it reserves its turn (host_turns: one row per host holding when the next request may start, moved
  on by `delay` in one statement under the row's lock), and waits for it: request starts to a host are
  at least `delay` apart across every worker, by the database's clock;
- robots.txt is read once per run: the first worker to need an origin's fetches it under a transaction
  lock and stores it (robots_txt); the others wait for that and read it.
This speaks PostgreSQL (the dialect capability `leases`): clock_timestamp(), ON CONFLICT, advisory locks.
"""

from __future__ import annotations

import logging
import threading
import time
from urllib.parse import urlsplit

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from etl.db import make_engine
from etl.dialects import dialect_for
from etl.errors import one_line
from etl.fetch.fetcher import Fetcher, HostGate
from etl.locks import lock_key
from etl.robots import Robots

log = logging.getLogger("etl.shared")

AWAY = object()  # what _db answers while the database cannot be reached
SLOT_POLL = 0.02  # seconds between tries for a free slot of a busy host
DB_RETRY = 1.0  # seconds before asking an unreachable database again
DB_TRIES = 30  # then go on with this worker's own gate alone (and say so)

_SEED_SLOTS = ("INSERT INTO host_slots (run_id, host, slot) SELECT :r, :h, s FROM generate_series(0, :n - 1) AS s "
               "ON CONFLICT DO NOTHING")
_TAKE_SLOT = ("UPDATE host_slots SET holder = :me, until = clock_timestamp() + :hold * interval '1 second' "
              "WHERE run_id = :r AND host = :h AND slot = (SELECT slot FROM host_slots WHERE run_id = :r AND "
              "host = :h AND slot < :n AND (holder IS NULL OR until < clock_timestamp()) LIMIT 1 "
              "FOR UPDATE SKIP LOCKED) RETURNING slot")
_FREE_SLOT = "UPDATE host_slots SET holder = NULL, until = NULL WHERE run_id = :r AND host = :h AND slot = :s AND holder = :me"
_TAKE_TURN = ("INSERT INTO host_turns (run_id, host, next_at) VALUES (:r, :h, clock_timestamp() + :d * interval '1 second') "
              "ON CONFLICT (run_id, host) DO UPDATE SET next_at = greatest(host_turns.next_at, clock_timestamp()) "
              "+ :d * interval '1 second' RETURNING extract(epoch FROM host_turns.next_at - clock_timestamp()) - :d")


class SharedSlot:
    """A request's hold on its host: this process's semaphore and, if taken, the shared slot."""

    def __init__(self, gate: SharedGate, host: str, local: threading.BoundedSemaphore, slot: int | None) -> None:
        self.gate, self.host, self.local, self.slot = gate, host, local, slot

    def release(self) -> None:
        try:
            if self.slot is not None:
                self.gate.free_slot(self.host, self.slot)
        finally:
            self.local.release()


class SharedGate(HostGate):
    def __init__(self, per_host: int, delay: float, url: str, run_id: int, owner: str, hold: float,
                 threads: int) -> None:
        super().__init__(per_host, delay)
        self.run_id, self.owner, self.hold = run_id, owner, hold
        self.engine = make_engine(url, pool_size=threads, max_overflow=4)
        self.errors = (SQLAlchemyError, *dialect_for(url).errors)  # the raw driver's too (a restart mid-statement)
        self.seeded: set[str] = set()
        self.warned = 0.0

    def _db(self, sql: str, **params):
        """One statement in its own transaction: its first row (or None); retried while the database is
        away, AWAY after DB_TRIES."""
        for attempt in range(DB_TRIES):
            try:
                with self.engine.connect() as conn:  # autocommit: one round trip per statement
                    result = conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                        text(sql), {"r": self.run_id, "me": self.owner, **params})
                    return result.first() if result.returns_rows else None
            except self.errors as exc:
                if time.monotonic() - self.warned > 60:
                    self.warned = time.monotonic()
                    log.warning("politeness across workers: the database is unreachable (%s); retrying",
                                one_line(exc, 300))
                if attempt + 1 < DB_TRIES:
                    time.sleep(DB_RETRY)
        log.warning("politeness across workers: going on with this worker's own per_host and delay")
        return AWAY

    def enter(self, host: str) -> SharedSlot:
        with self.lock:
            local = self.slots.setdefault(host, threading.BoundedSemaphore(self.per_host))
        while not local.acquire(timeout=5.0):
            pass
        try:
            slot = self._take_slot(host)
            delay = self.host_delay.get(host, self.delay)
            if delay > 0:
                row = self._db(_TAKE_TURN, h=host, d=delay)
                if row is not AWAY and row is not None and row[0] > 0:
                    time.sleep(float(row[0]))
        except BaseException:
            local.release()
            raise
        return SharedSlot(self, host, local, slot)

    def _take_slot(self, host: str) -> int | None:
        """One of the host's per_host slots, waiting while all are taken (at most a slot's lease: by then
        every holder has finished or died); None if the database is away or the wait ran out."""
        deadline = time.monotonic() + self.hold
        reseed = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if host not in self.seeded or time.monotonic() >= reseed:  # the rows, once, and again if they went
                if self._db(_SEED_SLOTS, h=host, n=self.per_host) is AWAY:
                    return None
                self.seeded.add(host)
                reseed = time.monotonic() + 1.0
            row = self._db(_TAKE_SLOT, h=host, n=self.per_host, hold=self.hold)
            if row is AWAY:
                return None
            if row is not None:
                return int(row[0])
            time.sleep(SLOT_POLL)  # every slot is in use by some worker
        log.warning("politeness across workers: no free slot for %s in %.0f s; going on", host, self.hold)
        return None

    def free_slot(self, host: str, slot: int) -> None:
        self._db(_FREE_SLOT, h=host, s=slot)


def load_shared_robots(engine, run_id: int, origin: str, fetch, user_agent: str, wait: float) -> Robots | str:
    """The run's copy of `origin`'s robots.txt; the first worker to ask fetches it (`fetch(origin)`, which
    returns Robots or a reason it cannot now) while the others wait on the transaction lock — for at most
    `wait` seconds (past a fetch's longest), then the caller fetches it itself."""
    with engine.begin() as conn:
        conn.execute(text(f"SET LOCAL lock_timeout = '{int(wait * 1000)}ms'"))
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key(f"robots:{run_id}:{origin}")})
        body = conn.execute(text("SELECT body FROM robots_txt WHERE run_id = :r AND origin = :o"),
                            {"r": run_id, "o": origin[:191]}).scalar()
        if body is not None:
            return Robots.parse(body, user_agent) if body else Robots()
        loaded = fetch(origin)
        if not isinstance(loaded, str):
            conn.execute(text("INSERT INTO robots_txt (run_id, origin, body, fetched_at) VALUES (:r, :o, :b, now())"),
                         {"r": run_id, "o": origin[:191], "b": loaded.text})
        return loaded


class SharedFetcher(Fetcher):
    """A Fetcher whose politeness and robots.txt are the run's, not only this process's."""

    def __init__(self, settings, domains: tuple[str, ...], *, run_id: int, owner: str, url: str, **kwargs) -> None:
        super().__init__(settings, domains, **kwargs)
        hold = settings.connect_timeout + settings.total_timeout + 30  # a slot's lease: past any one request
        self.gate = SharedGate(settings.per_host, settings.delay, url, run_id, owner, hold,
                               kwargs.get("pool_size", 16))
        self.run_id = run_id

    def _load_robots(self, origin: str) -> Robots | str:
        def fetch(origin: str) -> Robots | str:  # a request like any other: it takes its turn at the host
            slot = self.gate.enter(urlsplit(origin).netloc)
            try:
                return Fetcher._load_robots(self, origin)
            finally:
                slot.release()

        try:
            return load_shared_robots(self.gate.engine, self.run_id, origin, fetch, self.user_agent, self.gate.hold)
        except self.gate.errors as exc:
            log.warning("robots.txt of %s: the run's copy cannot be read (%s); fetching it here", origin,
                        one_line(exc, 300))
            return super()._load_robots(origin)

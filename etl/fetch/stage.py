"""The fetch stage's process: a thread pool of Fetchers behind a pipe to the coordinator."""

from __future__ import annotations

import logging
import pickle
import threading
from collections import deque
from dataclasses import dataclass, field

from etl.arena import Arena, Slot
from etl.config.model import FetchSettings
from etl.errors import one_line
from etl.fetch.fetcher import Fetcher, FetchFailure
from etl.items import Fetched, Page, Request
from etl.shared import Share

log = logging.getLogger("etl.fetch")

BUNDLE_BYTES = 2 * 2**20  # results travel to the coordinator in bundles of up to this many body bytes
FREED_SENT_AT = 8  # freed arena slots sent back on their own when no requests go out (the arena has margin)
SENT_KEPT = 100_000  # Sent reports held for take_sent(); far more than any number of requests in flight


@dataclass(slots=True)
class Sent:
    """A request left for its server (waiting=False), or a redirect sent it back to waiting for robots.txt
    and its turn at the host (waiting=True). The coordinator's stall clock runs only while it is sent:
    time queued behind a Crawl-delay is politeness, not a stalled server."""

    url: str  # the Request's url, whichever hop is being fetched
    waiting: bool = False


@dataclass(slots=True)
class Handover:
    """Coordinator → fetch process: requests to fetch, and arena slots whose pages are done with."""

    requests: list[Request]
    freed: list[int] = field(default_factory=list)


def _stage_main(conn, settings: FetchSettings, domains: tuple[str, ...], threads: int,
                credentials: dict[str, tuple[str, str]] | None = None, http: str = "requests",
                share: Share | None = None, arena: Arena | None = None, free: tuple[int, ...] = ()) -> None:
    """The fetch stage's own process: a thread pool of Fetchers. Requests arrive in lists; results leave
    in bundles sent by one sender thread, so a fetch thread never waits for the pipe or for another
    thread's send (a lock around the pipe made 16 threads queue behind each other for the GIL).
    Pages are pickled here, once, into a slot of the shared arena when one is free and the page fits
    (etl/arena.py), else into the bundle; the coordinator forwards either to a parse process as it is.
    A bundle is a pickled list of Sent / Fetched / FetchFailure, in the order they happened."""
    import queue
    import signal
    from concurrent.futures import ThreadPoolExecutor

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if share is None:
        fetcher = Fetcher(settings, domains, pool_size=threads, credentials=credentials, http=http)
    else:  # politeness and robots.txt across the workers of a shared run
        from etl.shared.hosts import SharedFetcher

        fetcher = SharedFetcher(settings, domains, run_id=share.run_id, owner=share.owner, url=share.url,
                                pool_size=threads, credentials=credentials, http=http)
    done: queue.SimpleQueue = queue.SimpleQueue()  # at most a result and a few Sent per request in flight
    slots: deque[int] = deque(free)  # the arena's slots this process may fill

    def run(request: Request) -> None:
        try:
            result = fetcher.fetch(request, lambda sent: done.put(Sent(request.url, not sent)))
        except Exception as exc:  # never lose a request: the coordinator waits for every one it handed over
            result = FetchFailure(request, f"fetch error: {type(exc).__name__}: {one_line(exc)}")
        if isinstance(result, Page):
            payload = pickle.dumps(result, pickle.HIGHEST_PROTOCOL)
            slot = arena.put(slots, payload) if arena is not None and result.status != 304 else None
            done.put(Fetched(request.url, result.status, b"" if slot else payload, slot))
        else:
            done.put(result)

    def send() -> None:
        while True:
            try:
                item = done.get(timeout=1.0)
            except queue.Empty:
                continue
            bundle, size = [], 0
            while True:  # everything finished meanwhile, up to BUNDLE_BYTES of pages
                bundle.append(item)
                size += len(item.payload) if type(item) is Fetched else 0
                if size >= BUNDLE_BYTES:
                    break
                try:
                    item = done.get_nowait()
                except queue.Empty:
                    break
            try:
                conn.send_bytes(pickle.dumps(bundle, pickle.HIGHEST_PROTOCOL))
            except OSError:
                return  # the coordinator is gone

    threading.Thread(target=send, name="fetch-send", daemon=True).start()
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fetch") as pool:
        while True:
            try:
                batch = conn.recv()
            except (EOFError, OSError):
                break
            if batch is None:
                break
            slots.extend(batch.freed)
            for request in batch.requests:
                pool.submit(run, request)
        pool.shutdown(wait=False, cancel_futures=True)


class FetchStage:
    """The fetch thread pool, in a process of its own so that its GIL does nothing but fetch."""

    def __init__(self, ctx, settings: FetchSettings, domains: tuple[str, ...], threads: int,
                 credentials: dict[str, tuple[str, str]] | None = None, http: str = "requests",
                 share: Share | None = None, arena: Arena | None = None) -> None:
        self.ctx, self.settings, self.domains, self.threads = ctx, settings, domains, threads
        self.http = http  # [run] http: the engine the stage's Fetcher uses
        self.credentials = credentials or {}
        self.share = share
        self.arena = arena  # shared with the parse processes; the caller owns (and closes) it
        self.held: set[int] = set()  # slots holding pages the coordinator has not given back yet
        self.freed: list[int] = []  # slots done with, handed back with the next submit()
        self.sent: list[Sent] = []
        self._spawn(range(arena.slots) if arena else ())

    def _spawn(self, free) -> None:
        self.conn, child = self.ctx.Pipe()
        self.process = self.ctx.Process(target=_stage_main, args=(child, self.settings, self.domains, self.threads,
                                                                       self.credentials, self.http, self.share,
                                                                       self.arena, tuple(free)),
                                        daemon=True, name="etl-fetch")
        self.process.start()
        child.close()
        log.info("fetch process started (pid %d)", self.process.pid)

    def submit(self, requests: list[Request]) -> bool:
        """Hand over requests, all in one message (one wakeup of the stage per coordinator turn), with the
        arena slots freed since the last one."""
        try:
            self.conn.send(Handover(requests, self.freed))
            self.freed = []
            return True
        except OSError:
            return False

    def free(self, slot: Slot) -> None:
        """The page in `slot` is parsed (or dropped): the fetch process may fill the slot again. A slot
        not held (freed twice, or already the fetch process's own since a restart) is left alone: giving
        it back again would let two pages be written into it at once."""
        if slot.index in self.held:
            self.held.remove(slot.index)
            self.freed.append(slot.index)

    def owes_slots(self) -> bool:
        """Enough freed slots wait to be worth a message of their own when no request goes out."""
        return len(self.freed) >= FREED_SENT_AT

    def results(self) -> list[Fetched | FetchFailure]:
        """Everything that has arrived: Fetched pages (still pickled) and FetchFailures. The Sent reports
        that came with them wait in `self.sent`, for a caller that keeps a stall clock (take_sent()).
        Raises EOFError when the stage process has died."""
        out = []
        while self.conn.poll():
            for item in pickle.loads(self.conn.recv_bytes()):
                if type(item) is Sent:
                    self.sent.append(item)
                    continue
                if type(item) is Fetched and item.slot is not None:
                    self.held.add(item.slot.index)
                out.append(item)
        del self.sent[:-SENT_KEPT]  # a caller that never reads them (bench/fetch_only.py) keeps memory bounded
        return out

    def take_sent(self) -> list[Sent]:
        """The Sent reports received so far, oldest first (each before its request's result)."""
        sent, self.sent = self.sent, []
        return sent

    def restart(self, in_use: set[int] | frozenset[int] = frozenset()) -> None:
        """A new fetch process, after the last one died. `in_use`: the arena slots whose pages are still
        waiting for a parse process; every other slot is the new process's to fill."""
        self.sent, self.freed, self.held = [], [], set(in_use)
        log.warning("the fetch process died (exit code %s); restarting it", self.process.exitcode)
        self.conn.close()
        self.process.join(timeout=5)
        if self.process.is_alive():  # it must not write into a slot the new process is given
            self.process.kill()
            self.process.join(timeout=5)
        self._spawn([i for i in range(self.arena.slots) if i not in in_use] if self.arena else ())

    def close(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()  # it ignores SIGTERM (only the coordinator stops the run)
            self.process.join(timeout=5)
        self.conn.close()

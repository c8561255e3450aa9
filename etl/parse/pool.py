"""The parse stage's process pool: N worker processes, each behind its own pipe.

Lighter than concurrent.futures.ProcessPoolExecutor (no manager or feeder threads, ~25 µs of the
coordinator's CPU per page instead of ~110 µs, bench/results), and every page is known to be in flight on
exactly one worker. So when a worker dies, only its own pages are suspects: each is parsed again alone
on an otherwise idle worker, and the one that kills a worker by itself is the culprit.

A page also has a deadline ([run].parse_timeout): lexbor cannot be interrupted once it is building a tree,
so a worker still on one page past it is killed and replaced, that page becomes a parse failure and the
pages queued behind it go to the replacement. A worker's clock starts when it says it is ready (spawning
and importing take seconds on a busy machine) and, after that, when it starts on the page at its head.
"""

from __future__ import annotations

import logging
import pickle
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from etl.arena import Arena, Slot
from etl.items import Parsed, Request

log = logging.getLogger("etl.parse.pool")

DEPTH = 8  # pages queued per parse process


@dataclass(frozen=True)
class WorkerReady:
    """A parse process's first message: it is initialised, so its pages' deadlines may start."""

    pid: int


def _worker_main(conn: Connection, cfg, domains, arena: Arena | None = None) -> None:
    import os

    from etl.parse import worker

    worker.init_worker(cfg, domains)
    try:
        conn.send(WorkerReady(os.getpid()))
    except (EOFError, OSError):
        return
    while True:
        try:
            item = conn.recv()
            if item is None:
                return
            if type(item) is Slot:  # the page lies in the shared arena: unpickled from there, not copied
                item = arena.load(item)
            result = worker.process(item)
            result.request = None  # the coordinator holds it (in the Job): poll() puts it back
            result.pack(cfg.run.batch_size)  # pickled once, here: the coordinator forwards them unopened
            conn.send(result)
        except (EOFError, OSError):  # the coordinator is gone (killed): nothing to report to, exit quietly
            return


@dataclass
class _Worker:
    process: Any
    conn: Connection
    outbox: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    inflight: deque = field(default_factory=deque)  # items, in the order sent (results come back in order)
    solo: bool = False  # parsing one suspect page alone
    ready: bool = False  # it has sent WorkerReady
    started: float = 0.0  # monotonic time it started on the page at the head of `inflight`

    def start_sender(self) -> None:
        """Pages go down the pipe from a thread of their own: a 10 MB page blocking on a full pipe must
        never stop the coordinator from reading that worker's results (which would deadlock both)."""
        threading.Thread(target=self._sender, name="etl-parse-send", daemon=True).start()

    def _sender(self) -> None:
        while True:
            item = self.outbox.get()
            if item is _STOP:
                return
            try:
                self.conn.send_bytes(item.payload)  # the worker's recv() unpickles it
            except (OSError, EOFError, ValueError):
                return  # the worker is gone; poll() notices the EOF and hands its pages back


_STOP = object()


@dataclass(slots=True)
class Job:
    """One unit for a parse process: the pickled Page as the fetch stage sent it (never unpickled in the
    coordinator) or its arena Slot, or the Request itself for a kind that does not fetch, and what the
    coordinator needs to know about it."""

    request: Request
    status: int
    payload: bytes  # what goes down the worker's pipe as it is
    slot: Slot | None = None  # held until the page's result is back

    @classmethod
    def fetched(cls, request: Request, status: int, payload: bytes, slot: Slot | None = None) -> Job:
        if slot is not None:
            return cls(request, status, pickle.dumps(slot, pickle.HIGHEST_PROTOCOL), slot)
        return cls(request, status, payload)

    @classmethod
    def local(cls, request: Request) -> Job:
        return cls(request, 200, pickle.dumps(request, pickle.HIGHEST_PROTOCOL))


_QUIT = Job(Request("", ""), 0, pickle.dumps(None))  # the worker's loop ends on None


class Crashed:
    """Stands in for a result: the page was in flight on a worker that died."""


CRASHED = Crashed()


class ParsePool:
    def __init__(self, ctx, processes: int, cfg, domains: tuple[str, ...], depth: int = DEPTH,
                 arena: Arena | None = None) -> None:
        self.ctx, self.cfg, self.domains, self.depth, self.arena = ctx, cfg, domains, depth, arena
        self.timeout = float(cfg.run.parse_timeout)
        self.workers = [self._spawn() for _ in range(processes)]
        self.suspects: deque[Job] = deque()

    def _spawn(self) -> _Worker:
        parent, child = self.ctx.Pipe()
        process = self.ctx.Process(target=_worker_main, args=(child, self.cfg, self.domains, self.arena),
                                   daemon=True, name="etl-parse")
        process.start()
        child.close()
        w = _Worker(process, parent)
        w.start_sender()
        return w

    # ---------------------------------------------------------------------------------- sending
    def inflight(self) -> int:
        return sum(len(w.inflight) for w in self.workers) + len(self.suspects)

    def has_room(self) -> bool:
        return not self.suspects and any(len(w.inflight) < self.depth and not w.solo for w in self.workers)

    def submit(self, item: Job) -> None:
        """Send to the least busy worker (callers check has_room; a full pool still accepts)."""
        if self.suspects:
            self.suspects.append(item)  # keep order behind the suspects being cleared
            self._dispatch_suspects()
            return
        candidates = [w for w in self.workers if not w.solo] or self.workers
        self._send(min(candidates, key=lambda w: len(w.inflight)), item)

    def _send(self, w: _Worker, item: Job) -> None:
        if not w.inflight:
            w.started = time.monotonic()
        w.inflight.append(item)
        w.outbox.put(item)

    def _dispatch_suspects(self) -> None:
        for w in self.workers:
            if not self.suspects:
                return
            if not w.inflight and not w.solo:
                w.solo = True
                self._send(w, self.suspects.popleft())

    # ---------------------------------------------------------------------------------- receiving
    def poll(self, timeout: float, extra: list | None = None) -> tuple[list[tuple[Any, Parsed | Crashed]], list]:
        """Wait up to `timeout` for results (or for one of `extra` to be ready). Returns
        ([(item, Parsed or CRASHED for a page that killed its worker alone)], ready extras)."""
        conns = [w.conn for w in self.workers]
        ready = wait(conns + list(extra or ()), timeout)
        out: list[tuple[Any, Parsed | Crashed]] = []
        for w in list(self.workers):
            if w.conn not in ready:
                continue
            try:
                while w.conn.poll():
                    result = w.conn.recv()
                    if isinstance(result, WorkerReady):
                        w.ready, w.started = True, time.monotonic()
                        continue
                    item = w.inflight.popleft()
                    result.request = item.request
                    w.solo = False
                    w.started = time.monotonic()  # it goes on with the next page now
                    out.append((item, result))
            except (EOFError, OSError):
                out.extend(self._died(w))
        out.extend(self._overdue())
        self._dispatch_suspects()
        return out, [r for r in ready if r not in conns]

    def _died(self, w: _Worker) -> list[tuple[Any, Crashed]]:
        w.process.join(timeout=5)
        log.warning("a parse process died (exit code %s); replacing it, its %d page(s) are parsed again alone",
                    w.process.exitcode, len(w.inflight))
        lost, was_solo = list(w.inflight), w.solo
        w.outbox.put(_STOP)
        w.conn.close()
        self.workers[self.workers.index(w)] = self._spawn()
        if was_solo and len(lost) == 1:
            return [(lost[0], CRASHED)]  # it killed a worker on its own: the culprit
        self.suspects.extend(lost)
        return []

    def _overdue(self) -> list[tuple[Job, Parsed]]:
        """Workers past the deadline on their head page: kill, replace, fail that page, resend the rest."""
        now, out = time.monotonic(), []
        for w in list(self.workers):
            if not (w.ready and w.inflight and now - w.started > self.timeout):
                continue
            w.process.kill()
            w.process.join(timeout=5)
            w.outbox.put(_STOP)
            w.conn.close()
            late, rest = w.inflight[0], list(w.inflight)[1:]
            log.warning("a page took longer than [run].parse_timeout = %g s to parse; its parse process was "
                        "replaced: %s", self.timeout, late.request.url)
            fresh = self._spawn()
            self.workers[self.workers.index(w)] = fresh
            for item in rest:
                self._send(fresh, item)
            out.append((late, Parsed(late.request, error=(
                f"parsing took longer than {self.timeout:g} s ([run].parse_timeout); the parse process was "
                "stopped and replaced"))))
        return out

    def pending_items(self) -> list[Job]:
        return [item for w in self.workers for item in w.inflight] + list(self.suspects)

    def close(self, timeout: float = 10.0) -> None:
        for w in self.workers:
            w.outbox.put(_QUIT)  # tells the worker to exit
            w.outbox.put(_STOP)  # then the sender thread
        for w in self.workers:
            w.process.join(timeout=timeout)
            if w.process.is_alive():
                w.process.kill()  # it ignores SIGTERM (only the coordinator stops the run)
                w.process.join(timeout=5)
            w.conn.close()

"""The coordinator: owns the frontier and moves work between the three stages.

    frontier ─▶ fetch (thread pool, in the fetch process) ─▶ parse (process pool) ─▶ writer (one process)

It runs in the main process, never writes to the database while the writer runs, and keeps every stage
bounded: at most `fetch_threads` requests in flight, at most a few pages queued per parse process, and a
bounded writer queue. Detail pages are fetched first, then further pages of a list, then new facets —
which keeps the part of the frontier held in memory short.
"""

from __future__ import annotations

import heapq
import logging
import multiprocessing as mp
import random
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from etl.config import Config
from etl.fetch import FetchFailure, FetchStage
from etl.items import Parsed, Request
from etl.parse.pool import CRASHED, Job, ParsePool
from etl.progress import Progress
from etl.runs import RunState, finish_run, open_run
from etl.write import WriterSettings
from etl.writer_link import RunFailed, WriterLink, WriterLost

__all__ = ["Coordinator", "RunFailed", "Stats", "run_job"]

log = logging.getLogger("etl.pipeline")

MAX_WRITER_RESTARTS = 3
NOTHING_SUCCEEDED = "every page failed, none succeeded (is the source down or refusing us?); see the failures table"


@dataclass
class Stats:
    pages_ok: int = 0
    pages_failed: int = 0
    rows: int = 0
    skipped: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class Coordinator:
    def __init__(self, cfg: Config, state: RunState, domains: tuple[str, ...], progress: Progress) -> None:
        self.cfg, self.state, self.domains, self.progress = cfg, state, domains, progress
        self.ctx = mp.get_context(cfg.start_method)
        self.stats = Stats(pages_ok=state.pages_ok, pages_failed=state.pages_failed)
        self.seen: set[int] = state.seen  # hash(url): a third of the memory of the URLs themselves
        detail = cfg.items.detail.kind if cfg.items and cfg.items.detail else None
        self.detail_kind = detail
        self.retries: list[tuple[float, int, Request]] = []
        self.stop_requested = threading.Event()
        self.writer_restarts = 0
        self.fetch: FetchStage | None = None
        self.writer = WriterLink(self.ctx)
        self._seq = 0
        self._load_pending()

    # ------------------------------------------------------------------------------- frontier
    @property
    def in_memory(self) -> int:
        return sum(len(q) for q in self.pending)

    def _refill(self, busy: set[str]) -> None:
        """The in-memory frontier ran dry while more pending URLs wait in the database: have the writer
        commit what it holds, then read the next share of them back (reading never blocks the writer)."""
        self.writer.sync()
        from etl.runs import read_pending

        rows = read_pending(self.cfg, self.state.run_id, self.cfg.frontier_memory + len(busy) + 1)
        fresh = [r for r in rows if r.url not in busy]
        self.spilled = len(rows) > self.cfg.frontier_memory + len(busy)
        for req in fresh[:self.cfg.frontier_memory]:
            self._queue(req)
        log.info("frontier: %d pending URLs read back from the database%s", min(len(fresh), self.cfg.frontier_memory),
                 " (more remain)" if self.spilled else "")

    def _load_pending(self) -> None:
        """Take the pending URLs the database gave (run start, resume, writer recovery), up to the cap."""
        self.pending: list[deque[Request]] = [deque(), deque(), deque()]
        for req in self.state.pending[:self.cfg.frontier_memory]:
            self._queue(req)
        self.spilled = len(self.state.pending) > self.cfg.frontier_memory  # the rest wait in the database
        self.state.pending = []

    def _queue(self, req: Request) -> None:
        """Three priorities: detail pages (and SQL ranges), further list pages, new facets (last in, first out)."""
        if req.kind == self.detail_kind or req.kind == "rows":
            self.pending[0].append(req)
        elif req.meta.get("page", 1) > 1:
            self.pending[1].append(req)
        else:
            self.pending[2].append(req)

    def _next(self) -> Request | None:
        for q in self.pending:
            if q:
                return q.popleft() if q is not self.pending[2] else q.pop()
        return None

    def _has_pending(self) -> bool:
        return any(self.pending)

    # ------------------------------------------------------------------------------- writer
    def _start_writer(self) -> None:
        self.writer.start(WriterSettings(
            url=self.cfg.database_url, table=self.cfg.table, run_id=self.state.run_id,
            batch_size=self.cfg.batch_size, flush_seconds=self.cfg.flush_seconds,
            retry_seconds=self.cfg.db_retry_seconds, rows_before=self.state.rows_before))

    def _recover_writer(self) -> None:
        """Lost messages are not lost work: the frontier in the database still says which pages are not
        done. Reload it and start a writer. Pages in flight finish as usual; if the reload queues one of
        them again, the upsert makes that harmless."""
        self.writer_restarts += 1
        if self.writer_restarts > MAX_WRITER_RESTARTS:
            raise RunFailed(f"the writer process died {self.writer_restarts} times; giving up")
        log.warning("writer process lost (exit code %s); restarting it and reloading the frontier",
                    self.writer.exitcode)
        self.retries.clear()
        self.writer.discard()  # unsent messages: their pages are still pending in the frontier we reload
        from etl.runs import reload_state

        reload_state(self.cfg, self.state)
        self.seen = self.state.seen
        self.stats.pages_ok, self.stats.pages_failed = self.state.pages_ok, self.state.pages_failed
        self._load_pending()
        self._start_writer()

    # ------------------------------------------------------------------------------- parse pool
    def _start_parsers(self) -> None:
        self.pool = ParsePool(self.ctx, self.cfg.parse_processes, self.cfg, self.domains)

    def _failed(self, req: Request, stage: str, error: str, status: int | None = None) -> None:
        self.stats.pages_failed += 1
        key = str(status) if status and status >= 400 else stage  # a 200 cut off at max_bytes is no "200"
        self.stats.by_status[key] = self.stats.by_status.get(key, 0) + 1
        self.writer.post(("fail", req.url, stage, status, error, req.attempt + 1))
        self.writer.post(("page", req.url, [], [], "failed"))

    def _fetched(self, req: Request, result: FetchFailure) -> None:
        """A fetch that failed: retry later (backoff with jitter, or Retry-After), or record the failure."""
        if result.retryable and req.attempt + 1 < self.cfg.retries:
            backoff = self.cfg.backoff * (2 ** req.attempt) * (0.5 + random.random())
            delay = max(backoff, result.retry_after or 0.0)
            req.attempt += 1
            self._seq += 1
            heapq.heappush(self.retries, (time.monotonic() + delay, self._seq, req))
            return
        self._failed(req, "fetch", result.error, result.status)

    def _parsed(self, parsed: Parsed, status: int = 200) -> None:
        req = parsed.request
        if parsed.error:
            self._failed(req, "parse", parsed.error, None)
            return
        for warning in parsed.warnings:
            if warning not in self.stats.warnings:
                self.stats.warnings.append(warning)
                log.warning("%s", warning)
        for error in parsed.item_errors:  # the page is done; these items of it gave no row
            self.writer.post(("fail", req.url, "parse", None, error, 1))
        links = []
        for link in parsed.links:
            key = hash(link.url)
            if key not in self.seen:
                self.seen.add(key)
                if self.in_memory < self.cfg.frontier_memory:
                    self._queue(link)
                else:
                    self.spilled = True  # persisted as pending by the writer; read back by _refill
                links.append((link.url, link.kind, link.meta_json()))
        self.stats.pages_ok += 1
        self.stats.by_status[str(status)] = self.stats.by_status.get(str(status), 0) + 1
        self.stats.rows += len(parsed.rows)
        self.stats.skipped += parsed.skipped
        self.writer.post(("page", req.url, parsed.rows, links, "done"))

    def _handle_fetches(self, fetching: dict[str, tuple[Request, float]]) -> None:
        try:
            messages = self.fetch.results()
        except (EOFError, OSError):  # the fetch process died: its requests go back to the frontier
            self.fetch.restart()
            for req, _ in fetching.values():
                self._queue(req)
            fetching.clear()
            return
        for msg in messages:
            req, _ = fetching.pop(msg[1], (None, 0.0))
            if req is None:
                continue  # already handed back (restart), given up as stalled, or fetched twice after a writer recovery
            if msg[0] == "page":
                self.pool.submit(Job(req, msg[2], msg[3]))
            else:
                self._fetched(req, msg[2])

    def _give_up_stalled(self, fetching: dict[str, tuple[Request, float]], now: float) -> None:
        """A server that trickles its headers or body a byte at a time never trips the read timeout, and a
        blocked read cannot be interrupted: after a generous bound, record the page as failed and go on (its
        late result, if any, is ignored). The bound covers queueing behind `delay` on one host."""
        limit = (2 * (self.cfg.connect_timeout + self.cfg.read_timeout + self.cfg.total_timeout) + 30
                 + self.cfg.delay * self.cfg.fetch_threads)
        for url in [u for u, (_, since) in fetching.items() if now - since > limit]:
            req, _ = fetching.pop(url)
            self._failed(req, "fetch", f"no complete response after {limit:.0f} s (the server stalled; "
                                       f"total_timeout = {self.cfg.total_timeout:g} s per response)")

    def _handle_parsed(self, results: list[tuple[Job, Any]]) -> None:
        for job, result in results:
            if result is CRASHED:
                self._failed(job.request, "parse", "the parse process died while parsing this page (alone)")
            else:
                self._parsed(result, job.status)

    # ------------------------------------------------------------------------------- main loop
    def run(self, fetcher_kwargs: dict | None) -> Stats:
        self._start_writer()
        self._start_parsers()
        if fetcher_kwargs is not None:
            self.fetch = FetchStage(self.ctx, fetcher_kwargs, self.cfg.fetch_threads)
        try:
            while True:
                self._loop()
                try:
                    self.stats.rows = self.writer.stop(self.stats.pages_ok, self.stats.pages_failed)
                    return self.stats
                except WriterLost:  # died while flushing the end of the run: recover, finish what is left
                    self._recover_writer()
        finally:
            if self.fetch is not None:
                self.fetch.close()
            self.pool.close()
            self.writer.close()

    def _loop(self) -> None:
        fetching: dict[str, tuple[Request, float]] = {}  # url → (request, when handed over)
        limit = self.cfg.max_pages or None
        started = 0
        last_counts = time.monotonic()
        while True:
            now = time.monotonic()
            while self.retries and self.retries[0][0] <= now:
                self._queue(heapq.heappop(self.retries)[2])
            if self.spilled and not self._has_pending() and not self.stop_requested.is_set():
                busy = set(fetching) | {job.request.url for job in self.pool.pending_items()}
                busy |= {req.url for _, _, req in self.retries}
                try:
                    self._refill(busy)
                except WriterLost:
                    self._recover_writer()  # reloads the frontier from the database anyway
            if not self.stop_requested.is_set():
                # Fetch only as fast as the parse processes keep up: the pool's room is the backpressure.
                handover: list[Request] = []
                while (len(fetching) < self.cfg.fetch_threads and self.pool.has_room()
                       and (limit is None or started < limit)):
                    req = self._next()
                    if req is None:
                        break
                    started += 1
                    if req.kind == "rows":
                        self.pool.submit(Job.of(req))
                    else:
                        fetching[req.url] = (req, now)
                        handover.append(req)
                if handover:
                    self.fetch.submit(handover)
            idle = not fetching and not self.pool.inflight() and not self.spilled
            if idle and (self.stop_requested.is_set() or not self.retries and (
                    not self._has_pending() or (limit is not None and started >= limit))):
                break
            results, ready = self.pool.poll(0.2, [self.fetch.conn] if self.fetch else [])
            try:
                if ready:
                    self._handle_fetches(fetching)
                self._handle_parsed(results)
                self.writer.flush_if_idle()
                if time.monotonic() - last_counts > 2.0:
                    last_counts = time.monotonic()
                    self._give_up_stalled(fetching, last_counts)
                    self.writer.flush()
                    self.writer.send(("counts", self.stats.pages_ok, self.stats.pages_failed))
            except WriterLost:
                self._recover_writer()
            self.progress.update(self.stats, len(fetching) + self.pool.inflight())

    def install_signal_handlers(self) -> dict:
        def handler(signum, _frame):
            if self.stop_requested.is_set():
                return
            log.warning("%s received: finishing pages in flight, then stopping (the next run resumes)",
                        signal.Signals(signum).name)
            self.stop_requested.set()

        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
        return previous


def run_job(cfg: Config, fresh: bool = False, progress: Progress | None = None) -> tuple[RunState, Stats]:
    """Run one job to the end (or to a signal). Raises RunFailed for a run that could not finish."""
    progress = progress or Progress()
    state, domains, fetcher, cleanup = open_run(cfg, fresh)
    coordinator = Coordinator(cfg, state, domains, progress)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = coordinator.install_signal_handlers()
    status, message = "failed", None
    try:
        stats = coordinator.run(fetcher)
        if coordinator.stop_requested.is_set():
            status = "interrupted"
            state.interrupted = True
        elif stats.pages_ok == 0 and stats.pages_failed:
            status, message = "failed", NOTHING_SUCCEEDED
        else:
            status = "succeeded" if stats.pages_failed == 0 else "partial"
        return state, stats
    except RunFailed as exc:
        message = str(exc)
        raise
    finally:
        progress.close()
        state.status = status
        finish_run(cfg, state, status, coordinator.stats, message)
        cleanup()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

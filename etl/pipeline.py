"""The coordinator: asks the frontier for work and moves it between the three stages.

    frontier ─▶ fetch (thread pool, in the fetch process) ─▶ parse (process pool) ─▶ writer (one process)
                (skipped by source kinds that read their units themselves: row ranges, file chunks)

It runs in the main process, never writes to the database while the writer runs, and keeps every stage
bounded: at most `fetch_threads` requests in flight, at most a few pages queued per parse process, and a
bounded writer queue. The order of work is the frontier's (etl/frontier/), by the source's priorities;
what a unit becomes is the source's (etl/sources/).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import random
import signal
import threading
import time
from typing import Any

from etl.arena import Arena
from etl.carried import Packer
from etl.config.model import Config
from etl.fetch import FetchFailure, FetchStage
from etl.frontier import LocalFrontier
from etl.frontier.leased import LeasedFrontier
from etl.frontier.store import Lookup
from etl.incremental import Known, validators_of
from etl.items import FailureNote, Fetched, Link, PageDone, PageRows, Parsed, Request, Rows
from etl.outcome import NO_ROW_FROM_ITEMS, NOTHING_STORED, NOTHING_SUCCEEDED, Stats
from etl.parse.pool import CRASHED, DEPTH, Job, ParsePool
from etl.plugins import load_plugin
from etl.progress import Progress
from etl.runs import RunState, close_run, count_failures, finish_run, open_run
from etl.shared import Share
from etl.shared.claims import Claims
from etl.sources import source_for
from etl.sources.base import Source
from etl.urls import frontier_key
from etl.write import WriterSettings
from etl.writer_link import RunFailed, WriterLink, WriterLost

__all__ = ["Coordinator", "RunFailed", "Stats", "run_job"]

log = logging.getLogger("etl.pipeline")

MAX_WRITER_RESTARTS = 3
class Coordinator:
    def __init__(self, cfg: Config, state: RunState, source: Source, progress: Progress,
                 share: Share | None = None) -> None:
        self.cfg, self.state, self.source, self.progress, self.share = cfg, state, source, progress, share
        self.domains = source.domains()
        self.ctx = mp.get_context(cfg.run.start_method)
        self.stats = Stats(pages_ok=state.pages_ok, pages_failed=state.pages_failed)
        self.stop_requested = threading.Event()
        self.writer_restarts = 0
        self.fetch: FetchStage | None = None
        self.arena: Arena | None = None  # fetched pages' bytes, shared by the fetch and parse processes
        self.writer = WriterLink(self.ctx)
        self.lookup = Lookup(cfg.database_url, state.run_id)  # membership past the seen-set's cap
        self.frontier: LocalFrontier = (
            LocalFrontier(source.priority, cfg.run.frontier_memory, self._read_back, seen_memory=cfg.run.seen_memory,
                          max_urls=cfg.run.max_urls, known=self.lookup.known) if share is None else
            LeasedFrontier(source.priority, Claims(share.url, share.run_id, share.owner, cfg.run.lease,
                                                   source.urgent_kinds()),
                           cfg.run.claim_batch or self._in_flight_max(), self.writer.sync))
        self.known = Known.load(cfg, source.base_url)  # what earlier runs fetched (etl/incremental.py)
        self._load_frontier()

    # ------------------------------------------------------------------------------- frontier
    def _in_flight_max(self) -> int:
        """How many units this process works on at once: what a worker claims at a time, so that it does
        not hoard work the other workers could be doing."""
        return self.cfg.run.fetch_threads if self.source.fetches else 2 * self.cfg.run.parse_processes

    def _load_frontier(self) -> None:
        """Take what the database gave (run start, resume, writer recovery)."""
        self.frontier.load(self.state.pending, self.state.seen, self.state.urls)
        self.state.pending, self.state.seen = [], set()

    def _read_back(self, limit: int, busy: set[str]) -> list[Request]:
        """The frontier spilled and ran dry: have the writer commit what it holds, then read the next share
        of pending work (reading never blocks the writer)."""
        self.writer.sync()
        from etl.runs import read_pending

        return read_pending(self.cfg, self.state.run_id, limit, self.source.urgent_kinds())

    # ------------------------------------------------------------------------------- writer
    def _start_writer(self) -> None:
        run, db = self.cfg.run, self.cfg.database
        self.writer.start(WriterSettings(
            url=db.url, target=self.cfg.target, run_id=self.state.run_id, batch_size=run.batch_size,
            flush_seconds=run.flush_seconds, retry_seconds=db.retry_seconds, rows_before=self.state.rows_before,
            lease_owner=self.share.owner if self.share else None, lease=run.lease))

    def _recover_writer(self) -> None:
        """Lost messages are not lost work: the frontier in the database still says which pages are not
        done. Reload it and start a writer. Pages in flight finish as usual; if the reload queues one of
        them again, the upsert makes that harmless."""
        self.writer_restarts += 1
        if self.writer_restarts > MAX_WRITER_RESTARTS:
            raise RunFailed(f"the writer process died {self.writer_restarts} times; giving up")
        log.warning("writer process lost (exit code %s); restarting it and reloading the frontier",
                    self.writer.exitcode)
        self.writer.discard()  # unsent messages: their pages are still pending in the frontier we reload
        from etl.runs import reload_state

        reload_state(self.cfg, self.state)
        self.stats.pages_ok, self.stats.pages_failed = self.state.pages_ok, self.state.pages_failed
        self._load_frontier()
        self._start_writer()

    # ------------------------------------------------------------------------------- parse pool
    def _start_parsers(self) -> None:
        run = self.cfg.run
        if self.source.fetches:  # a slot for every page that can be in flight, and margin for freed ones
            self.arena = Arena.create(2 * run.fetch_threads + run.parse_processes * DEPTH)
        self.pool = ParsePool(self.ctx, run.parse_processes, self.cfg, self.domains, arena=self.arena)

    def _failed(self, req: Request, stage: str, error: str, status: int | None = None) -> None:
        self.stats.pages_failed += 1
        key = str(status) if status and status >= 400 else stage  # a 200 cut off at max_bytes is no "200"
        self.stats.by_status[key] = self.stats.by_status.get(key, 0) + 1
        self.writer.post(FailureNote(req.url, stage, status, error, req.attempt + 1, frontier_key(req)))
        self.writer.post(PageDone(frontier_key(req), [], [], "failed"))
        self.frontier.finished(req)

    def _fetch_failed(self, req: Request, result: FetchFailure) -> None:
        """A fetch that failed: retry later (backoff with jitter, or Retry-After), or record the failure."""
        fetch = self.cfg.fetch
        if result.retryable and req.attempt < fetch.retries:  # retries after the first attempt (req.attempt 0)
            backoff = fetch.backoff * (2 ** req.attempt) * (0.5 + random.random())
            req.attempt += 1
            self.frontier.retry(req, time.monotonic() + max(backoff, result.retry_after or 0.0))
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
            self.writer.post(FailureNote(req.url, "parse", None, error, 1, frontier_key(req)))
        wanted, notes = self.known.sift(parsed, status)  # unchanged listings' detail pages are not fetched
        for note in notes:
            self.writer.post(note)
        packer = Packer()  # the facet texts its links carry: once per page, not per link (etl/carried.py)
        links = packer.links(self.frontier.add(wanted))
        self.stats.pages_ok += 1
        self.stats.by_status[str(status)] = self.stats.by_status.get(str(status), 0) + 1
        self.stats.rows += parsed.row_count
        self.stats.skipped += parsed.skipped
        self.stats.keyless += parsed.keyless
        self._send_page(frontier_key(req), parsed, links, packer.texts)
        self.frontier.finished(req)

    def _send_page(self, key: int, parsed: Parsed, links: list[Link], carried: dict[int, str]) -> None:
        """A page's rows go to the writer in shares of batch_size rows, its done mark and links with the
        last: a page of 500,000 items is never one message (one page took the writer to 1.6 GB). A crash
        between shares leaves the page pending, and the redo's upserts rewrite the same rows. What the unit
        replaces is deleted with the first share, so later shares never lose rows of earlier ones. Shares
        the parse process pickled (Parsed.pack) go on as they came."""
        shares: list[Rows] = list(parsed.shares)
        if parsed.rows:
            step = max(1, self.cfg.run.batch_size)
            shares += [parsed.rows[i:i + step] for i in range(0, len(parsed.rows), step)]
        replaces = parsed.replaces
        for i, share in enumerate(shares[:-1]):
            self.writer.post(PageRows(key, share, replaces if i == 0 else []))
        last: Rows = shares[-1] if shares else []
        self.writer.post(PageDone(key, last, links, "done", replaces if len(shares) <= 1 else [], carried))

    def _handle_fetches(self, fetching: dict[str, tuple[Request, float | None]]) -> None:
        try:
            results = self.fetch.results()
        except (EOFError, OSError):  # the fetch process died: its requests go back to the frontier
            self.fetch.restart({job.slot.index for job in self.pool.pending_items() if job.slot is not None})
            self.frontier.give_back(req for req, _ in fetching.values())
            fetching.clear()
            return
        now = time.monotonic()
        for sent in self.fetch.take_sent():  # each came before its request's result: applied first
            entry = fetching.get(sent.url)
            if entry is not None:
                fetching[sent.url] = (entry[0], None if sent.waiting else now)
        for result in results:
            fetched = type(result) is Fetched
            req, _ = fetching.pop(result.url if fetched else result.request.url, (None, 0.0))
            if req is None:  # already handed back (restart), given up as stalled, or fetched twice after a writer recovery
                if fetched and result.slot is not None:
                    self.fetch.free(result.slot)
                continue
            if fetched and result.status == 304:  # the copy we hold is current: nothing to parse
                self._parsed(Parsed(req, validators=validators_of(result.payload)), 304)
            elif fetched:
                self.pool.submit(Job.fetched(req, result.status, result.payload, result.slot))
            else:
                self._fetch_failed(req, result)

    def _give_up_stalled(self, fetching: dict[str, tuple[Request, float | None]], now: float) -> None:
        """A backstop for a fetch that never ends. The fetch process bounds each response itself (its
        watchdog cuts one past total_timeout), but nothing bounds e.g. a hanging DNS lookup: after a
        generous bound, record the page as failed and go on (its late result, if any, is ignored).

        The clock starts when the request is sent, as the fetch process reports it (etl.fetch.Sent),
        not when it is handed over: a request queued in the fetch process behind `delay` or a robots.txt
        Crawl-delay is waiting politely, and a bound on queueing would have to guess how long the queue
        is. A request never sent is never given up here; a redirect's next hop restarts the clock."""
        fetch = self.cfg.fetch
        limit = 2 * (fetch.connect_timeout + fetch.read_timeout + fetch.total_timeout) + 30
        for url in [u for u, (_, since) in fetching.items() if since is not None and now - since > limit]:
            req, _ = fetching.pop(url)
            self._failed(req, "fetch", f"no complete response {limit:.0f} s after it was sent (the server "
                                       f"stalled; total_timeout = {fetch.total_timeout:g} s per response)")

    def _handle_parsed(self, results: list[tuple[Job, Any]]) -> None:
        for job, result in results:
            if job.slot is not None:
                self.fetch.free(job.slot)
            if result is CRASHED:
                self._failed(job.request, "parse", "the parse process died while parsing this page (alone)")
            else:
                self._parsed(result, job.status)

    # ------------------------------------------------------------------------------- main loop
    def run(self) -> Stats:
        self._start_writer()
        self._start_parsers()
        if self.source.fetches:
            self.fetch = FetchStage(self.ctx, self.cfg.fetch, self.domains, self.cfg.run.fetch_threads,
                                    self.source.credentials(), http=self.cfg.run.http, share=self.share,
                                    arena=self.arena)
        try:
            while True:
                self._loop()
                try:
                    self.stats.rows = self.writer.stop()
                    if self.writer.done is not None:  # what the database refused decides a failed run
                        self.stats.rows_refused = self.writer.done.rows_refused
                        self.stats.refusal = self.writer.done.refusal
                    return self.stats
                except WriterLost:  # died while flushing the end of the run: recover, finish what is left
                    self._recover_writer()
        finally:
            if self.fetch is not None:
                self.fetch.close()
            self.pool.close()
            self.writer.close()
            self.lookup.close()
            self.frontier.close()
            if self.arena is not None:
                self.arena.close()

    def _refill(self, fetching: dict[str, tuple[Request, float | None]]) -> None:
        busy = set(fetching) | {job.request.url for job in self.pool.pending_items()}
        try:
            self.frontier.refill(busy)
        except WriterLost:
            self._recover_writer()  # reloads the frontier from the database anyway

    def _hand_out(self, fetching: dict[str, tuple[Request, float | None]], now: float, started: int,
                  limit: int | None) -> int:
        """Fetch only as fast as the parse processes keep up: the pool's room is the backpressure."""
        handover: list[Request] = []
        for req, why in self.frontier.given_up():
            self._failed(req, "fetch", why)
        while (len(fetching) < self.cfg.run.fetch_threads and self.pool.has_room()
               and (limit is None or started < limit)):
            req = self.frontier.next(now)
            if req is None:
                break
            started += 1
            if self.fetch is None:  # a kind that reads its units itself (row ranges, file chunks)
                self.pool.submit(Job.local(req))
            else:
                fetching[req.url] = (req, None)  # not sent yet: the stall clock starts at Sent
                handover.append(req)
        if handover or (self.fetch is not None and self.fetch.owes_slots()):
            self.fetch.submit(handover)
        return started

    def _finished(self, started: int, limit: int | None) -> bool:
        """Nothing is in flight: stop on a signal, at the page limit (work left in the database stays
        pending for the next run), or when nothing is left anywhere; either way, say if run.max_urls dropped links."""
        left = self.frontier.remaining()
        if self.stop_requested.is_set():
            return True
        if left.retrying:
            return False
        pages_cut = limit is not None and started >= limit and (left.ready or left.spilled)
        if (left.ready or left.spilled) and not pages_cut:
            return False
        why = [f"stopped at [run] max_pages = {limit}: work is left in the frontier (raise max_pages, or 0 for "
               "no limit)"] if pages_cut else []
        self.stats.cut_short = "; ".join(why + self._url_limit_note()) or None
        return True

    def _url_limit_note(self) -> list[str]:
        """Links dropped at run.max_urls are work lost: the run is partial and says how much (a resumed run
        that was already full cannot count what earlier sessions dropped)."""
        f = self.frontier
        if f.dropped:
            return [f"stopped discovering at [run] max_urls = {f.max_urls:,}: {f.dropped:,} links to new URLs "
                    "were not followed (raise max_urls)"]
        if f.reached and self.state.resumed:
            return [f"stopped discovering at [run] max_urls = {f.max_urls:,}: the frontier was full when the run "
                    "resumed, links found before may have been dropped (raise max_urls)"]
        return []

    def _loop(self) -> None:
        fetching: dict[str, tuple[Request, float | None]] = {}  # url → (request, when sent, None if queued)
        limit = self.cfg.run.max_pages or None
        started = 0
        last_check = time.monotonic()
        while True:
            now = time.monotonic()
            self.frontier.tick(now)
            if self.frontier.needs_refill() and not self.stop_requested.is_set():
                self._refill(fetching)
            if not self.stop_requested.is_set():
                started = self._hand_out(fetching, now, started, limit)
            if not fetching and not self.pool.inflight() and self._finished(started, limit):
                break
            results, ready = self.pool.poll(0.2, [self.fetch.conn] if self.fetch else [])
            try:
                if ready:
                    self._handle_fetches(fetching)
                self._handle_parsed(results)
                self.writer.flush_if_idle()
                if time.monotonic() - last_check > 2.0:
                    last_check = time.monotonic()
                    self._give_up_stalled(fetching, last_check)
                    self.writer.flush()
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


def run_job(cfg: Config, fresh: bool = False, progress: Progress | None = None,
            full: bool = False) -> tuple[RunState, Stats]:
    """Run one job to the end (or to a signal). Raises RunFailed for a run that could not finish.
    `full` (etl run --full): a sql source reads every row, not only those since its cursor — a new
    run, as with `fresh`, since an unfinished one reads the window it planned."""
    progress = progress or Progress()
    if cfg.transform.type == "plugin":  # imported when the run starts, not when the config is read
        load_plugin(cfg.transform.plugin)
    source = source_for(cfg)
    source.full = full
    try:
        state = open_run(cfg, fresh or full, source)
    except BaseException:
        source.close()
        raise
    coordinator = Coordinator(cfg, state, source, progress)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = coordinator.install_signal_handlers()
    status, message = "failed", None
    try:
        stats = coordinator.run()
        if coordinator.stop_requested.is_set():
            status = "interrupted"
            state.interrupted = True
        elif stats.pages_ok == 0 and stats.pages_failed:
            status, message = "failed", NOTHING_SUCCEEDED
        elif stats.rows_refused and not stats.rows:  # rows reached the database, which stored none of them
            status = "failed"
            message = stats.failed_because = NOTHING_STORED.format(stats.rows_refused, stats.refusal or "?")
        else:
            stats.failures = count_failures(cfg, state.run_id)
            complete = stats.pages_failed == 0 and stats.failures == 0 and stats.cut_short is None
            status = "succeeded" if complete else "partial"
            message = stats.cut_short
            if stats.cut_short:
                log.warning("%s", stats.cut_short)
            if not stats.rows and stats.keyless and not state.rows_before:  # pages had items, no row came of them
                status = "partial"
                message = stats.no_rows_because = NO_ROW_FROM_ITEMS.format(stats.keyless)
                log.warning("%s", message)
        return state, stats
    except RunFailed as exc:
        message = str(exc)
        raise
    finally:
        progress.close()
        state.status = status
        finish_run(cfg, state, status, coordinator.stats, message)
        close_run(state)
        source.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

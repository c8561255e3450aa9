"""`etl worker`: join the job's open run (or open it), work until nothing is left, and close the run if
this worker is the last one.

Exclusivity is by the job's lock: workers hold it shared (any number of them, on any machine), `etl run`
holds it exclusively, so a run on one machine and a shared run of the same job never overlap. Joining is
serialised by a second lock (the job's start lock) so two workers starting in the same second agree on
one run: the first opens (or resumes) it, the others find it running with a live worker and join it.
A run whose workers all died is resumed like any run: its dead leases are dropped at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from etl import db, schema
from etl.config.model import Config, ConfigError
from etl.dialects import dialect_for
from etl.dialects.base import mask_url
from etl.errors import one_line
from etl.locks import NamedLock, lock_key
from etl.outcome import NOTHING_SUCCEEDED, Stats
from etl.progress import Progress
from etl.runs import RunState, _resume_or_create, count_failures, finish_run, ready_database, start_run
from etl.shared import Share
from etl.sources import source_for
from etl.sources.base import Source
from etl.writer_link import RunFailed

log = logging.getLogger("etl.shared")

START_WAIT = 120.0  # seconds a worker waits for others to finish joining or closing


@dataclass
class WorkerOutcome:
    state: RunState
    stats: Stats  # this worker's
    closed: bool  # this worker closed the run (it was the last)
    run_status: str  # the run's status as this worker left it ("running" while others go on)


def worker_name() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


def _lock(cfg: Config, name: str, shared: bool = False) -> NamedLock:
    return dialect_for(cfg.database_url).named_lock(cfg.database_url, name, shared)


@contextmanager
def _start_lock(cfg: Config) -> Iterator[None]:
    """Held while a worker joins or closes the run: one at a time, so they agree on which run it is."""
    lock = _lock(cfg, f"etl:start:{cfg.job}")
    try:
        if not lock.acquire(START_WAIT):
            raise db.DatabaseError(f"job {cfg.job!r}: another worker has been joining or closing the run for "
                                   f"{START_WAIT:.0f} s; try again")
        yield
    finally:
        lock.release()


def join(cfg: Config, source: Source, owner: str) -> RunState:
    """Take the job's lock shared, then under the start lock join the open run or open one."""
    dialect = dialect_for(cfg.database_url)
    if not dialect.leases:
        raise ConfigError(f"etl worker shares a run through the database, which {dialect.name} cannot do: use "
                          "PostgreSQL (or etl run, on one machine)")
    why = source.unshareable()
    if why:
        raise ConfigError(f"etl worker: {why}")
    ready_database(cfg)
    job_lock = _lock(cfg, f"etl:job:{cfg.job}", shared=True)
    try:
        if not job_lock.acquire():
            raise db.DatabaseError(f"job {cfg.job!r} is running on one machine (etl run) in "
                                   f"{mask_url(cfg.database_url)}; wait for it or stop it first")
        with _start_lock(cfg):
            return start_run(cfg, source, job_lock, lambda engine: _join_or_open(cfg, engine, source, owner))
    except BaseException:
        job_lock.release()  # idempotent: start_run frees it too when it fails
        raise


def _live_workers(conn, job: str) -> int:
    """Workers of the job alive now, this one not counted: the sessions holding the job's lock shared
    (pg_locks), not heartbeats — a worker whose loop is busy for longer than a lease is still alive, and
    one that died lets go of its lock with its session."""
    key = lock_key(f"etl:job:{job}") & (2**64 - 1)
    return max(0, (conn.execute(text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND mode = 'ShareLock' "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND classid = :hi AND objid = :lo AND objsubid = 1"), {"hi": key >> 32, "lo": key & 0xFFFFFFFF}).scalar()
        or 0) - 1)


def _join_or_open(cfg: Config, engine, source: Source, owner: str) -> RunState:
    runs = schema.runs
    with engine.begin() as conn:
        row = conn.execute(select(runs.c.id, runs.c.config_digest, runs.c.rows_written)
                           .where(runs.c.job == cfg.job, runs.c.status == "running")
                           .order_by(runs.c.id.desc()).limit(1)).first()
        live = _live_workers(conn, cfg.job) if row is not None else 0
        if live and row.config_digest != cfg.digest:
            raise ConfigError(f"run {row.id} of job {cfg.job!r} is being worked on by {live} worker(s) with another "
                              "config; start this worker with the same config, or wait for them")
        if live:
            state = RunState(run_id=row.id, resumed=True, rows_before=row.rows_written)
            log.info("joining run %d of %s (%d worker(s) on it)", row.id, cfg.job, live)
    if not live:  # a new run, or one whose workers are all gone: resumed as etl run would
        state = _resume_or_create(cfg, engine, False, source)
        state.pending, state.seen = [], set()  # the database is the queue
        with engine.begin() as conn:
            f = schema.frontier
            conn.execute(update(f).where(f.c.run_id == state.run_id, f.c.lease_owner.is_not(None))
                         .values(lease_owner=None, lease_until=None))  # dead workers' leases
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        conn.execute(insert(schema.workers).values(run_id=state.run_id, worker=owner, host=socket.gethostname()[:255],
                                                   pid=os.getpid(), started_at=now, seen_at=func.now(),
                                                   status="running", pages_ok=0, pages_failed=0, rows_written=0))
    return state


def _set_worker(cfg: Config, state: RunState, owner: str, status: str) -> None:
    w = schema.workers
    engine = db.make_engine(cfg.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(update(w).where(w.c.run_id == state.run_id, w.c.worker == owner)
                         .values(status=status, seen_at=func.now()))
    except SQLAlchemyError as exc:
        log.error("could not record this worker's end (%s)", one_line(exc, 300))
    finally:
        engine.dispose()


def close_if_last(cfg: Config, state: RunState, stats: Stats) -> tuple[bool, str]:
    """Under the start lock: if nothing of the run is pending, record its end (once: the first worker to
    find it so). Returns (closed by this worker, the run's status)."""
    f, runs = schema.frontier, schema.runs
    with _start_lock(cfg):
        engine = db.make_engine(cfg.database_url)
        try:
            with engine.connect() as conn:
                status = conn.execute(select(runs.c.status).where(runs.c.id == state.run_id)).scalar()
                by_state = dict(conn.execute(select(f.c.state, func.count()).where(f.c.run_id == state.run_id)
                                             .group_by(f.c.state)).all())
                alone = _live_workers(conn, cfg.job) == 0
        finally:
            engine.dispose()
        if status != "running" or (by_state.get("pending") and not (stats.cut_short and alone)):
            return False, status or "running"  # others go on (or will: a run cut short by max_pages waits)
        stats.failures = count_failures(cfg, state.run_id)
        ok, failed = by_state.get("done", 0), by_state.get("failed", 0)
        message = None
        if ok == 0 and failed:
            run_status, message = "failed", NOTHING_SUCCEEDED
        else:
            complete = failed == 0 and stats.failures == 0 and not by_state.get("pending")
            run_status, message = ("succeeded" if complete else "partial"), stats.cut_short
        if not finish_run(cfg, state, run_status, stats, message):
            return False, "running"  # the database would not take it: the next worker or run closes it
        return True, run_status


class LockKeeper(threading.Thread):
    """Holds this worker's share of the job's lock through a database restart (which ends the session that
    held it): checks it every third of a lease and takes it again. If an `etl run` of the job took the lock
    meanwhile, this worker stops (as on SIGTERM): a run on one machine and the workers never overlap."""

    def __init__(self, lock: NamedLock, every: float, stop: threading.Event) -> None:
        super().__init__(name="etl-lock-keeper", daemon=True)
        self.lock, self.every, self.stop, self.done = lock, every, stop, threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every):
            if self.lock.alive():
                continue
            self.lock.release()
            try:
                taken = self.lock.acquire()
            except Exception as exc:  # noqa: BLE001 - the database is still away: try again next time
                log.warning("the job's lock is lost with the database session (%s); retrying", one_line(exc, 200))
                continue
            if not taken:
                log.error("the job's lock was taken by a run on one machine while the database restarted; "
                          "this worker stops")
                self.stop.set()
                return


@contextmanager
def _database_errors(cfg: Config, become: type[Exception]) -> Iterator[None]:
    """The database going away outside the stages' own retries (joining, closing, recovering the writer)
    is one line, not a traceback: DatabaseError before the work starts (exit 2), RunFailed once it has."""
    try:
        yield
    except (SQLAlchemyError, *dialect_for(cfg.database_url).errors) as exc:
        raise become(f"the database failed this worker: {one_line(exc, 500)}") from None


def run_worker(cfg: Config, progress: Progress | None = None) -> WorkerOutcome:
    """One worker's life in a shared run. Raises what run_job raises (DatabaseError, ConfigError, RunFailed)."""
    from etl.pipeline import Coordinator
    from etl.plugins import load_plugin

    progress = progress or Progress()
    if cfg.transform.type == "plugin":
        load_plugin(cfg.transform.plugin)
    source = source_for(cfg)
    owner = worker_name()
    try:
        with _database_errors(cfg, db.DatabaseError):
            state = join(cfg, source, owner)
    except BaseException:
        source.close()
        raise
    status, previous = "failed", {}
    try:
        with _database_errors(cfg, RunFailed):
            coordinator = Coordinator(cfg, state, source, progress, Share(cfg.database_url, state.run_id, owner))
            if threading.current_thread() is threading.main_thread():
                previous = coordinator.install_signal_handlers()
            keeper = LockKeeper(state.lock, cfg.run.lease / 3, coordinator.stop_requested)
            keeper.start()
            try:
                stats = coordinator.run()
            finally:
                keeper.done.set()
                keeper.join(timeout=5)
            closed, run_status = False, "running"
            if coordinator.stop_requested.is_set():
                status, state.interrupted = "interrupted", True
            else:
                status = "finished"
                closed, run_status = close_if_last(cfg, state, stats)
        state.status = run_status
        return WorkerOutcome(state, stats, closed, run_status)
    finally:
        progress.close()
        _set_worker(cfg, state, owner, status)
        if state.lock is not None:
            state.lock.release()
            state.lock = None
        source.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

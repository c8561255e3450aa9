"""Run bookkeeping done by the coordinator while no writer runs: open (or resume) a run, close it.

Resume rule (under the job's lock, so whoever holds it is the only one working on the job): the newest
run of the same job whose status is `running` (the process died), `interrupted`
(SIGINT/SIGTERM) or `failed` with pages still pending (the database stayed away, the writer kept dying) is
continued — its frontier's pending entries are fetched again — unless `--fresh` is given or the config
changed meaning (different digest), in which case a new run starts.

A run's end is recorded in one transaction with what it did to a table that keeps history (new, changed,
unchanged, relisted) and, for a complete run only, the rows it marks delisted (etl/history.py).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from etl import db, schema, targets
from etl.compact import compact
from etl.config.model import Config
from etl.dialects import dialect_for
from etl.dialects.base import mask_url
from etl.errors import one_line
from etl.frontier import store as frontier_store
from etl.items import Request
from etl.locks import NamedLock
from etl.sources.base import Source

log = logging.getLogger("etl.runs")


@dataclass
class RunState:
    run_id: int
    resumed: bool = False
    pending: list[Request] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)  # url_key (etl.urls.fingerprint) of the frontier's entries
    urls: int | None = None  # how many entries the frontier has (None: as many as `seen`)
    pages_ok: int = 0
    pages_failed: int = 0
    rows_before: int = 0
    interrupted: bool = False
    status: str = "running"  # how the run ended, as recorded in `runs` (set by run_job)
    lock: NamedLock | None = None  # the job's lock, held from open_run to close_run
    history: Any = None  # etl.history.RunCounts once finish_run recorded them (tables with history)


def _load_stocks(engine, url: str) -> None:
    from etl.stocks.dictionary import load_stocks

    rows = [{"code": s.code, "name": s.name, "exchange": s.exchange, "listed_date": s.listed_date,
             "aliases": json.dumps(list(s.aliases), ensure_ascii=False), "delisted": s.delisted}
            for s in load_stocks()]
    with engine.begin() as conn:
        dialect_for(url).upsert_rows(conn, schema.stocks, schema.NATURAL_KEYS["stocks"], (), rows)


def ready_database(cfg: Config) -> None:
    """Writable and migrated, or DatabaseError with a one-line message (etl run and etl worker alike)."""
    problem = dialect_for(cfg.database_url).writable_problem(cfg.database_url)
    if problem:
        raise db.DatabaseError(problem)
    db.upgrade(cfg.database_url, cfg.database.connect_wait)


def start_run(cfg: Config, source: Source, lock: NamedLock, make_state) -> RunState:
    """Under the job's `lock` (held): prepare the source (demo site, seeded table, download), make sure of
    the target table, get the run from `make_state(engine)` (created, resumed or joined), load the stock
    list if the job needs it. The lock goes with the state, or is freed if anything fails."""
    try:
        source.prepare()
        engine = db.make_engine(cfg.database_url)
        try:
            targets.ensure(engine, cfg.target)
            state = make_state(engine)
            if cfg.transform.type == "stock_mentions":
                _load_stocks(engine, cfg.database_url)
        except targets.TargetError as exc:
            raise db.DatabaseError(str(exc)) from None
        finally:
            engine.dispose()
    except BaseException:
        lock.release()
        raise
    state.lock = lock
    return state


def open_run(cfg: Config, fresh: bool, source: Source) -> RunState:
    """Migrate, take the job's lock, then create or resume the run. The lock is held until `close_run`:
    one job, one run at a time, on any machine."""
    ready_database(cfg)
    lock = take_job_lock(cfg)

    def make_state(engine) -> RunState:
        _refuse_if_workers(cfg, engine)
        return _resume_or_create(cfg, engine, fresh, source)

    return start_run(cfg, source, lock, make_state)


def _refuse_if_workers(cfg: Config, engine) -> None:
    """The job's lock says nobody works on it, but workers of a shared run lose their share of it while the
    database restarts (they take it again within a third of a lease): a running run whose workers were seen
    that recently is theirs, not this `etl run`'s to resume."""
    runs, w = schema.runs, schema.workers
    recent = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=cfg.run.lease)
    with engine.connect() as conn:
        row = conn.execute(select(runs.c.id, func.count()).join(w, w.c.run_id == runs.c.id)
                           .where(runs.c.job == cfg.job, runs.c.status == "running", w.c.status == "running",
                                  w.c.seen_at > recent).group_by(runs.c.id)).first()
    if row is not None:
        raise db.DatabaseError(f"job {cfg.job!r} is running on {row[1]} worker(s) (run {row[0]}, etl worker); "
                               "wait for them or stop them first")


def take_job_lock(cfg: Config) -> NamedLock:
    """The job's lock, or DatabaseError saying who has it. Held by the database session (or flock for
    SQLite), so a run that died — kill -9, a lost machine — frees it at once and the next run resumes."""
    lock = dialect_for(cfg.database_url).named_lock(cfg.database_url, f"etl:job:{cfg.job}")
    try:
        taken = lock.acquire()
    except SQLAlchemyError as exc:
        lock.release()
        raise db.DatabaseError(f"cannot lock job {cfg.job!r} in {mask_url(cfg.database_url)}: "
                               f"{one_line(exc, 500)}") from None
    if taken:
        return lock
    lock.release()
    raise db.DatabaseError(f"job {cfg.job!r} is already running{_holder(cfg)}; wait for it or stop it first")


def _holder(cfg: Config) -> str:
    """Which run (and where) holds the job, as far as `runs` says: for the message only."""
    try:
        engine = db.make_engine(cfg.database_url)
        try:
            with engine.connect() as conn:
                row = conn.execute(select(schema.runs.c.id, schema.runs.c.params)
                                   .where(schema.runs.c.job == cfg.job, schema.runs.c.status == "running")
                                   .order_by(schema.runs.c.id.desc()).limit(1)).first()
        finally:
            engine.dispose()
    except SQLAlchemyError:
        return ""
    if row is None:
        return " (it is starting)"
    params = json.loads(row.params or "{}")
    return f" (run {row.id}, pid {params.get('pid')} on {params.get('host')})"


def close_run(state: RunState) -> None:
    """Free the job's lock: the next run of the job may start."""
    if state.lock is not None:
        state.lock.release()
        state.lock = None


def _resume_or_create(cfg: Config, engine, fresh: bool, source: Source) -> RunState:
    runs, frontier = schema.runs, schema.frontier
    now = dt.datetime.now(dt.UTC)
    base_url = source.base_url
    params = json.dumps({"base_url": base_url, "pid": os.getpid(), "host": socket.gethostname()})
    with engine.begin() as conn:
        row = conn.execute(select(runs).where(runs.c.job == cfg.job,
                                              runs.c.status.in_(("running", "interrupted", "failed")))
                           .order_by(runs.c.id.desc()).limit(1)).first()
        if row is not None and row.status == "failed" and not conn.execute(
                select(frontier.c.url_key).where(frontier.c.run_id == row.id, frontier.c.state == "pending").limit(1)).first():
            row = None  # failed with nothing left to do (every page failed): the next run starts over
        if row is not None and (fresh or row.config_digest != cfg.digest):
            reason = "--fresh" if fresh else "the config changed"
            conn.execute(update(runs).where(runs.c.id == row.id)
                         .values(status="abandoned", message=f"superseded by a new run ({reason})"))
            row = None
        if row is not None:
            old_base = json.loads(row.params or "{}").get("base_url")
            if old_base and base_url and old_base != base_url:  # the demo server got a new port
                frontier_store.rebase(conn, row.id, old_base, base_url)
            conn.execute(update(runs).where(runs.c.id == row.id).values(status="running", params=params))
            state = RunState(run_id=row.id, resumed=True, rows_before=row.rows_written)
            load_frontier(conn, state, cfg)
            # the writer adds to these as it marks pages: they start from the frontier, the committed truth
            conn.execute(update(runs).where(runs.c.id == row.id)
                         .values(pages_ok=state.pages_ok, pages_failed=state.pages_failed))
            log.info("resuming run %d of %s: %d pages still to do", row.id, cfg.job,
                     (state.urls or 0) - state.pages_ok - state.pages_failed)
            return state
        run_id = conn.execute(insert(runs).values(
            job=cfg.job, config_digest=cfg.digest, database=mask_url(cfg.database_url), started_at=now,
            status="running", pages_ok=0, pages_failed=0, rows_written=0, params=params)).inserted_primary_key[0]
        requests = source.plan(engine)
        seen = frontier_store.add(conn, run_id, requests)
        return RunState(run_id=run_id, pending=requests, seen=seen)


def load_frontier(conn, state: RunState, cfg: Config) -> None:
    """Fill state from the database: the keys seen and the pending entries (as many as the frontier holds in
    memory: the rest stay in the database), the number of entries, and page counts by outcome."""
    snap = frontier_store.load(conn, state.run_id, cfg.run.frontier_memory, cfg.run.seen_memory)
    state.seen, state.pending, state.pages_ok, state.pages_failed = snap.seen, snap.pending, snap.done, snap.failed
    state.urls = snap.urls


def read_pending(cfg: Config, run_id: int, limit: int, urgent_kinds: tuple[str, ...]) -> list[Request]:
    """Pending frontier entries, the urgent kinds first, at most `limit` (a spilled frontier's read-back)."""
    engine = db.make_engine(cfg.database_url)
    try:
        with engine.connect() as conn:
            return frontier_store.read_pending(conn, run_id, limit, urgent_kinds)
    finally:
        engine.dispose()


def reload_state(cfg: Config, state: RunState) -> None:
    """After losing the writer: the database is the truth about what was committed."""
    engine = db.make_engine(cfg.database_url)
    try:
        with engine.connect() as conn:
            load_frontier(conn, state, cfg)
            state.rows_before = conn.execute(select(schema.runs.c.rows_written)
                                             .where(schema.runs.c.id == state.run_id)).scalar() or 0
    finally:
        engine.dispose()


def count_failures(cfg: Config, run_id: int) -> int:
    """Failure rows of a run, every stage: a row the database refused is as much a failure as a page."""
    engine = db.make_engine(cfg.database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(schema.failures)
                                .where(schema.failures.c.run_id == run_id)).scalar() or 0
    except Exception as exc:  # the database is gone: finish_run will say so
        log.error("could not count the failures of run %d: %s", run_id, str(exc).splitlines()[0])
        return 0
    finally:
        engine.dispose()


def finish_run(cfg: Config, state: RunState, status: str, stats, message: str | None) -> bool:
    """Record the run's end; False if the database would not take it (the run stays `running`)."""
    engine = db.make_engine(cfg.database_url)
    try:
        with engine.begin() as conn:
            now = dt.datetime.now(dt.UTC)
            values = {"status": status, "pages_ok": stats.pages_ok, "pages_failed": stats.pages_failed,
                      "message": message, "finished_at": now}
            written = conn.execute(select(schema.runs.c.rows_written)
                                   .where(schema.runs.c.id == state.run_id)).scalar()
            # the writer's count, or ours if higher — unless the run failed: then rows parsed may never
            # have been committed, and only the database's count is true
            values["rows_written"] = (written or 0) if status == "failed" else max(written or 0, stats.rows)
            # Page counts from the frontier, the committed truth (the coordinator's own tally can count a
            # page twice when a writer recovery re-queued a page that was in flight)
            frontier = schema.frontier
            by_state = dict(conn.execute(select(frontier.c.state, func.count()).where(frontier.c.run_id == state.run_id)
                                         .group_by(frontier.c.state)).all())
            if by_state:
                stats.pages_ok, stats.pages_failed = by_state.get("done", 0), by_state.get("failed", 0)
                values.update(pages_ok=stats.pages_ok, pages_failed=stats.pages_failed)
            values.update(_history(conn, cfg, state, status == "succeeded", now))
            conn.execute(update(schema.runs).where(schema.runs.c.id == state.run_id).values(**values))
            if status == "succeeded":
                _after_success(conn, cfg, state.run_id)  # before compaction: the cursor reads the frontier
            compact(conn, state.run_id, status)  # a succeeded run's frontier is done with (etl/compact.py)
        return True
    except Exception as exc:  # the database is gone: the run stays 'running' and will be resumed
        log.error("could not record the end of run %d: %s", state.run_id, str(exc).splitlines()[0])
        return False
    finally:
        engine.dispose()


def _after_success(conn, cfg: Config, run_id: int) -> None:
    """A run that succeeded moves its sql source's cursor (etl/sources/sql_cursor.py). Only if it read the
    whole news table may it sweep the mentions of articles it did not see: an incremental run read only
    what was new or changed, and the articles it skipped are not gone."""
    from etl.sources.sql_cursor import advance
    from etl.stocks.store import sweep_unseen

    if advance(conn, cfg, run_id):
        sweep_unseen(conn, cfg, run_id)


def _history(conn, cfg: Config, state: RunState, complete: bool, now: dt.datetime) -> dict[str, Any]:
    """The run's history counts for `runs` (and state.history for the summary); delistings if complete."""
    from etl import history

    target = targets.resolve(cfg.target)
    if target.history is None:
        return {}
    counts = history.finish(conn, target, state.run_id, cfg.job, history.delisting_scope(cfg), complete, now)
    state.history = counts
    return {"rows_new": counts.new, "rows_changed": counts.changed, "rows_unchanged": counts.unchanged,
            "rows_delisted": counts.delisted, "rows_relisted": counts.relisted}

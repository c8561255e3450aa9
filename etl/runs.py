"""Run bookkeeping done by the coordinator while no writer runs: open (or resume) a run, close it.

Resume rule: the newest run of the same job whose status is `running` (the process died), `interrupted`
(SIGINT/SIGTERM) or `failed` with pages still pending (the database stayed away, the writer kept dying) is
continued — its frontier's pending entries are fetched again — unless `--fresh` is given or the config
changed meaning (different digest), in which case a new run starts.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sqlalchemy import func, insert, select, text, update

from etl import db, schema
from etl.config import Config, mask_url
from etl.items import Request

log = logging.getLogger("etl.runs")


@dataclass
class RunState:
    run_id: int
    resumed: bool = False
    pending: list[Request] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)  # hash() of every URL in the frontier (this process only)
    pages_ok: int = 0
    pages_failed: int = 0
    rows_before: int = 0
    interrupted: bool = False
    status: str = "running"  # how the run ended, as recorded in `runs` (set by run_job)


def _start_demo(cfg: Config):
    import os

    from etl.demo.server import DemoServer
    from etl.demo.site import SiteOptions

    demo = dict(cfg.demo or {})
    news = demo.pop("news", None)
    saved = os.environ.get("ETL_DEMO_NEWS")
    if news is not None:  # the server process reads the news section's size from its environment
        os.environ["ETL_DEMO_NEWS"] = str(news)
    try:
        server = DemoServer(SiteOptions(**demo), extra_apps=("etl.demo.news:app",))
        return server, server.start()
    finally:
        if saved is None:
            os.environ.pop("ETL_DEMO_NEWS", None)
        else:
            os.environ["ETL_DEMO_NEWS"] = saved


def _sql_ranges(cfg: Config, engine) -> list[Request]:
    """Chunk boundaries every `chunk_rows` keys (window function: works for any sortable key type)."""
    src = cfg.sql
    where = f" WHERE {src.where}" if src.where else ""
    query = text(f"SELECT k FROM (SELECT {src.key} AS k, ROW_NUMBER() OVER (ORDER BY {src.key}) AS rn "
                 f"FROM {src.table}{where}) AS numbered WHERE (rn - 1) % :chunk = 0 ORDER BY k")
    with engine.connect() as conn:
        bounds = [row[0] for row in conn.execute(query, {"chunk": src.chunk_rows})]
    return [Request(f"sql:{src.table}:{lo}", "rows", {"lo": lo, "hi": bounds[i + 1] if i + 1 < len(bounds) else None})
            for i, lo in enumerate(bounds)]


def _load_stocks(engine) -> None:
    from etl.stocks.dictionary import load_stocks
    from etl.write import upsert_statement

    rows = [{"code": s.code, "name": s.name, "exchange": s.exchange, "listed_date": s.listed_date,
             "aliases": json.dumps(list(s.aliases), ensure_ascii=False)} for s in load_stocks()]
    with engine.begin() as conn:
        conn.execute(upsert_statement(engine, "stocks"), rows)


def open_run(cfg: Config, fresh: bool) -> tuple[RunState, tuple[str, ...], dict | None, Callable[[], None]]:
    db.upgrade(cfg.database_url)  # raises DatabaseError with a one-line message
    server, base_url = (None, None)
    start_urls = cfg.start_urls
    if cfg.demo is not None and cfg.source_type == "http":
        server, base_url = _start_demo(cfg)
        start_urls = tuple(u.replace("{base_url}", base_url) for u in start_urls)
    domains = cfg.allowed_domains or tuple(sorted({urlsplit(u).hostname for u in start_urls if urlsplit(u).hostname}))
    if cfg.source_type == "sql" and cfg.demo and cfg.demo.get("news"):
        from etl.sources.news_seed import seed_news, table_exists

        src_url = cfg.sql.url or cfg.database_url
        if not table_exists(src_url, cfg.sql.table):
            log.info("no %s table yet: seeding %s synthetic articles ([source] demo.news)", cfg.sql.table,
                     f"{int(cfg.demo['news']):,}")
            seed_news(src_url, int(cfg.demo["news"]), table=cfg.sql.table)
    engine = db.make_engine(cfg.database_url)
    try:
        state = _resume_or_create(cfg, engine, fresh, start_urls, base_url)
        if cfg.transform.type == "stock_mentions":
            _load_stocks(engine)
    finally:
        engine.dispose()
    fetcher = None  # the fetch stage builds its Fetcher in its own process from these settings
    if cfg.source_type == "http":
        fetcher = dict(domains=domains, user_agent=cfg.user_agent, per_host=cfg.per_host, delay=cfg.delay,
                       connect_timeout=cfg.connect_timeout, read_timeout=cfg.read_timeout,
                       max_bytes=cfg.max_bytes, robots=cfg.robots, pool_size=cfg.fetch_threads,
                       total_timeout=cfg.total_timeout)
        if not cfg.robots:
            log.warning("robots.txt is NOT obeyed for this run ([politeness] robots = false)")

    def cleanup() -> None:
        if server is not None:
            server.stop()

    return state, domains, fetcher, cleanup


def _resume_or_create(cfg: Config, engine, fresh: bool, start_urls, base_url: str | None) -> RunState:
    runs, frontier = schema.runs, schema.frontier
    now = dt.datetime.now(dt.UTC)
    params = json.dumps({"base_url": base_url, "pid": os.getpid(), "host": socket.gethostname()})
    with engine.begin() as conn:
        row = conn.execute(select(runs).where(runs.c.job == cfg.job,
                                              runs.c.status.in_(("running", "interrupted", "failed")))
                           .order_by(runs.c.id.desc()).limit(1)).first()
        if row is not None and row.status == "failed" and not conn.execute(
                select(frontier.c.url).where(frontier.c.run_id == row.id, frontier.c.state == "pending").limit(1)).first():
            row = None  # failed with nothing left to do (every page failed): the next run starts over
        if row is not None and (fresh or row.config_digest != cfg.digest):
            reason = "--fresh" if fresh else "the config changed"
            conn.execute(update(runs).where(runs.c.id == row.id)
                         .values(status="abandoned", message=f"superseded by a new run ({reason})"))
            row = None
        if row is not None and row.status == "running":
            _refuse_if_alive(cfg, row)
        if row is not None:
            old_base = json.loads(row.params or "{}").get("base_url")
            if old_base and base_url and old_base != base_url:  # the demo server got a new port
                conn.execute(text("UPDATE frontier SET url = :new || substr(url, :n) WHERE run_id = :r "
                                  "AND substr(url, 1, :m) = :old"),
                             {"new": base_url, "n": len(old_base) + 1, "m": len(old_base), "old": old_base, "r": row.id})
            conn.execute(update(runs).where(runs.c.id == row.id).values(status="running", params=params))
            state = RunState(run_id=row.id, resumed=True, rows_before=row.rows_written)
            load_frontier(conn, state)
            log.info("resuming run %d of %s: %d pages still to do", row.id, cfg.job, len(state.pending))
            return state
        run_id = conn.execute(insert(runs).values(
            job=cfg.job, config_digest=cfg.digest, database=mask_url(cfg.database_url), started_at=now,
            status="running", pages_ok=0, pages_failed=0, rows_written=0, params=params)).inserted_primary_key[0]
        if cfg.source_type == "sql":
            src_engine = db.make_engine(cfg.sql.url) if cfg.sql.url else engine
            requests = _sql_ranges(cfg, src_engine)
        else:
            first_kind = next(iter(cfg.pages))
            requests = [Request(u, first_kind, {}) for u in dict.fromkeys(start_urls)]
        if requests:
            conn.execute(insert(frontier), [{"run_id": run_id, "url": r.url, "kind": r.kind,
                                             "meta": r.meta_json(), "state": "pending"} for r in requests])
        return RunState(run_id=run_id, pending=requests, seen={hash(r.url) for r in requests})


def _refuse_if_alive(cfg: Config, row) -> None:
    """A run marked `running` is resumed only if its process is gone: two overlapping cron runs of one
    job must not both work the same frontier."""
    params = json.loads(row.params or "{}")
    pid, host = params.get("pid"), params.get("host")
    if not pid or host != socket.gethostname() or pid == os.getpid():
        return
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return  # it died (crash, kill -9, reboot): resume
    except PermissionError:
        pass  # alive, owned by someone else
    try:
        with open(f"/proc/{int(pid)}/cmdline", "rb") as fh:
            if b"etl" not in fh.read():
                return  # the pid was reused by an unrelated process
    except OSError:
        pass
    raise db.DatabaseError(f"job {cfg.job!r} is already running (run {row.id}, pid {pid}); "
                           "wait for it or stop it first")


def load_frontier(conn, state: RunState) -> None:
    """Fill state from the database: every URL seen, the pending ones, and page counts by outcome."""
    frontier = schema.frontier
    state.seen, state.pending, state.pages_ok, state.pages_failed = set(), [], 0, 0
    for url, kind, meta, st in conn.execute(select(frontier.c.url, frontier.c.kind, frontier.c.meta, frontier.c.state)
                                            .where(frontier.c.run_id == state.run_id)):
        state.seen.add(hash(url))
        if st == "pending":
            state.pending.append(Request.from_frontier(url, kind, meta))
        elif st == "done":
            state.pages_ok += 1
        else:
            state.pages_failed += 1


def read_pending(cfg: Config, run_id: int, limit: int) -> list[Request]:
    """Pending frontier entries, detail pages first (they finish listings), at most `limit`."""
    frontier = schema.frontier
    engine = db.make_engine(cfg.database_url)
    try:
        with engine.connect() as conn:
            detail = cfg.items.detail.kind if cfg.items and cfg.items.detail else ""
            rows = conn.execute(select(frontier.c.url, frontier.c.kind, frontier.c.meta)
                                .where(frontier.c.run_id == run_id, frontier.c.state == "pending")
                                .order_by(frontier.c.kind != detail).limit(limit)).all()
        return [Request.from_frontier(url, kind, meta) for url, kind, meta in rows]
    finally:
        engine.dispose()


def reload_state(cfg: Config, state: RunState) -> None:
    """After losing the writer: the database is the truth about what was committed."""
    engine = db.make_engine(cfg.database_url)
    try:
        with engine.connect() as conn:
            load_frontier(conn, state)
            state.rows_before = conn.execute(select(schema.runs.c.rows_written)
                                             .where(schema.runs.c.id == state.run_id)).scalar() or 0
    finally:
        engine.dispose()


def finish_run(cfg: Config, state: RunState, status: str, stats, message: str | None) -> None:
    engine = db.make_engine(cfg.database_url)
    try:
        with engine.begin() as conn:
            values = {"status": status, "pages_ok": stats.pages_ok, "pages_failed": stats.pages_failed,
                      "message": message, "finished_at": dt.datetime.now(dt.UTC)}
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
            conn.execute(update(schema.runs).where(schema.runs.c.id == state.run_id).values(**values))
    except Exception as exc:  # the database is gone: the run stays 'running' and will be resumed
        log.error("could not record the end of run %d: %s", state.run_id, str(exc).splitlines()[0])
    finally:
        engine.dispose()

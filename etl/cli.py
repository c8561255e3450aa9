"""Command line: `etl run [CONFIG] [--set k=v …] [--db URL]`, `etl worker CONFIG`, `etl db upgrade`, `etl demo …`, `etl stocks …`.

Exit codes: 0 done; 1 done but some pages failed (see the failures table); 2 a config or environment
problem (nothing was written); 3 the run failed (database or writer gone); 130 interrupted (resumable).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from importlib import resources
from pathlib import Path

EXIT_OK, EXIT_PARTIAL, EXIT_CONFIG, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def resolve_config(name: str | None) -> str:
    """A path, or the name of a bundled config (demo, news-stocks, news-site)."""
    name = name or "config/demo.toml"
    if Path(name).exists():
        return name
    stem = Path(name).name.removesuffix(".toml")
    bundled = resources.files("etl.configs") / f"{stem}.toml"
    if bundled.is_file():
        return str(bundled)
    return name  # let the loader report it missing


def cmd_run(args: argparse.Namespace) -> int:
    from etl import config as config_mod
    from etl.db import DatabaseError
    from etl.pipeline import NOTHING_SUCCEEDED, RunFailed, run_job
    from etl.progress import Progress

    try:
        cfg = config_mod.load(resolve_config(args.config), args.set or [], args.db)
    except config_mod.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    started = time.monotonic()
    try:
        state, stats = run_job(cfg, fresh=args.fresh, progress=Progress(enabled=not args.quiet), full=args.full)
    except (DatabaseError, config_mod.ConfigError) as exc:  # the database, or a plugin found wanting at start
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except RunFailed as exc:
        print(f"error: run failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    elapsed = time.monotonic() - started
    pages = stats.pages_ok + stats.pages_failed
    by_status = ", ".join(f"{k}: {v:,}" for k, v in sorted(stats.by_status.items()))
    interrupted = _interrupted(state)
    nothing = state.status == "failed"  # every page failed or every row was refused (run_job decided)
    status = "interrupted (run again to resume)" if interrupted else "failed" if nothing else (
        "succeeded" if state.status == "succeeded" else "partial: " + (
            stats.no_rows_because if stats.no_rows_because else
            stats.cut_short if stats.cut_short and not stats.failures else
            f"{stats.failures:,} failures (see the failures table)"))
    from etl.sources import source_class

    kind = source_class(cfg.source_type)
    unit = kind.unit
    detail = f" [{by_status}]" if kind.fetches else ""
    skipped = f"; list items skipped by rule: {stats.skipped:,}" if kind.fetches else ""
    if kind.fetches and stats.keyless:
        skipped += f", without a key or detail link: {stats.keyless:,}"
    now = sum(stats.by_status.values())  # this invocation's pages; the other counts are the whole run's
    if state.resumed:  # the status breakdown and skips were counted by this invocation only: say so
        counted = (f"  {unit}: {pages:,} in the whole run ({stats.pages_ok:,} ok, {stats.pages_failed:,} failed); "
                   f"this session {now:,}{detail} at {now / elapsed if elapsed else 0:,.0f} {unit}/s\n"
                   f"  rows written: {stats.rows:,} into {cfg.table} (whole run){skipped} (this session)\n")
    else:
        counted = (f"  {unit}: {pages:,} ({stats.pages_ok:,} ok, {stats.pages_failed:,} failed){detail} "
                   f"{pages / elapsed if elapsed else 0:,.0f} {unit}/s\n"
                   f"  rows written: {stats.rows:,} into {cfg.table}{skipped}\n")
    print(f"run {state.run_id} of {cfg.job}{' (resumed)' if state.resumed else ''}: {status} in {elapsed:,.1f}s\n"
          f"{counted}{_history_line(state.history)}  database: {config_mod.mask_url(cfg.database_url)}")
    if interrupted:
        return EXIT_INTERRUPTED
    if nothing:
        print(f"error: run failed: {stats.failed_because or NOTHING_SUCCEEDED}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK if state.status == "succeeded" else EXIT_PARTIAL


def cmd_worker(args: argparse.Namespace) -> int:
    """One of the workers of a shared run (etl/shared/): exits 0 when nothing is left for it; the worker
    that closes the run exits as `etl run` would for the run (0, 1 partial, 3 failed)."""
    from etl import config as config_mod
    from etl.db import DatabaseError
    from etl.pipeline import RunFailed
    from etl.progress import Progress
    from etl.shared.worker import run_worker

    try:
        cfg = config_mod.load(resolve_config(args.config), args.set or [], args.db)
    except config_mod.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    started = time.monotonic()
    try:
        outcome = run_worker(cfg, Progress(enabled=not args.quiet))
    except (DatabaseError, config_mod.ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except RunFailed as exc:
        print(f"error: worker failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    elapsed = time.monotonic() - started
    stats, state = outcome.stats, outcome.state
    mine = sum(stats.by_status.values())
    if state.interrupted:
        ending = "interrupted (its pages go to the other workers, or to the next one started)"
    elif outcome.closed:
        ending = f"closed the run: {outcome.run_status}"
    else:
        ending = f"nothing left for it; the run is {outcome.run_status}"
    print(f"worker on run {state.run_id} of {cfg.job}: {ending} in {elapsed:,.1f}s\n"
          f"  this worker: {mine:,} pages at {mine / elapsed if elapsed else 0:,.0f}/s\n"
          f"{_history_line(state.history)}  database: {config_mod.mask_url(cfg.database_url)}")
    if state.interrupted:
        return EXIT_INTERRUPTED
    if outcome.closed:
        return {"succeeded": EXIT_OK, "failed": EXIT_FAILED}.get(outcome.run_status, EXIT_PARTIAL)
    return EXIT_OK


def _history_line(counts) -> str:
    """What the run did to a table that keeps history (etl/history.py); empty for one that keeps none."""
    if counts is None:
        return ""
    delisted = (f"{counts.delisted:,} delisted" if counts.delisted is not None else
                "none marked delisted (the run did not complete, so it cannot know what is gone)")
    return (f"  history: {counts.new:,} new, {counts.changed:,} changed, {counts.unchanged:,} unchanged, "
            f"{counts.relisted:,} relisted, {delisted}\n")


def _database_url(args: argparse.Namespace) -> str:
    """--db, else ETL_DATABASE_URL, else the config's default database (for commands that take no config)."""
    from etl.config.model import DatabaseSettings

    return args.db or os.environ.get("ETL_DATABASE_URL") or DatabaseSettings.url


def _interrupted(state) -> bool:
    return bool(state.interrupted)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from etl.db import DatabaseError, upgrade
    from etl.dialects.base import mask_url

    url = _database_url(args)
    try:
        head = upgrade(url)
    except DatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"{mask_url(url)} is at schema revision {head}")
    return EXIT_OK


def cmd_demo_serve(args: argparse.Namespace) -> int:
    from etl.demo.server import serve_forever
    from etl.demo.site import SiteOptions

    os.environ.setdefault("ETL_DEMO_NEWS", str(args.news))
    options = SiteOptions(listings=args.listings, seed=args.seed, encoding=args.encoding,
                          pagination=args.pagination, day=args.day)
    print(f"demo portal: /{args.city}/ershoufang/ (any city slug works), news: /news/, day {args.day}", flush=True)
    serve_forever(options, args.host, args.port, extra_apps=("etl.demo.news:app",))
    return EXIT_OK


def cmd_demo_truth(args: argparse.Namespace) -> int:
    """The generator's ground truth as JSON lines: what a correct crawl of the demo site must store."""
    from etl.demo.site import DemoSite, SiteOptions

    site = DemoSite(SiteOptions(listings=args.listings, seed=args.seed, encoding=args.encoding, day=args.day))
    return _print_rows(site.district_summary(args.city) if args.summary else site.truth(args.city))


def cmd_demo_changes(args: argparse.Namespace) -> int:
    """What differs between two days of the demo site, as JSON lines (etl/demo/days.py says how it changes)."""
    from etl.demo.days import site_changes
    from etl.demo.site import SiteOptions

    to_day = args.from_day + 1 if args.to_day is None else args.to_day
    if to_day < args.from_day:
        print(f"error: --to {to_day} is before --from {args.from_day}", file=sys.stderr)
        return EXIT_CONFIG
    return _print_rows(site_changes(SiteOptions(listings=args.listings, seed=args.seed), args.city,
                                    args.from_day, to_day))


def _print_rows(rows: list[dict]) -> int:
    import json

    try:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False, default=str))
        sys.stdout.flush()
    except BrokenPipeError:  # `| head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


def _day(text: str) -> int:
    """argparse type for a day of the demo site (a bad one is a usage error: exit 2)."""
    from etl.demo.days import check_day

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of days, got {text!r}") from None
    if problem := check_day(value):
        raise argparse.ArgumentTypeError(problem)
    return value


def cmd_seed_news(args: argparse.Namespace) -> int:
    from etl.dialects.base import mask_url
    from etl.sources.news_seed import seed_news

    url = _database_url(args)
    started = time.monotonic()
    n = seed_news(url, args.rows, table=args.table, seed=args.seed)
    print(f"seeded {n:,} articles into {args.table} at {mask_url(url)} in {time.monotonic() - started:.1f}s")
    return EXIT_OK


def cmd_export_news(args: argparse.Namespace) -> int:
    from etl.demo.export import export_news

    try:
        n = export_news(args.out, args.rows, seed=args.seed)
    except ImportError as exc:  # Parquet without pyarrow
        print(f"error: {exc.name or exc} is not installed: pip install 'etl-crawl[parquet]'", file=sys.stderr)
        return EXIT_CONFIG
    print(f"wrote {n:,} articles to {args.out} (columns art_id, pub_date, headline, content, sentiment)")
    return EXIT_OK


def cmd_stocks_refresh(args: argparse.Namespace) -> int:
    from etl.stocks.refresh import refresh

    try:
        n = refresh(args.source)
    except Exception as exc:
        print(f"error: could not refresh the stock list from {args.source}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"stock list rebuilt from {args.source}: {n:,} rows")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    """One self-contained HTML page of charts over what a job wrote (etl/report/); it only reads."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from etl.dialects.base import mask_url
    from etl.errors import one_line
    from etl.report import NothingToReport, build_report

    url = _database_url(args)
    try:
        parsed = make_url(url)
    except Exception as exc:
        print(f"error: not a database URL: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        print(f"error: no database at {mask_url(url)} (run a job first, or pass --db)", file=sys.stderr)
        return EXIT_CONFIG
    try:
        report = build_report(url, args.job, Path(args.output))
    except NothingToReport as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except SQLAlchemyError as exc:
        print(f"error: cannot read {mask_url(url)}: {one_line(exc, 500)}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"error: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"wrote {report.path}: {report.charts} charts; sections {', '.join(report.sections)}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="etl", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a job (default: config/demo.toml on the bundled demo site)")
    run.add_argument("config", nargs="?", help="config file, or a bundled name: demo, news-stocks, news-site")
    run.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="override a setting, e.g. --set city=sh or --set run.fetch_threads=32")
    run.add_argument("--db", help="database URL (overrides the config and ETL_DATABASE_URL)")
    run.add_argument("--fresh", action="store_true", help="start over instead of resuming an unfinished run")
    run.add_argument("--full", action="store_true",
                     help="a sql source reads every row, not only those added or changed since the last "
                          "successful run (starts a new run, like --fresh)")
    run.add_argument("--quiet", action="store_true", help="no progress or info lines: warnings, errors and the summary")
    run.set_defaults(func=cmd_run)

    worker = sub.add_parser("worker", help="work on a job's run together with other machines (PostgreSQL)")
    worker.add_argument("config", nargs="?", help="config file, or a bundled name (as for etl run)")
    worker.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting, as for etl run")
    worker.add_argument("--db", help="database URL (overrides the config and ETL_DATABASE_URL)")
    worker.add_argument("--quiet", action="store_true", help="no progress or info lines")
    worker.set_defaults(func=cmd_worker)

    dbp = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    up = dbp.add_parser("upgrade", help="apply the Alembic migrations")
    up.add_argument("--db", help="database URL (default: ETL_DATABASE_URL or sqlite:///etl.db)")
    up.set_defaults(func=cmd_db_upgrade)

    demo = sub.add_parser("demo", help="the bundled demo site").add_subparsers(dest="demo_command", required=True)
    serve = demo.add_parser("serve", help="serve the demo portal for a browser or another tool")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--city", default="bj", help="only used for the printed hint")
    serve.add_argument("--listings", type=int, default=5000, help="listings per city")
    serve.add_argument("--encoding", choices=["utf-8", "gbk"], default="utf-8")
    serve.add_argument("--pagination", choices=["json", "links", "next"], default="json")
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument("--news", type=int, default=2000, help="articles in the news section")
    serve.add_argument("--day", type=_day, default=0, help="which day of the site (0 = as generated)")
    serve.set_defaults(func=cmd_demo_serve)
    truth = demo.add_parser("truth", help="print what the demo site serves, as JSON lines")
    truth.add_argument("--city", default="bj")
    truth.add_argument("--listings", type=int, default=5000)
    truth.add_argument("--encoding", choices=["utf-8", "gbk"], default="gbk")
    truth.add_argument("--seed", type=int, default=0)
    truth.add_argument("--summary", action="store_true", help="per district: count and average unit price")
    truth.add_argument("--day", type=_day, default=0, help="which day of the site (0 = as generated)")
    truth.set_defaults(func=cmd_demo_truth)
    changes = demo.add_parser("changes", help="what changed on the demo site between two days, as JSON lines")
    changes.add_argument("--from", dest="from_day", type=_day, default=0, help="the earlier day (default 0)")
    changes.add_argument("--to", dest="to_day", type=_day, help="the later day (default: the day after --from)")
    changes.add_argument("--city", default="bj")
    changes.add_argument("--listings", type=int, default=5000, help="as config/demo.toml's [source] demo")
    changes.add_argument("--seed", type=int, default=0)
    changes.set_defaults(func=cmd_demo_changes)
    seed = demo.add_parser("seed-news", help="fill a news table with synthetic scored articles")
    seed.add_argument("--rows", type=int, required=True)
    seed.add_argument("--db", help="database URL (default: ETL_DATABASE_URL or sqlite:///etl.db)")
    seed.add_argument("--table", default="news")
    seed.add_argument("--seed", type=int, default=0)
    seed.set_defaults(func=cmd_seed_news)

    export = demo.add_parser("export-news", help="write the synthetic news as a CSV / JSON Lines / Parquet file")
    export.add_argument("--rows", type=int, required=True)
    export.add_argument("--out", required=True, help="news.csv, news.tsv, news.jsonl or news.parquet")
    export.add_argument("--seed", type=int, default=0)
    export.set_defaults(func=cmd_export_news)

    report = sub.add_parser("report", help="write an HTML page of charts over what a job wrote")
    report.add_argument("--db", help="database URL (default: ETL_DATABASE_URL or sqlite:///etl.db)")
    report.add_argument("--job", help="only this job's rows (default: every job in the database)")
    report.add_argument("-o", "--output", default="report.html", help="the HTML file (default report.html)")
    report.set_defaults(func=cmd_report)

    stocks = sub.add_parser("stocks", help="the A-share stock list").add_subparsers(dest="stocks_command",
                                                                                     required=True)
    ref = stocks.add_parser("refresh", help="rebuild the bundled stock list from a source")
    ref.add_argument("--source", choices=["adata", "exchanges"], default="adata")
    ref.set_defaults(func=cmd_stocks_refresh)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    if getattr(args, "quiet", False):  # cron mails and journals: warnings, errors and the summary only
        logging.getLogger("etl").setLevel(logging.WARNING)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

"""Day 0 then day 1 of the bench site: a full crawl, then the nightly re-run that fetches only the list
pages and the detail pages of new and changed listings (etl/incremental.py). Not a timed test: a report.

    python bench/incremental_runs.py [--listings 20000] [--db postgresql://…] [--days 0 1]

Both days are static trees (bench/site.py, cached) served by nginx, or without nginx the bundled demo
server (etl/demo/server.py, which renders pages in Python: slower on both days alike), crawled with `etl run bench/bench.toml` into one scratch database (SQLite in a temp dir unless --db):
the second run knows what the first stored. Requests = pages_ok + pages_failed of the run (every URL
the crawl asked for, robots.txt aside); detail requests are checked against `etl demo changes`.
Results: bench/results/incremental-YYYYMMDD-HHMMSS.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` as a namespace package
from bench.site import StaticServer, build, crawl_plan  # noqa: E402  (bench/site.py must not shadow stdlib site)
from etl.demo.days import site_changes  # noqa: E402
from etl.demo.server import DemoServer  # noqa: E402
from etl.demo.site import DemoSite, SiteOptions  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def server_for(listings: int, day: int):
    """nginx over the day's static tree; the demo server itself when nginx is not installed (Python's
    http.server, bench/site.py's other fallback, stalls under 16 concurrent connections)."""
    if shutil.which("nginx"):
        return StaticServer(build(listings, day=day))
    return DemoServer(SiteOptions(listings=listings, encoding="gbk", day=day))


def crawl(listings: int, day: int, db: str) -> dict:
    with server_for(listings, day) as server:
        kind = "nginx" if isinstance(server, StaticServer) else "demo server"
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "etl.cli", "run", str(HERE / "bench.toml"), "--db", db, "--quiet",
                        "--set", f"source.base_url={server.base_url}"], check=True)
        wall = time.monotonic() - started
    engine = create_engine(db)
    with engine.connect() as conn:
        run = conn.execute(text("SELECT id, status, pages_ok, pages_failed, rows_written FROM runs "
                                "ORDER BY id DESC LIMIT 1")).mappings().one()
        frontier = conn.execute(text("SELECT count(*) FROM frontier")).scalar()
        states = conn.execute(text("SELECT count(*) FROM url_state")).scalar()
        seen = conn.execute(text("SELECT count(*) FROM listings WHERE run_id = :r"), {"r": run["id"]}).scalar()
    engine.dispose()
    requests = run["pages_ok"] + run["pages_failed"]
    return {"status": run["status"], "requests": requests, "rows_written": run["rows_written"],
            "listings_seen": seen, "wall_s": round(wall, 2), "pages_per_s": round(requests / wall, 1),
            "frontier_rows_after": frontier, "url_state_rows": states, "server": kind}


def history_check(db: str, changes: list[dict]) -> dict:
    """The last run's listing_history versions and delistings against the site's own list of changes: a
    price change is a `changed` version at the new price, a new listing `new`, one back `relisted`, one gone
    delisted — and nothing else."""
    kinds = {"price": "changed", "new": "new", "relisted": "relisted"}
    want = {(c["listing_id"], kinds[c["change"]], round(float(c["new_total_price"]), 2))
            for c in changes if c["change"] in kinds}
    gone = {c["listing_id"] for c in changes if c["change"] == "removed"}
    engine = create_engine(db)
    with engine.connect() as conn:
        run = conn.execute(text("SELECT max(id) FROM runs")).scalar()
        got = {(r[0], r[1], round(float(r[2]), 2)) for r in conn.execute(
            text("SELECT listing_id, kind, total_price FROM listing_history WHERE run_id = :r"), {"r": run})}
        delisted = {r[0] for r in conn.execute(text("SELECT listing_id FROM listings WHERE delisted_at IS NOT NULL"))}
    engine.dispose()
    diff = sorted(want ^ got)[:20] + sorted(gone ^ delisted)[:20]
    return {"versions": len(got), "delisted": len(delisted), "exact": want == got and gone == delisted,
            "diff": [list(d) if isinstance(d, tuple) else d for d in diff]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listings", type=int, default=20000)
    ap.add_argument("--db", help="database URL (default: a scratch SQLite file)")
    ap.add_argument("--days", type=int, nargs=2, default=[0, 1], metavar=("FROM", "TO"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="etl-bench-incr-")
    db = args.db or f"sqlite:///{tmp}/etl.db"
    before, after = args.days
    runs = [crawl(args.listings, before, db), crawl(args.listings, after, db)]
    changes = site_changes(SiteOptions(listings=args.listings, encoding="gbk"), "bj", before, after)
    wanted = sum(c["change"] != "removed" for c in changes)
    lists = len(crawl_plan(DemoSite(SiteOptions(listings=args.listings, encoding="gbk", day=after)), "bj")[0])
    out = {"listings": args.listings, "days": args.days, "runs": runs, "list_pages": lists,
           "new_or_changed": wanted, "at_most": lists + wanted,
           "fewer_requests": round(runs[0]["requests"] / runs[1]["requests"], 1),
           "faster": round(runs[0]["wall_s"] / runs[1]["wall_s"], 1)}
    out["history"] = history_check(db, changes)
    print(f"{'run':<28}{'requests':>10}{'wall s':>9}{'pages/s':>9}{'seen':>8}{'frontier':>10}{'url_state':>10}")
    for label, r in zip((f"day {before} (full crawl)", f"day {after} (incremental)"), runs, strict=True):
        print(f"{label:<28}{r['requests']:>10,}{r['wall_s']:>9.1f}{r['pages_per_s']:>9,.0f}"
              f"{r['listings_seen']:>8,}{r['frontier_rows_after']:>10,}{r['url_state_rows']:>10,}")
    print(f"day {after}: list pages {lists:,} + new/changed {wanted:,} = {lists + wanted:,} at most; "
          f"{out['fewer_requests']}x fewer requests (target >= 10x), {out['faster']}x faster (target >= 5x)")
    h = out["history"]
    print(f"history of day {after}: {h['versions']:,} versions, {h['delisted']:,} delisted; "
          f"equal to `etl demo changes`: {h['exact']}" + ("" if h["exact"] else f" (differences: {h['diff'][:5]})"))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / time.strftime("incremental-%Y%m%d-%H%M%S.json")).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()

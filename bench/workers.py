"""Several workers on one run (etl worker), side by side in one invocation. Not a timed test: a report.

    python bench/workers.py [--listings 2000] [--threads 4] [--latency 0.05] [--pg postgresql://…/postgres]

1. Throughput: 1, 2, 3, 4 workers against the demo site whose every response takes `latency` seconds, each
   worker with `threads` fetch threads: pages/s should grow about N-fold while the site, not the machine,
   is the limit.
2. A per-host cap (`[politeness] per_host`) holds across the workers: the total stays at the cap's rate
   whatever N.
3. What one PostgreSQL sustains: simulated workers (processes) that only claim a batch of entries and
   mark them done, as a worker's coordinator and writer do, on a synthetic frontier; claims and commits
   per second as they grow to 8, 32 and 64.
Each scenario gets a scratch database on the server (--pg). Results: bench/results/workers-*.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
from etl.demo.server import DemoServer  # noqa: E402
from etl.demo.site import SiteOptions  # noqa: E402

RESULTS = HERE / "results"


def driver(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg2://", 1)


class Scratch:
    """A scratch database on the server, dropped afterwards."""

    def __init__(self, admin: str) -> None:
        self.admin = create_engine(driver(admin), isolation_level="AUTOCOMMIT")
        self.name = f"etl_bench_{uuid.uuid4().hex[:8]}"
        self.url = admin.rsplit("/", 1)[0] + "/" + self.name

    def __enter__(self) -> str:
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        return self.url

    def __exit__(self, *exc) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


def crawl(base: str, db: str, workers: int, threads: int, per_host: int, config: Path) -> dict:
    subprocess.run([sys.executable, "-m", "etl.cli", "db", "upgrade", "--db", db], check=True, cwd=ROOT,
                   capture_output=True)
    argv = [sys.executable, "-m", "etl.cli", "worker", str(config), "--db", db, "--quiet",
            "--set", f"source.base_url={base}", "--set", f"run.fetch_threads={threads}",
            "--set", "run.parse_processes=1", "--set", f"politeness.per_host={per_host}"]
    started, cpu_before = time.monotonic(), _children_cpu()
    procs = [subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(workers)]
    errors = [p.communicate()[1] for p in procs]
    wall, cpu = time.monotonic() - started, _children_cpu() - cpu_before  # the workers and their processes
    if any(p.returncode for p in procs):
        raise SystemExit("a worker failed:\n" + "\n".join(e[-1500:] for e in errors))
    engine = create_engine(driver(db))
    with engine.connect() as conn:
        run = conn.execute(text("SELECT pages_ok, status, extract(epoch FROM finished_at - started_at) FROM runs")).one()
        shares = [r[0] for r in conn.execute(text("SELECT pages_ok FROM workers ORDER BY pages_ok DESC"))]
    engine.dispose()
    pages, status, seconds = run
    return {"workers": workers, "threads": threads, "per_host": per_host, "pages": pages, "status": status,
            "run_seconds": round(float(seconds), 2), "wall_seconds": round(wall, 2),
            "pages_per_s": round(pages / float(seconds), 1), "pages_per_worker": shares,
            "worker_cpu_ms_per_page": round(cpu * 1000 / pages, 2)}


def _children_cpu() -> float:
    """CPU seconds of every finished child process (a worker and the processes it waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _simulated(db: str, run_id: int, batch: int, seconds: float, out) -> None:
    """One simulated worker: claim a batch, then mark it done with its lease checked, as fast as it can."""
    from etl.shared.claims import Claims
    from etl.shared.fence import held

    claims = Claims(db, run_id, f"sim-{os.getpid()}", 60.0)
    n_claims = n_commits = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = claims.claim(batch)
        n_claims += 1
        if not got:
            break
        keys = {c.request.key for c in got}
        with claims.engine.begin() as conn:
            mine = held(conn, run_id, claims.owner, keys)
            conn.execute(text("UPDATE frontier SET state = 'done' WHERE run_id = :r AND url_key = ANY(:k)"),
                         {"r": run_id, "k": list(mine)})
        n_commits += 1
    claims.close()
    out.put((n_claims, n_commits))


def database_capacity(admin: str, sizes: list[int], batch: int = 16, seconds: float = 8.0) -> list[dict]:
    rows = []
    for n in sizes:
        with Scratch(admin) as db:
            subprocess.run([sys.executable, "-m", "etl.cli", "db", "upgrade", "--db", db], check=True, cwd=ROOT,
                           capture_output=True)
            engine = create_engine(driver(db))
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO runs (id, job, config_digest, started_at, status, pages_ok, "
                                  "pages_failed, rows_written) VALUES (1, 'sim', 'x', now(), 'running', 0, 0, 0)"))
                conn.execute(text("INSERT INTO frontier (run_id, url_key, url, kind, meta, state, claims) "
                                  "SELECT 1, g, 'http://sim/' || g, 'detail', '{}', 'pending', 0 "
                                  "FROM generate_series(1, 400000) AS g"))
                conn.execute(text("ANALYZE frontier"))
            engine.dispose()
            ctx = mp.get_context("spawn")
            out = ctx.Queue(maxsize=n)
            procs = [ctx.Process(target=_simulated, args=(db, 1, batch, seconds, out)) for _ in range(n)]
            for p in procs:
                p.start()
            results = [out.get(timeout=seconds + 120) for _ in procs]
            for p in procs:
                p.join(timeout=30)
            claims = sum(r[0] for r in results)
            commits = sum(r[1] for r in results)
            rows.append({"simulated_workers": n, "batch": batch, "claims_per_s": round(claims / seconds),
                         "commits_per_s": round(commits / seconds), "entries_per_s": round(commits * batch / seconds)})
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listings", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--cap", type=int, default=4, help="per_host for the capped scenario")
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--sizes", default="8,32,64")
    args = ap.parse_args()
    os.environ["ETL_BENCH_LATENCY"] = str(args.latency)
    sys.path.insert(0, str(HERE))  # the server process imports latency_app from here
    RESULTS.mkdir(exist_ok=True)
    config = ROOT / "config/demo-shared.toml"
    out: dict = {"machine": f"{os.cpu_count()} cores", "latency_s": args.latency, "listings": args.listings}
    for key, per_host, counts in (("throughput", 64, (1, 2, 3, 4)), ("capped", args.cap, (1, 2, 4))):
        out[key] = []
        for n in counts:
            peak = Path(tempfile.gettempdir()) / f"etl-bench-peak-{os.getpid()}.txt"
            peak.unlink(missing_ok=True)
            os.environ["ETL_BENCH_PEAK"] = str(peak)  # a fresh server per scenario: its own peak
            with DemoServer(SiteOptions(listings=args.listings, encoding="gbk"), port=0,
                            extra_apps=("latency_app:app",)) as server, Scratch(args.pg) as db:
                out[key].append(crawl(server.base_url, db, n, args.threads, per_host, config))
            out[key][-1]["peak_in_flight"] = int(peak.read_text())
            print(key, out[key][-1], flush=True)
    out["database"] = database_capacity(args.pg, [int(s) for s in args.sizes.split(",")])
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"workers-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"results: {path}")


if __name__ == "__main__":
    main()

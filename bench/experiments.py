"""What-if runs of the crawl with small in-process patches (no edits to etl/), side by side with baseline.

Why: to back each suggested change to etl/ with a number before anyone writes it. Each variant runs
`etl.cli.main(["run", "bench/bench.toml", ...])` in a fresh interpreter after applying a patch to the
coordinator process (spawned children are unpatched, which is where these patches do not matter).

    python bench/experiments.py [--listings 20000] [--variants baseline,trust_env,switch1ms,...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import site as bsite  # noqa: E402
from bench.common import PY, metered, pg_scalar, scratch_db  # noqa: E402

PATCHES = {
    "baseline": "",
    # requests looks up ~/.netrc and proxy environment variables on every request unless trust_env is off
    "trust_env": """
import etl.fetch as f
_orig = f.Fetcher.session
def session(self):
    s = _orig(self)
    s.trust_env = False
    return s
f.Fetcher.session = session
""",
    # shorter GIL switch interval: fetch threads, pool manager and feeder threads hand off faster
    "switch1ms": "import sys; sys.setswitchinterval(0.001)",
    # the coordinator's loop wakes at most every 3 ms and handles whatever finished meanwhile in one go
    "batchwake": """
import time
import etl.parse.pool as p
_poll = p.ParsePool.poll
def poll(self, timeout, extra=None):
    time.sleep(0.003)
    return _poll(self, timeout, extra)
p.ParsePool.poll = poll
""",
    "threads32": "",
    "threads8": "",
    "threads12": "",
    "parse1": "",
    "parse3": "",
}
SETS = {"threads32": ["--set", "run.fetch_threads=32", "--set", "politeness.per_host=32"],
        "threads8": ["--set", "run.fetch_threads=8", "--set", "politeness.per_host=8"],
        "threads12": ["--set", "run.fetch_threads=12", "--set", "politeness.per_host=12"],
        "parse1": ["--set", "run.parse_processes=1"],
        "parse3": ["--set", "run.parse_processes=3"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listings", type=int, default=20000)
    ap.add_argument("--variants", default="baseline,trust_env,switch1ms,threads32,parse3")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    tree = bsite.build(args.listings, "gbk")
    results: dict[str, list[float]] = {}
    with bsite.StaticServer(tree) as srv:
        for _ in range(args.repeat):
            for v in args.variants.split(","):
                with scratch_db() as db:
                    argv = ["run", "bench/bench.toml", "--db", db, "--set", f"source.base_url={srv.base_url}",
                            "--quiet", *SETS.get(v, [])]
                    code = f"{PATCHES[v]}\nimport sys\nfrom etl.cli import main\nsys.exit(main({argv!r}))"
                    m = metered([PY, "-c", code])
                    pages = int(pg_scalar(db, "SELECT pages_ok + pages_failed FROM runs") or 0)
                    rows = int(pg_scalar(db, "SELECT count(*) FROM listings") or 0)
                results.setdefault(v, []).append(round(pages / m.wall, 1))
                print(f"{v:<12} {pages / m.wall:8.1f} pages/s  cpu {m.cpu:6.1f}s  rss {m.peak_rss_mb:6.0f} MB  "
                      f"rows {rows}", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()

"""Profile `etl run bench/bench.toml` with py-spy across the whole process tree and say where time goes.

Why: when the crawl misses a target, the table alone does not say whether fetch threads, the coordinator,
the parse workers or the writer are the limit. py-spy samples every process (`--subprocesses`), and this
script folds the samples by role (coordinator main thread and its sender/feeder threads, the fetch
process's threads, parse processes, writer) and lists the hottest frames of each. `--idle` keeps blocked threads so that
"waiting for work" is visible as such (frames ending in a queue/lock wait).

    python bench/profile.py [--listings 20000] [--rate 50] [--set run.engine=bs4 ...]
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import site as bsite  # noqa: E402
from bench.common import PY, pg_scalar, scratch_db  # noqa: E402

WAITS = ("wait (", "select (", "Condition.wait", "Queue.get", "_recv (", "SemLock.__enter__", "acquire",
         "_worker (concurrent/futures/thread.py", "_sender (etl/parse/pool.py", "send (etl/fetch/stage.py")


def role(stack: str) -> str:
    """Which part of the pipeline a sampled stack belongs to (etl/pipeline.py's processes and threads)."""
    if "writer_main" in stack:
        return "writer process"
    if "_worker_main (etl/parse/pool.py" in stack:
        return "parse process"
    if "_stage_main.<locals>.send (etl/fetch/stage.py" in stack:
        return "fetch process: sender thread"
    if "_stage_main (etl/fetch/stage.py" in stack or "concurrent/futures/thread.py" in stack:  # its pool threads
        return "fetch process: threads"
    if "resource_tracker" in stack:
        return "other child"
    if "_sender (etl/parse/pool.py" in stack:
        return "coordinator: parse sender threads"
    if "_feed (multiprocessing/queues.py" in stack:
        return "coordinator: writer queue feeder thread"
    if "MainThread" in stack or "Coordinator" in stack:
        return "coordinator: main thread"
    return "coordinator: other"


def summarize(raw: Path, top: int = 12) -> str:
    """Fold py-spy raw (collapsed) stacks by role: share of samples, busy vs waiting, hottest frames."""
    total: collections.Counter[str] = collections.Counter()
    waiting: collections.Counter[str] = collections.Counter()
    incl: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        r = role(stack)
        total[r] += count
        if frames and any(w in frames[-1] for w in WAITS):
            waiting[r] += count
        for f in set(frames):
            incl[r][f] += count
    out = []
    for r, n in total.most_common():
        out.append(f"{r}: {n} samples, {100 * waiting[r] / n:.0f}% waiting")
        for f, c in incl[r].most_common(top + 8):
            if f.startswith(("<module>", "_run_", "spawn_main", "_main (", "BaseProcess", "Thread.", "main (etl")):
                continue
            out.append(f"    {100 * c / n:5.1f}%  {f}")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listings", type=int, default=20000)
    ap.add_argument("--encoding", default="gbk")
    ap.add_argument("--rate", type=int, default=50)
    ap.add_argument("--set", action="append", default=[], help="extra --set for etl run")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "profile.txt")
    args = ap.parse_args()
    pyspy = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    tree = bsite.build(args.listings, args.encoding)
    raw = args.out.with_suffix(".raw")
    with bsite.StaticServer(tree) as srv, scratch_db() as db:
        sets = [x for s in [f"source.base_url={srv.base_url}", *args.set] for x in ("--set", s)]
        r = subprocess.run([pyspy, "record", "--subprocesses", "--threads", "--idle", "-r", str(args.rate),
                            "--format", "raw", "-o", str(raw), "--", PY, "-m", "etl.cli", "run",
                            "bench/bench.toml", "--db", db, "--quiet", *sets],
                           capture_output=True, text=True, cwd=ROOT, check=False)
        rows = pg_scalar(db, "SELECT count(*) FROM listings")
    report = f"{r.stdout.strip()}\nrows: {rows}\n\n{summarize(raw)}\n"
    args.out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()

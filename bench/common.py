"""Shared helpers for the benchmark harness: process-tree metering and scratch PostgreSQL databases.

Why: every contender (our crawl, Scrapy, the naive Pool.map, the fetch-only run) is started as a
subprocess and metered the same way, so the ratios in the table compare like with like.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg2

ROOT = Path(__file__).resolve().parent.parent
PY = os.environ.get("BENCH_PYTHON", sys.executable)
PG_ADMIN = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclass
class Metered:
    """What one metered subprocess cost: wall seconds, CPU seconds of the whole tree, peak summed RSS."""

    wall: float
    cpu: float
    peak_rss_mb: float
    returncode: int
    stdout: str = ""
    stderr: str = ""
    extra: dict = field(default_factory=dict)


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def metered(cmd: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 1800,
            cwd: Path = ROOT, interval: float = 0.2) -> Metered:
    """Run cmd, sampling the summed RSS of its process tree every `interval` s (max of the sum), and take
    CPU (user+sys) of the whole tree from RUSAGE_CHILDREN: every descendant that was waited for counts."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    full_env = {**os.environ, **(env or {})}
    t0 = time.perf_counter()
    popen = subprocess.Popen(list(cmd), cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    proc = psutil.Process(popen.pid)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(proc))
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out, err = popen.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        popen.kill()
        out, err = popen.communicate()
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Metered(wall, cpu, peak / 2**20, popen.returncode, out, err)


@contextmanager
def scratch_db(prefix: str = "etlbench") -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards (WITH (FORCE): stray connections do not block)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(PG_ADMIN)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        base = PG_ADMIN.rsplit("/", 1)[0]
        yield f"{base}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def pg_scalar(url: str, sql: str) -> object:
    """One value from one query (row counts, run counters)."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone()
            return row[0] if row else None
    finally:
        conn.close()


SPIN = "import time\nt = time.perf_counter()\nx = 0\nfor i in range(8_000_000): x += i\nprint(time.perf_counter() - t)"


def parallel_efficiency(trials: int = 3) -> dict[str, float]:
    """How much of a second core the machine really gives: a CPU-bound Python loop alone, then two copies
    side by side; efficiency = alone / paired (1.0: two whole cores; ~0.7: shared or hyper-threaded vCPUs).
    Why: the crawl needs both cores while the fetch ceiling needs one, so this explains most of how the
    crawl/ceiling ratio moves from one machine to another."""
    def spin(n: int) -> list[float]:
        procs = [subprocess.Popen([sys.executable, "-c", SPIN], stdout=subprocess.PIPE, text=True) for _ in range(n)]
        return [float(p.communicate(timeout=120)[0]) for p in procs]

    alone, paired = [], []
    for _ in range(trials):  # alternately, so both see the same drift
        alone += spin(1)
        paired += spin(2)
    a, p = statistics.median(alone), statistics.median(paired)
    return {"alone_s": round(a, 3), "paired_s": round(p, 3), "efficiency": round(a / p, 2)}

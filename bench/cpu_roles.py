"""CPU per page by role, for one crawl: coordinator, fetch process, parse processes, writer, PostgreSQL, nginx.

Why: on 2 cores the crawl is bounded by the CPU all of these spend together, not by any one of them, so
the question "what to make cheaper" is answered by milliseconds of CPU per page for each role, with
the server side (PostgreSQL backends, nginx) counted too. psutil samples every process every 0.1 s and
keeps the last reading of each, so processes that exit mid-run still count (up to the last 0.1 s).

    python bench/cpu_roles.py [--listings 20000] [--fetch-only] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import site as bsite  # noqa: E402
from bench.common import PY, pg_scalar, scratch_db  # noqa: E402


def _cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def _roles(root: psutil.Process) -> dict[int, str]:
    """The fetch process is the child with a thread pool, the writer the one talking to PostgreSQL."""
    roles = {root.pid: "coordinator"}
    try:
        kids = root.children(recursive=True)
    except psutil.Error:
        return roles
    for kid in kids:
        try:
            cmd = " ".join(kid.cmdline())
            threads = kid.num_threads()
            pg = any(c.raddr and c.raddr[1] == 5432 for c in kid.net_connections("tcp"))
        except psutil.Error:
            continue
        if "resource_tracker" in cmd:
            roles[kid.pid] = "other"
        elif threads > 4:
            roles[kid.pid] = "fetch"
        elif pg:
            roles[kid.pid] = "writer"
        else:
            roles[kid.pid] = "parse"
    return roles


def measure(cmd: list[str]) -> tuple[float, dict[str, float], subprocess.CompletedProcess]:
    servers = {p.pid: p for p in psutil.process_iter(["name"]) if p.info["name"] in ("postgres", "nginx")}
    base = {pid: _cpu(p) for pid, p in servers.items()}
    last: dict[int, tuple[str, float]] = {}
    done = threading.Event()
    t0 = time.perf_counter()
    popen = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(popen.pid)

    def sample() -> None:
        roles: dict[int, str] = {}
        while not done.is_set():
            fresh = _roles(root)
            roles.update({pid: r for pid, r in fresh.items() if roles.get(pid) not in ("fetch", "writer")})
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                procs = []
            for p in procs:
                try:
                    last[p.pid] = (roles.get(p.pid, "?"), _cpu(p))
                except psutil.Error:
                    pass
            for p in psutil.process_iter(["name"]):
                if p.info["name"] in ("postgres", "nginx"):
                    try:
                        last[p.pid] = (p.info["name"], _cpu(p) - base.get(p.pid, 0.0))
                    except psutil.Error:
                        pass
            done.wait(0.1)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = popen.communicate()
    wall = time.perf_counter() - t0
    done.set()
    th.join()
    by_role: dict[str, float] = collections.defaultdict(float)
    for _pid, (r, cpu) in last.items():
        by_role[r] += cpu
    return wall, dict(by_role), subprocess.CompletedProcess(cmd, popen.returncode, out, err)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listings", type=int, default=20000)
    ap.add_argument("--fetch-only", action="store_true", help="bench/fetch_only.py instead of the crawl")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--fetch-args", action="append", default=[], help="passed to bench/fetch_only.py, e.g. --fetch-args=--stage")
    args = ap.parse_args()
    os.chdir(ROOT)
    tree = bsite.build(args.listings, "gbk")
    with bsite.StaticServer(tree) as srv, scratch_db() as db:
        if args.fetch_only:
            urls = Path("/tmp/etl-cpu-roles-urls.txt")
            urls.write_text("\n".join(tree.all_paths) + "\n")
            cmd = [PY, "bench/fetch_only.py", srv.base_url, str(urls), *args.fetch_args]
        else:
            cmd = [PY, "-m", "etl.cli", "run", "bench/bench.toml", "--db", db, "--set",
                   f"source.base_url={srv.base_url}", "--quiet"]
            for s in args.set:
                cmd += ["--set", s]
        wall, roles, proc = measure(cmd)
        if proc.returncode != 0:
            print(proc.stderr[-2000:])
        pages = len(tree.all_paths)
        if not args.fetch_only:
            pages = int(pg_scalar(db, "SELECT pages_ok + pages_failed FROM runs ORDER BY id DESC LIMIT 1") or 0)
    total = sum(roles.values())
    me = psutil.Process().cpu_times()
    print(f"(this sampler: {me.user + me.system:.1f} s CPU)")
    print(f"{pages:,} pages in {wall:.1f} s = {pages / wall:.0f} pages/s; CPU {total:.1f} s "
          f"({total / wall:.2f} cores), {1000 * total / pages:.2f} ms/page")
    for r, cpu in sorted(roles.items(), key=lambda kv: -kv[1]):
        print(f"  {r:12s} {cpu:7.1f} s  {1000 * cpu / pages:6.3f} ms/page")
    print(json.dumps({"pages": pages, "wall": round(wall, 2), "roles": {k: round(v, 2) for k, v in roles.items()}}))


if __name__ == "__main__":
    main()

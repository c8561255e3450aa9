"""HTTP engines side by side: the fetch ceiling on requests and on libcurl (`[run] http`), in one run.

Why: which engine the fetch stage should use is a ratio, and the shared machine's speed drifts over
minutes, so the two engines run alternately (the order flips every repeat) against the same nginx-served
demo site (its real-size list and detail pages), and each figure is the median of its repeats; the ratio is
the median of the back-to-back pairs' ratios. Both ways bench/fetch_only.py runs: the fetch stage as the
crawl runs it (its own process, pages pickled back) and the bare Fetcher on threads (HTTP only); with
`--modes crawl` also the whole `etl run bench/bench.toml` into a scratch PostgreSQL database (as
bench/run.py's crawl line, rows checked). CPU is the process tree's user+sys (interpreter start included;
PostgreSQL and nginx not), per page fetched.

    python bench/http_engines.py [--listings 20000] [--repeat 5] [--modes stage,threads,crawl]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import site as bsite  # noqa: E402
from bench.run import RESULTS, etl_crawl, fetch_ceiling, git_state, log  # noqa: E402

ENGINES = ("requests", "curl")


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key)]
    return round(statistics.median(values), 3) if values else None


def one(mode: str, http: str, base_url: str, paths: list[str], listings: int) -> dict[str, Any]:
    if mode != "crawl":
        return fetch_ceiling(base_url, paths, stage=mode == "stage", http=http)
    run = etl_crawl(base_url, listings, extra=["--set", f"run.http={http}"])
    if not run["rows_ok"]:
        raise RuntimeError(f"the crawl on {http} wrote {run['rows']:,} rows, not {listings:,}")
    return {**run, "cpu_ms_page": round(1000 * run["cpu_s"] / run["pages"], 3) if run["pages"] else None}


def measure(base_url: str, paths: list[str], modes: list[str], repeat: int, listings: int) -> dict[str, Any]:
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {m: {e: [] for e in ENGINES} for m in modes}
    for i in range(repeat):
        for mode in modes:
            for http in ENGINES if i % 2 == 0 else ENGINES[::-1]:
                log(f"{mode} on {http} ({i + 1}/{repeat})")
                run = one(mode, http, base_url, paths, listings)
                if mode != "crawl" and run["pages"] != len(paths):
                    raise RuntimeError(f"{http} {mode}: {run['pages']} of {len(paths)} pages fetched")
                runs[mode][http].append(run)
    out: dict[str, Any] = {}
    for mode in modes:
        pairs = list(zip(runs[mode]["requests"], runs[mode]["curl"], strict=True))
        out[mode] = {
            **{http: {"pages_s": _median(runs[mode][http], "pages_s"),
                      "cpu_ms_page": _median(runs[mode][http], "cpu_ms_page"),
                      "runs_pages_s": [r["pages_s"] for r in runs[mode][http]],
                      "runs_cpu_ms_page": [r["cpu_ms_page"] for r in runs[mode][http]]} for http in ENGINES},
            "curl_vs_requests_pages_s": round(statistics.median(c["pages_s"] / r["pages_s"] for r, c in pairs), 3),
            "curl_vs_requests_cpu": round(statistics.median(c["cpu_ms_page"] / r["cpu_ms_page"] for r, c in pairs), 3),
        }
    return out


def table(r: dict[str, Any]) -> str:
    lines = [f"{'measurement':<40}{'pages/s':>9}{'CPU ms/page':>13}   runs (pages/s)"]
    names = {"stage": "fetch stage (as the crawl)", "threads": "Fetcher threads (HTTP only)",
             "crawl": "etl crawl (PostgreSQL)"}
    for mode, m in r["modes"].items():
        for http in ENGINES:
            d = m[http]
            runs = ", ".join(f"{v:,.0f}" for v in d["runs_pages_s"])
            lines.append(f"{names[mode] + ', ' + http:<40}{d['pages_s']:>9,.0f}{d['cpu_ms_page']:>13.3f}   {runs}")
        lines.append(f"{'  curl / requests (median of pairs)':<40}{m['curl_vs_requests_pages_s']:>8.2f}x"
                     f"{m['curl_vs_requests_cpu']:>12.2f}x")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listings", type=int, default=20000)
    ap.add_argument("--encoding", default="gbk", choices=["gbk", "utf-8"])
    ap.add_argument("--repeat", type=int, default=5, help="runs of each engine in each mode, alternately")
    ap.add_argument("--modes", default="stage,threads", help="any of stage, threads, crawl (comma-separated)")
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    tree = bsite.build(args.listings, args.encoding)
    sizes = [p.stat().st_size for p in tree.root.rglob("*.html")]
    r: dict[str, Any] = {"when": dt.datetime.now().isoformat(timespec="seconds"), "listings": args.listings,
                         "repeat": args.repeat, "git": git_state(), "pages": len(tree.all_paths),
                         "page_kb_mean": round(statistics.mean(sizes) / 1024, 1)}
    with bsite.StaticServer(tree) as srv:
        r["server"] = srv.kind
        t0 = time.perf_counter()
        r["modes"] = measure(srv.base_url, tree.all_paths, modes, args.repeat, args.listings)
        r["total_s"] = round(time.perf_counter() - t0, 1)
    r["table"] = table(r)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"http-engines-{stamp}.json").write_text(json.dumps(r, indent=2) + "\n")
    print(r["table"])
    print(f"\n({r['pages']:,} pages of {r['page_kb_mean']} KB on average, {srv.kind}; "
          f"results in bench/results/http-engines-{stamp}.json)")


if __name__ == "__main__":
    main()

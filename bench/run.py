"""The benchmark harness: one command, one table, every ratio measured side by side in one run.

Why: the machine is shared and noisy, so absolute numbers drift; ratios between contenders run back to
back against the same nginx-served static site are what the targets are stated in.

    python bench/run.py                   # full run: 20,000 listings, memory 5k vs 50k, news-stocks 230k
    python bench/run.py --quick           # smoke test: 5,000 listings, small samples
    python bench/run.py --listings 30000 --no-memory --no-news

Writes bench/results/latest.json and a timestamped copy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `bench` as a namespace package (bench/site.py must not shadow stdlib site)

from bench import site as bsite  # noqa: E402
from bench.common import PY, Metered, metered, parallel_efficiency, pg_scalar, scratch_db  # noqa: E402
from etl.config.model import RunSettings  # noqa: E402

RESULTS = ROOT / "bench" / "results"
ETL = [PY, "-m", "etl.cli"]
WRK_LUA = """\
local paths = {}
init = function(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  idx = math.random(#paths)
end
request = function()
  idx = idx % #paths + 1
  return wrk.format("GET", paths[idx])
end
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def write_lines(lines: list[str]) -> str:
    f = tempfile.NamedTemporaryFile("w", delete=False, suffix=".txt", prefix="etl-bench-")
    f.write("\n".join(lines) + "\n")
    f.close()
    return f.name


def server_ceiling(base_url: str, paths: list[str], seconds: int) -> dict[str, Any]:
    """wrk (2 threads, 16 connections = the crawl's concurrency) cycling over the crawl's own URLs."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return {"error": "wrk not installed"}
    lua = write_lines([WRK_LUA])
    plist = write_lines(paths)
    out = subprocess.run([wrk, "-t2", "-c16", f"-d{seconds}s", "-s", lua, base_url, "--", plist],
                         capture_output=True, text=True, check=False).stdout
    os.unlink(lua)
    os.unlink(plist)
    rps = re.search(r"Requests/sec:\s*([\d.]+)", out)
    mb = re.search(r"Transfer/sec:\s*([\d.]+)(\w+)", out)
    return {"pages_s": float(rps.group(1)) if rps else None,
            "transfer": f"{mb.group(1)}{mb.group(2)}/s" if mb else None, "tool": "wrk -t2 -c16"}


def _fields(m: Metered, pages: int, rows: int, **extra: Any) -> dict[str, Any]:
    return {"wall_s": round(m.wall, 2), "cpu_s": round(m.cpu, 2), "peak_rss_mb": round(m.peak_rss_mb, 1),
            "pages": pages, "rows": rows, "pages_s": round(pages / m.wall, 1) if m.wall else None,
            "rows_s": round(rows / m.wall, 1) if m.wall else None, "returncode": m.returncode, **extra}


def etl_crawl(base_url: str, expect_rows: int, engine: str = "selectolax", extra: list[str] = ()) -> dict[str, Any]:
    """`etl run bench/bench.toml` against nginx into a scratch PostgreSQL database, metered as a tree."""
    with scratch_db() as db:
        cmd = [*ETL, "run", "bench/bench.toml", "--db", db, "--set", f"source.base_url={base_url}",
               "--set", f"run.engine={engine}", "--quiet", *extra]
        m = metered(cmd)
        if m.returncode != 0:
            log(f"etl run exited {m.returncode}: {m.stderr[-1500:]}")
        pages = int(pg_scalar(db, "SELECT pages_ok + pages_failed FROM runs ORDER BY id DESC LIMIT 1") or 0)
        rows = int(pg_scalar(db, "SELECT count(*) FROM listings") or 0)
    return _fields(m, pages, rows, engine=engine, rows_ok=rows == expect_rows, summary=m.stdout.strip())


def scrapy_crawl(base_url: str, expect_rows: int) -> dict[str, Any]:
    from etl import db as etl_db

    with scratch_db() as db:
        etl_db.upgrade(db)
        m = metered([PY, "bench/scrapy_spider.py", base_url, db])
        if m.returncode != 0:
            log(f"scrapy exited {m.returncode}: {m.stderr[-1500:]}")
        stats = json.loads(m.stdout.strip().splitlines()[-1]) if m.stdout.strip() else {}
        rows = int(pg_scalar(db, "SELECT count(*) FROM listings") or 0)
    pages = max(0, int(stats.get("responses", 0)) - 1)  # minus robots.txt, which etl does not count either
    return _fields(m, pages, rows, rows_ok=rows == expect_rows, stats=stats)


def fetch_ceiling(base_url: str, paths: list[str], stage: bool, http: str = RunSettings.http) -> dict[str, Any]:
    """bench/fetch_only.py: the fetch stage's process as the crawl runs it (`stage`, kept saturated), or the
    Fetcher alone on threads in one process (HTTP only, no handoff), on the HTTP engine `http`."""
    urls = write_lines(paths)
    m = metered([PY, "bench/fetch_only.py", base_url, urls, "--http", http,
                 *(["--stage", "--window", "1000000"] if stage else [])])
    os.unlink(urls)
    out = json.loads(m.stdout.strip().splitlines()[-1])
    return _fields(m, out["ok"], 0, seconds_inner=round(out["seconds"], 2), http=http,
                   pages_s_inner=round(out["ok"] / out["seconds"], 1),
                   cpu_ms_page=round(1000 * m.cpu / out["ok"], 3) if out["ok"] else None)


def naive(base_url: str, tree: bsite.SiteTree, sample: int) -> dict[str, Any]:
    """Pool.map + requests + html.parser + INSERT per row, on leaf lists holding ~`sample` listings."""
    chosen, n = [], 0
    step = max(1, len(tree.leaf_lists) // max(1, sample // 30))
    for path, count in tree.leaf_lists[::step]:
        if n >= sample:
            break
        chosen.append(path)
        n += count
    from etl import db as etl_db

    with scratch_db() as db:
        etl_db.upgrade(db)
        lists = write_lines(chosen)
        m = metered([PY, "bench/naive.py", base_url, db, lists])
        os.unlink(lists)
        if m.returncode != 0:
            log(f"naive exited {m.returncode}: {m.stderr[-1500:]}")
        out = json.loads(m.stdout.strip().splitlines()[-1])
        rows = int(pg_scalar(db, "SELECT count(*) FROM listings") or 0)
    return _fields(m, out["pages"], rows, rows_ok=rows == n, sample_listings=n)


def writer(rows: int) -> dict[str, Any]:
    with scratch_db() as db:
        m = metered([PY, "bench/writer.py", db, "--rows", str(rows)])
    if m.returncode != 0:
        log(f"writer bench exited {m.returncode}: {m.stderr[-1500:]}")
        return {"error": m.stderr[-500:]}
    out = json.loads(m.stdout.strip().splitlines()[-1])
    n = out["rows"]
    return {**out, "copy_rows_s": round(n / out["copy_s"]), "upsert_rows_s": round(n / out["upsert_s"]),
            "writer_rows_s": round(n / out["writer_s"]), "rows_only_rows_s": round(n / out["rows_only_s"]),
            "rows_only_vs_copy": round(out["copy_s"] / out["rows_only_s"], 3),
            "writer_vs_copy": round(out["copy_s"] / out["writer_s"], 3),
            "upsert_vs_copy": round(out["copy_s"] / out["upsert_s"], 3),
            "rows_ok": out["rows_listings"] == n and out["rows_copy"] == n}


def memory(small: int, large: int, encoding: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in (small, large):
        tree = bsite.build(n, encoding)
        with bsite.StaticServer(tree) as srv:
            log(f"memory: etl crawl of {n:,} listings")
            out[str(n)] = etl_crawl(srv.base_url, n)
    a, b = out[str(small)]["peak_rss_mb"], out[str(large)]["peak_rss_mb"]
    out["ratio_large_small"] = round(b / a, 3) if a else None
    return out


def news(rows: int) -> dict[str, Any]:
    with scratch_db() as db:
        seed = metered([*ETL, "demo", "seed-news", "--rows", str(rows), "--db", db])
        run = metered([*ETL, "run", "config/news-stocks.toml", "--db", db, "--quiet"])
        if run.returncode != 0:
            log(f"news-stocks exited {run.returncode}: {run.stderr[-1500:]}")
        mentions = int(pg_scalar(db, "SELECT count(*) FROM stock_mentions") or 0)
    m = re.search(r"in ([\d,.]+)s", run.stdout)
    stocks = subprocess.run([PY, "bench/bench_stocks.py", "--json", str(RESULTS / "stocks.json")],
                            capture_output=True, text=True, cwd=ROOT, check=False)
    try:
        per_article = json.loads((RESULTS / "stocks.json").read_text())
    except (OSError, ValueError):
        per_article = {"error": stocks.stderr[-500:]}
    return {"articles": rows, "seed_s": round(seed.wall, 1), "wall_s": round(run.wall, 2),
            "job_s": float(m.group(1).replace(",", "")) if m else None, "cpu_s": round(run.cpu, 2),
            "peak_rss_mb": round(run.peak_rss_mb, 1), "mentions": mentions, "summary": run.stdout.strip(),
            "per_article": per_article}


def git_state() -> dict[str, Any]:
    """Which code was measured (read-only git queries): HEAD and whether etl/ had uncommitted edits."""
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], capture_output=True, text=True, cwd=ROOT, check=False).stdout.strip()
    return {"head": git("rev-parse", "--short", "HEAD"), "etl_dirty": bool(git("status", "--porcelain", "etl"))}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median pages/s (the lower middle one for an even count), with every run's figure."""
    ranked = sorted(runs, key=lambda d: d.get("pages_s") or 0)
    return {**ranked[(len(ranked) - 1) // 2], "runs_pages_s": [d.get("pages_s") for d in runs]}


def pair_median(r: dict[str, Any], key: str) -> float | None:
    values = [p[key] for p in r.get("pairs", []) if p.get(key)]
    return round(statistics.median(values), 3) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def table(r: dict[str, Any]) -> str:
    def row(name: str, d: dict | None, ratio: str = "") -> str:
        d = d or {}

        def f(key: str, fmt: str) -> str:
            v = d.get(key)
            width = int(re.sub(r"\D", "", fmt.split(",")[0].split(".")[0]) or 0)
            return format(v, fmt) if isinstance(v, int | float) else "-".rjust(width)
        return (f"{name:<36}{f('pages_s', '>9,.0f')}{f('rows_s', '>9,.0f')}{f('cpu_s', '>8.1f')}"
                f"{f('peak_rss_mb', '>13.0f')}   {ratio}")

    t = r["targets"]
    lines = [f"{'measurement':<36}{'pages/s':>9}{'rows/s':>9}{'CPU s':>8}{'peak RSS MB':>13}   ratio",
             row("server ceiling (wrk, nginx)", r.get("server")),
             row("fetch ceiling (etl fetch stage)", r.get("fetch")),
             row("  Fetcher threads alone (HTTP only)", r.get("fetch_http"))]
    if "etl" in r:
        lines.append(row("etl crawl (selectolax)", r["etl"],
                         f"{t.get('etl_vs_fetch') or 0:.2f} of fetch ceiling ({t.get('etl_vs_fetch_http') or 0:.2f} of HTTP only; "
                         "medians of pairs), "
                         f"{t.get('etl_vs_scrapy', 0):.2f}x scrapy"))
    if r.get("pairs"):
        pairs = r["pairs"]

        def fmt(key: str, spec: str) -> str:
            return ", ".join(format(p.get(key) or 0, spec) for p in pairs)
        lines.append(f"  (medians of {len(pairs)} alternating runs, pages/s: stage {fmt('fetch_pages_s', ',.0f')}; HTTP only "
                     f"{fmt('http_pages_s', ',.0f')}; etl {fmt('etl_pages_s', ',.0f')}; etl/stage {fmt('ratio', '.2f')}; "
                     f"etl/HTTP only {fmt('ratio_http', '.2f')})")
    if "etl_bs4" in r:
        lines.append(row("etl crawl (bs4)", r["etl_bs4"], f"{t.get('bs4_vs_scrapy', 0):.2f}x scrapy"))
    if "scrapy" in r:
        lines.append(row("scrapy", r["scrapy"]))
    if "naive" in r:
        lines.append(row(f"naive Pool.map+bs4+INSERT ({r['naive']['sample_listings']:,})", r["naive"],
                         f"etl is {t.get('etl_vs_naive', 0):.1f}x"))
    if "writer" in r and "copy_rows_s" in r["writer"]:
        w = r["writer"]
        lines.append(f"{'writer upsert path vs COPY (rows/s)':<36}{'':>9}{w['rows_only_rows_s']:>9,}{'':>21}   "
                     f"{w['rows_only_vs_copy']:.3f} (COPY {w['copy_rows_s']:,}/s)")
        lines.append(f"{'  + frontier bookkeeping per page':<36}{'':>9}{w['writer_rows_s']:>9,}{'':>21}   "
                     f"{w['writer_vs_copy']:.3f}")
        lines.append(f"{'  upsert_statement executemany':<36}{'':>9}{w['upsert_rows_s']:>9,}{'':>21}   "
                     f"{w['upsert_vs_copy']:.3f}")
    if "memory" in r:
        mem = r["memory"]
        keys = [k for k in mem if k.isdigit()]
        lines.append(f"{'memory ' + ' vs '.join(f'{int(k) // 1000}k' for k in keys):<36}{'':>26}"
                     f"{' / '.join(str(round(mem[k]['peak_rss_mb'])) for k in keys):>13}   "
                     f"{mem.get('ratio_large_small')}")
    if "news" in r:
        n = r["news"]
        pa = n.get("per_article", {})
        lines.append(f"{'news-stocks ' + format(n['articles'] // 1000) + 'k (s)':<36}{n['wall_s']:>9.1f}{'':>9}"
                     f"{n['cpu_s']:>8.1f}{n['peak_rss_mb']:>13.0f}   matcher {pa.get('pyahocorasick_speedup', '-')}x "
                     "naive loop")
    if "cores" in r:
        c = r["cores"]
        lines.append(f"machine: two CPU-bound processes side by side each run at {c['efficiency']:.2f} of the speed "
                     f"of one alone ({r.get('cpus')} vCPUs)")
    lines.append("")
    for name, ok in r["checks"].items():
        lines.append(f"{'PASS' if ok else 'MISS'}  {name}")
    return "\n".join(lines)


def evaluate(r: dict[str, Any], listings: int, memory_large: int, news_rows: int) -> None:
    """The ratios and PASS/MISS checks of a result (also re-run on a stored result by --rescore)."""
    e, s, f = r["etl"], r["scrapy"], r["fetch"]
    t = r["targets"] = {
        # Against the ceilings: the median of the back-to-back pairs' ratios (not the ratio of two medians
        # taken from different moments of a drifting machine).
        "etl_vs_scrapy": _ratio(e["pages_s"], s["pages_s"]), "etl_vs_fetch": pair_median(r, "ratio"),
        "etl_vs_naive": _ratio(e["pages_s"], r["naive"]["pages_s"]),
        "bs4_vs_scrapy": _ratio(r.get("etl_bs4", {}).get("pages_s"), s["pages_s"]),
        "fetch_vs_server": _ratio(f["pages_s"], r["server"].get("pages_s")),
        "etl_vs_fetch_http": pair_median(r, "ratio_http"),
    }
    checks = r["checks"] = {
        f"rows: etl {e['rows']:,}, scrapy {s['rows']:,} == {listings:,}": e["rows_ok"] and s["rows_ok"],
        f"etl crawl >= 3x scrapy pages/s ({t['etl_vs_scrapy']}x)": (t["etl_vs_scrapy"] or 0) >= 3,
        f"etl crawl >= 70% of fetch ceiling ({t['etl_vs_fetch']})": (t["etl_vs_fetch"] or 0) >= 0.7,
    }
    if "rows_only_vs_copy" in r["writer"]:  # the issue's measure: the writer's upsert path vs COPY
        ratio = r["writer"]["rows_only_vs_copy"]
        checks[f"writer upsert path >= 50% of COPY ({ratio})"] = ratio >= 0.5
    if "memory" in r:
        ratio = r["memory"]["ratio_large_small"] or 99
        checks[f"peak RSS {memory_large // 1000}k within 20% of 5k ({ratio})"] = ratio <= 1.2
    if "news" in r:
        checks[f"news-stocks {news_rows:,} <= 60 s ({r['news']['wall_s']} s)"] = r["news"]["wall_s"] <= 60


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listings", type=int, default=20000)
    ap.add_argument("--quick", action="store_true", help="5,000 listings, small samples, no memory run")
    ap.add_argument("--encoding", default="gbk", choices=["gbk", "utf-8"])
    ap.add_argument("--naive-listings", type=int, default=1500, help="listings in the naive sample")
    ap.add_argument("--writer-rows", type=int, default=100_000)
    ap.add_argument("--news-rows", type=int, default=230_000)
    ap.add_argument("--memory", action=argparse.BooleanOptionalAction, default=None,
                    help="5k vs 50k peak RSS (default: on, off with --quick)")
    ap.add_argument("--memory-large", type=int, default=50_000)
    ap.add_argument("--news", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--bs4", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--wrk-seconds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3, help="fetch ceiling and etl crawl, alternately, N times each")
    ap.add_argument("--http", default=RunSettings.http, choices=["requests", "curl"],
                    help="the HTTP engine of the fetch ceilings and etl crawls (bench/http_engines.py compares them)")
    ap.add_argument("--rescore", type=Path, help="recompute ratios, checks and table of a stored result file")
    args = ap.parse_args()
    if args.rescore:
        r = json.loads(args.rescore.read_text())
        evaluate(r, r["listings"], args.memory_large, r.get("news", {}).get("articles", args.news_rows))
        r["table"] = table(r)
        args.rescore.write_text(json.dumps(r, indent=2, ensure_ascii=False, default=str) + "\n")
        print(r["table"])
        return
    if args.quick:
        args.listings, args.naive_listings, args.writer_rows = 5000, 600, 20_000
        args.news_rows = min(args.news_rows, 20_000)
        args.memory = False if args.memory is None else args.memory
    args.memory = True if args.memory is None else args.memory
    os.chdir(ROOT)
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    r: dict[str, Any] = {"when": dt.datetime.now().isoformat(timespec="seconds"), "host": platform.node(),
                         "cpus": os.cpu_count(), "python": platform.python_version(),
                         "listings": args.listings, "encoding": args.encoding, "http": args.http,
                         "git": git_state()}
    log("cores: a CPU-bound loop alone vs two side by side")
    r["cores"] = parallel_efficiency()
    log(f"building the static site ({args.listings:,} listings, {args.encoding})")
    t0 = time.perf_counter()
    tree = bsite.build(args.listings, args.encoding)
    r["site"] = {"root": str(tree.root), "list_pages": len(tree.list_paths), "detail_pages": len(tree.detail_paths),
                 "build_s": round(time.perf_counter() - t0, 1)}
    fetches: list[dict[str, Any]] = []
    raw: list[dict[str, Any]] = []
    crawls: list[dict[str, Any]] = []
    with bsite.StaticServer(tree) as srv:
        r["site"]["server"] = srv.kind
        log(f"{srv.kind} at {srv.base_url}; wrk ceiling")
        r["server"] = server_ceiling(srv.base_url, tree.all_paths, args.wrk_seconds)
        # The machine is shared and its speed drifts over minutes: the ceiling and the crawl are measured
        # alternately, `--repeat` times each, and compared by their medians (every pair is kept too).
        for i in range(args.repeat):
            log(f"fetch ceiling: fetch stage ({i + 1}/{args.repeat})")
            fetches.append(fetch_ceiling(srv.base_url, tree.all_paths, stage=True, http=args.http))
            log(f"fetch ceiling: Fetcher threads, HTTP only ({i + 1}/{args.repeat})")
            raw.append(fetch_ceiling(srv.base_url, tree.all_paths, stage=False, http=args.http))
            log(f"etl crawl (selectolax) ({i + 1}/{args.repeat})")
            crawls.append(etl_crawl(srv.base_url, args.listings, extra=["--set", f"run.http={args.http}"]))
        r["fetch"], r["fetch_http"], r["etl"] = median_run(fetches), median_run(raw), median_run(crawls)
        r["pairs"] = [{"fetch_pages_s": f["pages_s"], "http_pages_s": h["pages_s"], "etl_pages_s": e["pages_s"],
                       "ratio": _ratio(e["pages_s"], f["pages_s"]), "ratio_http": _ratio(e["pages_s"], h["pages_s"])}
                      for f, h, e in zip(fetches, raw, crawls, strict=True)]
        log("scrapy")
        r["scrapy"] = scrapy_crawl(srv.base_url, args.listings)
        if args.bs4:
            log("etl crawl (bs4)")
            r["etl_bs4"] = etl_crawl(srv.base_url, args.listings, engine="bs4",
                                     extra=["--set", f"run.http={args.http}"])
        log(f"naive ({args.naive_listings:,} listings sample)")
        r["naive"] = naive(srv.base_url, tree, args.naive_listings)
    log(f"writer ({args.writer_rows:,} rows)")
    r["writer"] = writer(args.writer_rows)
    if args.memory:
        r["memory"] = memory(5000, args.memory_large, args.encoding)
    if args.news:
        log(f"news-stocks ({args.news_rows:,} articles)")
        r["news"] = news(args.news_rows)

    evaluate(r, args.listings, args.memory_large, args.news_rows)
    r["total_s"] = round(time.perf_counter() - started, 1)
    text = table(r)
    r["table"] = text
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for name in ("latest.json", f"run-{stamp}.json"):
        (RESULTS / name).write_text(json.dumps(r, indent=2, ensure_ascii=False, default=str) + "\n")
    print(text)
    print(f"\n(total {r['total_s']:.0f}s; results in bench/results/latest.json)")


if __name__ == "__main__":
    main()

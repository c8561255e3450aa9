"""Fetch ceiling: the crawl's exact URL list through etl's fetch stage alone (no parse, no write).

Why: the crawl cannot go faster than its fetch stage in one Python process; this tells how much of the
crawl's time is the crawl's own overhead (parse handoff, coordinator, writer) versus plain HTTP cost.
Two ways to run it:

  threads (default)  etl.fetch.Fetcher on a thread pool in this process, results dropped where they land:
                     HTTP alone, no handoff of any kind
  --stage            etl.fetch.FetchStage, the fetch process exactly as the crawl starts it (pages pickled
                     and sent back in bundles), with at most `--window` requests in flight (default
                     `--threads`, as the coordinator keeps it; bench/run.py keeps it saturated with a
                     huge window); this process takes the pages and drops them

    python bench/fetch_only.py BASE_URL URLS_FILE [--threads 16] [--stage] [--http curl]   # one JSON line

`--http` picks the HTTP engine (`[run] http`: requests or curl); bench/http_engines.py runs both.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import time
from concurrent.futures import ThreadPoolExecutor

from etl.config.model import FetchSettings, RunSettings
from etl.fetch import Fetcher, FetchStage
from etl.items import Fetched, Page, Request
from etl.urls import origin_domain


def threads(settings: FetchSettings, domains: tuple[str, ...], requests: list[Request], n: int,
            http: str = "requests") -> tuple[int, int]:
    fetcher = Fetcher(settings, domains, pool_size=n, http=http)

    def fetch(request: Request) -> tuple[int, int]:  # the page is dropped in the thread that fetched it:
        result = fetcher.fetch(request)  # pool.map keeps every result until its turn in the URL order
        return (1, len(result.body)) if isinstance(result, Page) else (0, 0)

    ok = nbytes = 0
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="fetch") as pool:
        for got, size in pool.map(fetch, requests):
            ok += got
            nbytes += size
    return ok, nbytes


def stage(settings: FetchSettings, domains: tuple[str, ...], requests: list[Request], n: int,
          window: int, http: str = "requests") -> tuple[int, int]:
    fetch = FetchStage(mp.get_context("spawn"), settings, domains, n, http=http)
    ok = nbytes = inflight = 0
    todo = iter(requests)
    try:
        while True:
            batch = list(itertools.islice(todo, window - inflight))
            if batch:
                fetch.submit(batch)
                inflight += len(batch)
            if not inflight:
                return ok, nbytes
            if not fetch.conn.poll(60):
                raise RuntimeError(f"the fetch stage sent nothing for 60 s with {inflight} requests in flight")
            for msg in fetch.results():
                inflight -= 1
                if type(msg) is Fetched:
                    ok += 1
                    nbytes += len(msg.payload)  # the pickled page, as the crawl forwards it
    finally:
        fetch.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base_url")
    ap.add_argument("urls_file")
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--stage", action="store_true", help="through FetchStage (its own process), as the crawl")
    ap.add_argument("--window", type=int, default=0, help="--stage: requests in flight (default: --threads)")
    ap.add_argument("--http", default=RunSettings.http, choices=["requests", "curl"],
                    help="the HTTP engine (default: the crawl's, [run] http)")
    args = ap.parse_args()
    paths = open(args.urls_file).read().split()
    base = args.base_url.rstrip("/")
    # the same settings `etl run bench/bench.toml` gives its Fetcher (config defaults + [run]/[politeness])
    settings = FetchSettings(per_host=16, max_bytes=10 * 2**20)
    domains = (origin_domain(base) or "",)
    requests = [Request(base + p, "detail" if p.endswith(".html") else "list") for p in paths]
    t0 = time.perf_counter()
    if args.stage:
        ok, nbytes = stage(settings, domains, requests, args.threads, args.window or args.threads, args.http)
    else:
        ok, nbytes = threads(settings, domains, requests, args.threads, args.http)
    wall = time.perf_counter() - t0
    print(json.dumps({"pages": len(requests), "ok": ok, "bytes": nbytes, "seconds": wall, "http": args.http}))


if __name__ == "__main__":
    main()

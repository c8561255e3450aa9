"""Fetch ceiling: the crawl's exact URL list through etl's fetch stage alone (no parse, no write).

Why: the crawl cannot go faster than its fetch stage in one Python process; this tells how much of the
crawl's time is the crawl's own overhead (parse handoff, coordinator, writer) versus plain HTTP cost.

    python bench/fetch_only.py BASE_URL URLS_FILE [--threads 16]   # prints one JSON line
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from etl.fetch import Fetcher
from etl.items import Page, Request


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base_url")
    ap.add_argument("urls_file")
    ap.add_argument("--threads", type=int, default=16)
    args = ap.parse_args()
    paths = open(args.urls_file).read().split()
    base = args.base_url.rstrip("/")
    # the same settings `etl run bench/bench.toml` gives its Fetcher (config defaults + [run]/[politeness])
    fetcher = Fetcher(domains=(urlsplit(base).hostname or "",), user_agent="etl-crawl/0.1 (+https://github.com/etl-crawl/etl-crawl)",
                      per_host=16,
                      delay=0.0, connect_timeout=5, read_timeout=20, max_bytes=10 * 2**20, robots=True,
                      pool_size=args.threads)
    requests = [Request(base + p, "detail" if p.endswith(".html") else "list") for p in paths]
    t0 = time.perf_counter()
    ok = nbytes = 0
    with ThreadPoolExecutor(max_workers=args.threads, thread_name_prefix="fetch") as pool:
        for result in pool.map(fetcher.fetch, requests):
            if isinstance(result, Page):
                ok += 1
                nbytes += len(result.body)
    wall = time.perf_counter() - t0
    print(json.dumps({"pages": len(requests), "ok": ok, "bytes": nbytes, "seconds": wall}))


if __name__ == "__main__":
    main()

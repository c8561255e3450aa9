"""Parse-engine benchmark: selectolax (lexbor) vs BeautifulSoup on realistic 40–80 KB portal pages.

Runs the real Extractor (config/demo.toml) over the demo site's list and detail pages with each engine,
in the same process, interleaved, and prints ms/page and the ratio.

    python bench/bench_parse.py [--pages 200] [--json bench/results/parse.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

from etl import config
from etl.demo.site import DemoSite, SiteOptions
from etl.items import Page, Request
from etl.parse.extract import Extractor

ROOT = Path(__file__).resolve().parent.parent


def pages(site: DemoSite, n: int) -> list[Page]:
    truth = site.truth("bj")
    out = []
    for i in range(n // 2):
        path = f"/bj/ershoufang/pg{i % 100 + 1}/"
        status, headers, body = site.render(path)
        out.append(Page(Request("http://demo.test" + path, "subdistrict", {"page": 2}), "http://demo.test" + path,
                        status, {k.lower(): v for k, v in headers.items()}, body))
        url = truth[i]["url"]
        status, headers, body = site.render(url)
        out.append(Page(Request("http://demo.test" + url, "detail", {"key": truth[i]["listing_id"], "raw": {}}),
                        "http://demo.test" + url, status, {k.lower(): v for k, v in headers.items()}, body))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    site = DemoSite(SiteOptions(listings=5000, encoding="gbk"))
    sample = pages(site, args.pages)
    kb = statistics.mean(len(p.body) for p in sample) / 1024
    times: dict[str, list[float]] = {"selectolax": [], "bs4": []}
    extractors = {e: Extractor(config.load(ROOT / "config/demo.toml", [f"run.engine={e}"], "sqlite://"),
                               ("demo.test",)) for e in times}
    for _ in range(args.rounds):
        for engine, ex in extractors.items():  # interleaved: both see the same machine noise
            t0 = time.perf_counter()
            for p in sample:
                ex.parse(p)
            times[engine].append((time.perf_counter() - t0) / len(sample) * 1000)
    best = {e: min(v) for e, v in times.items()}
    result = {"machine": platform.platform(), "pages": len(sample), "avg_page_kb": round(kb, 1),
              "ms_per_page": {e: round(v, 3) for e, v in best.items()},
              "bs4_over_selectolax": round(best["bs4"] / best["selectolax"], 1)}
    print(f"{len(sample)} pages, avg {kb:.0f} KB (list + detail, GBK), best of {args.rounds} rounds")
    for e, v in best.items():
        print(f"  {e:<11} {v:7.2f} ms/page")
    print(f"  selectolax is {result['bs4_over_selectolax']}x faster")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

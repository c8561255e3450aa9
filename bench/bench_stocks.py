"""Benchmark stock-mention matching: naive substring scan vs the Aho-Corasick matcher.

Why: the matcher runs once per article for ~230,000 articles inside worker
processes, so per-article cost matters. Usage::

    python bench/bench_stocks.py [--articles 1000] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from etl.demo.news import generate_articles
from etl.stocks import StockMatcher, load_stocks


def _best_us(fn, texts: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for text in texts:
            fn(text)
        best = min(best, time.perf_counter() - t0)
    return best / len(texts) * 1e6


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--articles", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)

    stocks = load_stocks()
    names = [s.name for s in stocks]
    texts = [a.text for a in generate_articles(args.articles, seed=11)]
    avg_len = sum(map(len, texts)) / len(texts)

    results: dict[str, float] = {}
    results["naive_us"] = _best_us(lambda t: [n for n in names if n in t], texts, args.repeat)
    engines = ["pyahocorasick"]
    try:
        import ahocorasick_rs  # noqa: F401

        engines.append("ahocorasick_rs")
    except ImportError:
        print("ahocorasick_rs not installed: skipped")
    for engine in engines:
        t0 = time.perf_counter()
        matcher = StockMatcher(stocks, engine=engine)
        results[f"{engine}_build_ms"] = (time.perf_counter() - t0) * 1e3
        results[f"{engine}_us"] = _best_us(matcher.find, texts, args.repeat)

    report = {
        "articles": len(texts),
        "avg_chars": round(avg_len, 1),
        "names": len(names),
        **{k: round(v, 2) for k, v in results.items()},
    }
    print(f"{len(texts)} articles, {avg_len:.0f} chars avg, {len(names)} names")
    print(f"naive [n for n in names if n in text]: {results['naive_us']:9.1f} us/article")
    for engine in engines:
        us = results[f"{engine}_us"]
        ratio = results["naive_us"] / us
        report[f"{engine}_speedup"] = round(ratio, 1)
        print(
            f"StockMatcher({engine}): {us:9.1f} us/article  {ratio:6.1f}x faster than naive"
            f"  (build {results[f'{engine}_build_ms']:.1f} ms)"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()

"""Where the stock-mention job's time goes: read the news table in key ranges, then match every article,
on one core, so each part can be set against the job's wall time (bench/run.py's news-stocks line).

    python bench/news_breakdown.py postgresql://postgres@127.0.0.1/db   # after `etl demo seed-news`
"""

from __future__ import annotations

import sys
import time

from sqlalchemy import text

from etl import db
from etl.stocks.dictionary import load_stocks
from etl.stocks.matcher import StockMatcher


def main(url: str, chunk: int = 5000) -> None:
    engine = db.make_engine(url)
    t = time.perf_counter()
    articles = []
    with engine.connect() as conn:
        hi = conn.execute(text("SELECT max(id) FROM news")).scalar() or 0
        for lo in range(1, hi + 1, chunk):
            articles += conn.execute(text("SELECT id, published, title, body, score FROM news "
                                          "WHERE id >= :lo AND id < :hi"), {"lo": lo, "hi": lo + chunk}).all()
    read_s = time.perf_counter() - t
    t = time.perf_counter()
    matcher = StockMatcher(load_stocks())
    build_ms = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    mentions = sum(len(matcher.find(a.title + "\n" + a.body)) for a in articles)
    match_s = time.perf_counter() - t
    engine.dispose()
    print(f"{len(articles):,} articles: read {read_s:.1f} s; matcher build {build_ms:.0f} ms; "
          f"match {match_s:.1f} s ({match_s / max(1, len(articles)) * 1e6:.0f} µs/article, "
          f"{mentions:,} mentions), all on one core")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "postgresql://postgres@127.0.0.1/postgres")

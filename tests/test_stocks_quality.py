"""Precision/recall of StockMatcher on a labelled set it did not produce.

tests/data/stock_mentions_labeled.jsonl: 88 hand-written snippets (labels by a
human reading them; ids ``hand-*``) + 250 synthetic articles whose labels are
the generator's construction (``etl.demo.news.generate_articles(250, seed=7)``,
text = title + "\\n" + body, frozen into the file). Micro P/R over
(article, code) pairs must both be >= 0.98.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from etl.stocks import StockMatcher, load_stocks
from etl.stocks.matcher import COMMON_WORD_NAMES

DATA = Path(__file__).parent / "data" / "stock_mentions_labeled.jsonl"
THRESHOLD = 0.98


def _load() -> list[dict]:
    with DATA.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture(scope="module")
def labeled() -> list[dict]:
    return _load()


def _score(matcher: StockMatcher, rows: list[dict]) -> tuple[float, float, list[str]]:
    tp = fp = fn = 0
    errors = []
    for row in rows:
        truth = set(row["codes"])
        got = set(matcher.find(row["text"]))
        tp += len(got & truth)
        fp += len(got - truth)
        fn += len(truth - got)
        if got != truth:
            errors.append(f"{row['id']}: missed {sorted(truth - got)} extra {sorted(got - truth)}")
    return tp / max(1, tp + fp), tp / max(1, tp + fn), errors


def test_set_size_and_pitfall_coverage(labeled: list[dict]) -> None:
    assert len(labeled) >= 300
    assert sum(r["id"].startswith("hand-") for r in labeled) >= 60
    assert sum(not r["codes"] for r in labeled) >= 30  # articles with no stock
    codes_of = {}
    for s in load_stocks():
        for a in s.aliases:
            codes_of[a] = s.code
    counts = {
        "common word used as a word": sum(
            any(w in r["text"] and codes_of.get(w) not in r["codes"] for w in COMMON_WORD_NAMES)
            for r in labeled
        ),
        "common-word name that is a mention": sum(
            any(codes_of.get(w) in r["codes"] for w in COMMON_WORD_NAMES if w in r["text"]) for r in labeled
        ),
        "long digit run": sum(bool(re.search(r"\d{7,}", r["text"])) for r in labeled),
        "index code": sum(
            bool(re.search(r"上证指数|000001\.SH|SH000001|沪深300|中证500|科创50", r["text"]))
            for r in labeled
        ),
        "exchange-qualified code": sum(
            bool(re.search(r"\d{6}\.(SH|SZ|SS|BJ)|(sh|sz|SH|SZ)\d{6}", r["text"])) for r in labeled
        ),
        "ST prefix": sum("ST" in r["text"] or "ＳＴ" in r["text"] for r in labeled),
        "full-width or spaced name": sum(
            bool(re.search(r"[Ａ-Ｚ]|[\u4e00-\u9fff] +[\u4e00-\u9fff]", r["text"])) for r in labeled
        ),
    }
    print("\npitfall coverage:", counts)
    assert all(v >= 15 for v in counts.values()), counts


def test_precision_recall(labeled: list[dict]) -> None:
    matcher = StockMatcher(load_stocks())
    precision, recall, errors = _score(matcher, labeled)
    msg = f"precision={precision:.4f} recall={recall:.4f} on {len(labeled)} articles; errors: {errors[:20]}"
    print("\n" + msg)
    assert precision >= THRESHOLD and recall >= THRESHOLD, msg

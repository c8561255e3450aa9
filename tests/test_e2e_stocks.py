"""The stock-mention job end to end: a news table (sql source) or the demo news site (http source)
→ the stocks each article mentions → stock_mentions, compared with the generator's truth."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl import config
from etl.demo.news import generate_articles
from etl.pipeline import run_job
from etl.progress import Progress
from etl.sources.news_seed import seed_news
from tests.test_e2e_listings import table

ROOT = Path(__file__).resolve().parent.parent
ARTICLES = 3000


def mentions(url: str) -> dict[tuple[str, str], dict]:
    rows = table(url, "SELECT news_id, stock_code, stock_name, news_date, score, mention_count FROM stock_mentions")
    return {(r["news_id"], r["stock_code"]): r for r in rows}


def check_against_truth(url: str, n: int) -> None:
    got = mentions(url)
    articles = {str(a.id): a for a in generate_articles(n)}
    truth = {(str(a.id), code) for a in articles.values() for code in a.codes}
    tp = len(truth & set(got))
    precision, recall = tp / max(1, len(got)), tp / max(1, len(truth))
    assert precision >= 0.99 and recall >= 0.99, (precision, recall)
    for (news_id, _code), row in got.items():  # date and score are the article's own
        a = articles[news_id]
        assert str(row["news_date"])[:10] == a.published.isoformat()
        assert abs(row["score"] - a.score) < 1e-9
        assert row["mention_count"] >= 1
    names = {r["code"]: r["name"] for r in table(url, "SELECT code, name FROM stocks")}
    assert len(names) >= 5000
    assert all(names[code] == row["stock_name"] for (_, code), row in got.items())


def run_sql_job(url: str) -> None:
    cfg = config.load(ROOT / "config/news-stocks.toml", ["source.sql.chunk_rows=700"], database_url=url)
    state, stats = run_job(cfg, progress=Progress(enabled=False))
    assert stats.pages_failed == 0


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
                                     pytest.param("mysql", marks=pytest.mark.mysql)])
def test_news_table_to_mentions(backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue({"sqlite": "sqlite_url", "postgres": "pg_url", "mysql": "mysql_url"}[backend])
    seed_news(url, ARTICLES, processes=2)
    run_sql_job(url)
    check_against_truth(url, ARTICLES)
    before = mentions(url)
    run_sql_job(url)  # a second run: the same rows, no duplicates
    after = mentions(url)
    assert before.keys() == after.keys()
    assert [{k: v for k, v in r.items()} for r in before.values()] == [after[k] for k in before]
    daily = table(url, "SELECT stock_code, news_date, articles, avg_score FROM stock_daily_sentiment")
    assert sum(d["articles"] for d in daily) == len(after)


def test_news_site_to_mentions(sqlite_url: str) -> None:
    cfg = config.load(ROOT / "config/news-site.toml", ["source.demo.news=400"], database_url=sqlite_url)
    state, stats = run_job(cfg, progress=Progress(enabled=False))
    assert stats.pages_failed == 0 and stats.pages_ok == 400 + 20  # articles + list pages
    check_against_truth(sqlite_url, 400)

"""Re-running the stock-mention job keeps stock_mentions true to the news table: an edited article's
mentions are replaced, a deleted article's go away after a complete run, and two news tables whose ids
overlap keep their own rows (the job name is part of the key)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from etl import cli, db
from etl.db import make_engine
from tests.test_e2e_listings import table

BACKENDS = ["sqlite_url", pytest.param("pg_url", marks=pytest.mark.postgres),
            pytest.param("mysql_url", marks=pytest.mark.mysql)]


def write_articles(url: str, name: str, articles: dict[int, str]) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
        conn.execute(text(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, published VARCHAR(40), body TEXT)"))
        conn.execute(text(f"INSERT INTO {name} VALUES (:i, '2026-01-05', :b)"),
                     [{"i": i, "b": body} for i, body in articles.items()])
    engine.dispose()


def job_file(tmp_path: Path, job: str, table_name: str, extra: str = "") -> str:
    path = tmp_path / f"{job}.toml"
    path.write_text(f"""
job = "{job}"
[source]
type = "sql"
[source.sql]
table = "{table_name}"
key = "id"
columns = {{ id = "id", published = "published", body = "body" }}
chunk_rows = 2
[transform]
type = "stock_mentions"
text_fields = ["body"]
[target]
table = "stock_mentions"
{extra}
""")
    return str(path)


def found(url: str, source: str | None = None) -> set[tuple[str, str]]:
    rows = table(url, "SELECT source, news_id, stock_code FROM stock_mentions")
    return {(r["news_id"], r["stock_code"]) for r in rows if source is None or r["source"] == source}


ARTICLES = {1: "贵州茅台发布公告", 2: "平安银行(000001)与贵州茅台", 3: "万科A公告", 4: "中国平安"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_edited_and_deleted_articles(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(backend)
    write_articles(url, "news", ARTICLES)
    path = job_file(tmp_path, "news-a", "news")
    assert cli.main(["run", path, "--db", url, "--quiet"]) == 0
    assert found(url) == {("1", "600519"), ("2", "000001"), ("2", "600519"), ("3", "000002"), ("4", "601318")}
    # article 2 no longer names 茅台, article 1 now names nothing, article 3 is gone
    write_articles(url, "news", {1: "今日无事", 2: "平安银行(000001)公告", 4: "中国平安"})
    assert cli.main(["run", path, "--db", url, "--quiet"]) == 0
    assert found(url) == {("2", "000001"), ("4", "601318")}
    flags = {r["code"]: bool(r["delisted"]) for r in table(url, "SELECT code, delisted FROM stocks")}
    assert flags["000527"] and not flags["600519"]  # delisted codes are in `stocks`, marked


@pytest.mark.parametrize("backend", BACKENDS)
def test_overlapping_ids_of_two_tables(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(backend)
    write_articles(url, "news_a", {1: "贵州茅台", 2: "万科A"})
    write_articles(url, "news_b", {1: "中国平安", 2: "平安银行"})
    assert cli.main(["run", job_file(tmp_path, "job-a", "news_a"), "--db", url, "--quiet"]) == 0
    assert cli.main(["run", job_file(tmp_path, "job-b", "news_b"), "--db", url, "--quiet"]) == 0
    assert found(url, "job-a") == {("1", "600519"), ("2", "000002")}
    assert found(url, "job-b") == {("1", "601318"), ("2", "000001")}
    # a complete re-run of one job never sweeps the other's rows
    write_articles(url, "news_a", {1: "贵州茅台"})
    assert cli.main(["run", job_file(tmp_path, "job-a", "news_a"), "--db", url, "--quiet"]) == 0
    assert found(url, "job-a") == {("1", "600519")}
    assert found(url, "job-b") == {("1", "601318"), ("2", "000001")}


def test_cut_short_run_keeps_mentions_of_unseen_articles(tmp_path: Path, sqlite_url: str) -> None:
    """A run that did not read the whole table (max_pages) cannot tell a deleted article from one it did
    not reach: nothing is swept, the edited articles it did read are still replaced."""
    write_articles(sqlite_url, "news", ARTICLES)
    path = job_file(tmp_path, "news-a", "news")
    assert cli.main(["run", path, "--db", sqlite_url, "--quiet"]) == 0
    write_articles(sqlite_url, "news", {1: "今日无事", 2: "平安银行(000001)公告", 4: "中国平安"})
    cut = job_file(tmp_path, "news-a", "news", "[run]\nmax_pages = 1\n")
    assert cli.main(["run", cut, "--db", sqlite_url, "--quiet", "--fresh"]) == 1  # partial
    # range [1, 4) re-read: 1 and 2 replaced; [4, …) not reached, so 3 is kept although it is gone
    assert found(sqlite_url) == {("2", "000001"), ("3", "000002"), ("4", "601318")}


def test_migration_0004_gives_old_rows_their_job(sqlite_url: str) -> None:
    from alembic import command

    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        command.upgrade(db._alembic_config(conn), "0003")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO runs (id, job, config_digest, started_at, status) "
                          "VALUES (7, 'my-news', 'x', '2026-01-01', 'succeeded')"))
        conn.execute(text("INSERT INTO stock_mentions VALUES ('1', '600519', '贵州茅台', NULL, 0.5, 2, 7), "
                          "('2', '600519', '贵州茅台', NULL, 0.5, 1, 99)"))
        conn.execute(text("INSERT INTO stocks VALUES ('600519', '贵州茅台', 'SH', NULL, '[]')"))
    engine.dispose()
    db.upgrade(sqlite_url)
    rows = table(sqlite_url, "SELECT source, news_id, mention_count FROM stock_mentions ORDER BY news_id")
    assert rows == [{"source": "my-news", "news_id": "1", "mention_count": 2},
                    {"source": "news-stocks", "news_id": "2", "mention_count": 1}]
    assert table(sqlite_url, "SELECT delisted FROM stocks") == [{"delisted": 0}]
    assert table(sqlite_url, "SELECT sum(articles) AS n FROM stock_daily_sentiment") == [{"n": 2}]

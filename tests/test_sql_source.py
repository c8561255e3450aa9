"""The sql source reads every row exactly once whatever its key holds (NULLs, duplicates, floats, text),
and a table, column or `where` that cannot be read is a config problem: one line, exit 2, nothing written
(issue 11 items 3, 5, 7; issue 12 item 3)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from etl import cli
from etl.db import make_engine
from tests.test_e2e_listings import table


def make_articles(url: str, keys: list) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS articles"))
        conn.execute(text("CREATE TABLE articles (art_id INTEGER, k TEXT, fk REAL, pub_date TEXT, headline TEXT, "
                          "content TEXT, sentiment REAL)"))
        conn.execute(text("INSERT INTO articles VALUES (:i, :k, :fk, :d, :h, :c, 0.5)"), [
            {"i": i, "k": None if key is None else str(key), "fk": None if key is None else float(key) / 3,
             "d": f"2026-01-{1 + i % 5:02d}", "h": f"贵州茅台 新闻 {i}", "c": "600519 贵州茅台 发布公告"}
            for i, key in enumerate(keys)])
    engine.dispose()


def job(tmp_path: Path, key: str, where: str | None = None, columns: str | None = None, chunk: int = 3) -> str:
    cols = columns or '{ id = "art_id", published = "pub_date", title = "headline", body = "content" }'
    path = tmp_path / "articles.toml"
    path.write_text(f"""
job = "articles"
[source]
type = "sql"
[source.sql]
table = "articles"
key = "{key}"
columns = {cols}
chunk_rows = {chunk}
{f'where = "{where}"' if where else ''}
[transform]
type = "stock_mentions"
[target]
table = "stock_mentions"
""")
    return str(path)


def mentions(url: str) -> list[str]:
    return sorted(r["news_id"] for r in table(url, "SELECT news_id FROM stock_mentions WHERE stock_code = '600519'"))


@pytest.mark.parametrize("key, keys", [
    ("art_id", list(range(10))),
    ("k", [1, 2, 3, 4, 5, 6, 7, 8, 9, None]),  # a NULL key (7 of 10 were stored)
    ("k", [None, None, 1, 1, 1, 1, 2, 2, 2, 3]),  # duplicates across every boundary, NULLs first
    ("fk", [5, 1, 4, 1, 5, 9, 2, 6, None, 3]),  # floats
    ("pub_date", list(range(10))),  # a date key: five values, two rows each
])
def test_every_row_once_whatever_the_key(tmp_path: Path, sqlite_url: str, key: str, keys: list) -> None:
    make_articles(sqlite_url, keys)
    assert cli.main(["run", job(tmp_path, key), "--db", sqlite_url, "--quiet"]) == 0
    assert mentions(sqlite_url) == sorted(str(i) for i in range(10))


def test_title_and_score_are_optional_columns(tmp_path: Path, sqlite_url: str) -> None:
    make_articles(sqlite_url, list(range(10)))
    path = job(tmp_path, "art_id", columns='{ id = "art_id", body = "content" }')
    assert cli.main(["run", path, "--db", sqlite_url, "--quiet"]) == 0
    assert len(mentions(sqlite_url)) == 10


@pytest.mark.parametrize("key, where, columns, fragment", [
    ("nokey", None, None, "nokey"),
    ("art_id", "no_such_column > 1", None, "no_such_column"),
    ("art_id", "sentiment >", None, "syntax"),
    ("art_id", None, '{ id = "art_id", body = "bdy" }', "bdy"),
])
def test_what_cannot_be_read_is_one_line_exit_2(tmp_path: Path, sqlite_url: str, capsys, key, where, columns,
                                               fragment) -> None:
    make_articles(sqlite_url, list(range(10)))
    code = cli.main(["run", job(tmp_path, key, where, columns), "--db", sqlite_url, "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and fragment in err[0], err
    assert table(sqlite_url, "SELECT count(*) AS n FROM runs")[0]["n"] == 0  # nothing was written


def test_a_missing_table_is_one_line_exit_2(tmp_path: Path, sqlite_url: str, capsys) -> None:
    code = cli.main(["run", job(tmp_path, "art_id"), "--db", sqlite_url, "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "articles" in err[0]


@pytest.mark.parametrize("where", ["1=1) AS numbered; DELETE FROM runs; --", "1=1 /* x */", "1=1; COMMIT"])
def test_where_cannot_smuggle_statements(tmp_path: Path, where: str) -> None:
    from etl import config

    with pytest.raises(config.ConfigError, match="without ';'"):
        config.load(job(tmp_path, "art_id", where))


@pytest.mark.postgres
def test_where_runs_read_only_postgres(tmp_path: Path, pg_url: str, capsys) -> None:
    """Even a `where` that calls a function with side effects cannot write: the read is READ ONLY."""
    make_articles(pg_url, list(range(10)))
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE victim (x int)"))
        conn.execute(text("CREATE FUNCTION scribble() RETURNS boolean AS $$ INSERT INTO victim VALUES (1); "
                          "SELECT true $$ LANGUAGE sql"))
    engine.dispose()
    code = cli.main(["run", job(tmp_path, "art_id", "scribble()"), "--db", pg_url, "--quiet"])
    assert code == 2 and "read-only" in capsys.readouterr().err  # refused while planning, one line
    assert table(pg_url, "SELECT count(*) AS n FROM victim")[0]["n"] == 0


@pytest.mark.parametrize("edit, fragment", [
    (('[transform]\ntype = "stock_mentions"', '[transform]\ntype = "stock_mentions"\ntext_fields = "body"'),
     "list of field names"),
    (('[transform]\ntype = "stock_mentions"', '[transform]\ntype = "stock_mentions"\ntext_fields = ["bdy"]'),
     "'bdy' is not a field"),
    (("chunk_rows = 3", "chunk_rows = 0"), "at least 1"),
    (("chunk_rows = 3", "chunk_rows = -5"), "at least 1"),
    (('[target]\ntable = "stock_mentions"', ""), "stock_mentions"),
])
def test_silently_empty_configs_are_refused_on_load(tmp_path: Path, edit: tuple[str, str], fragment: str) -> None:
    """Issue 11 item 6: each of these loaded, then stored 0 rows with exit 0."""
    from etl import config

    path = Path(job(tmp_path, "art_id"))
    path.write_text(path.read_text().replace(*edit))
    with pytest.raises(config.ConfigError, match=fragment):
        config.load(str(path))


@pytest.mark.parametrize("backend", [pytest.param("pg_url", marks=pytest.mark.postgres),
                                     pytest.param("mysql_url", marks=pytest.mark.mysql)])
@pytest.mark.parametrize("key, keys", [("k", [None, None, 1, 1, 1, 1, 2, 2, 2, 3]), ("pub_date", list(range(10)))])
def test_every_row_once_on_server_databases(tmp_path: Path, backend: str, key: str, keys: list, request) -> None:
    url = request.getfixturevalue(backend)
    make_articles(url, keys)
    assert cli.main(["run", job(tmp_path, key), "--db", url, "--quiet"]) == 0
    assert mentions(url) == sorted(str(i) for i in range(10))


# ---------------------------------------------------------------- published: the date in a stated zone
def tz_job(tmp_path: Path, zone: str | None, column_type: str = "TEXT") -> str:
    path = Path(job(tmp_path, "art_id", columns='{ id = "art_id", published = "pub", body = "content" }'))
    if zone is not None:
        path.write_text(path.read_text().replace("chunk_rows = 3", f'chunk_rows = 3\ntimezone = "{zone}"'))
    return str(path)


def make_stamped(url: str, column_type: str, stamps: list[str]) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS articles"))
        conn.execute(text(f"CREATE TABLE articles (art_id INTEGER, pub {column_type}, content TEXT)"))
        conn.execute(text("INSERT INTO articles VALUES (:i, :p, '贵州茅台发布公告')"),
                     [{"i": i, "p": p} for i, p in enumerate(stamps)])
    engine.dispose()


def dates(url: str) -> list[str]:
    return [str(r["news_date"])[:10] for r in table(url, "SELECT news_date FROM stock_mentions ORDER BY news_id")]


STAMPS = ["2026-06-02 00:30:00+08:00", "2026-06-01T16:30:00Z", "2026-06-01 16:30+00:00", "2026-06-01 23:30",
          "2026-06-01"]


@pytest.mark.parametrize("zone, expected", [
    (None, ["2026-06-02", "2026-06-02", "2026-06-02", "2026-06-01", "2026-06-01"]),  # default Asia/Shanghai
    ("UTC", ["2026-06-01", "2026-06-01", "2026-06-01", "2026-06-01", "2026-06-01"]),
    ("America/New_York", ["2026-06-01", "2026-06-01", "2026-06-01", "2026-06-01", "2026-06-01"]),
])
def test_text_timestamps_with_offsets_sqlite(tmp_path: Path, sqlite_url: str, zone, expected) -> None:
    make_stamped(sqlite_url, "TEXT", STAMPS)
    assert cli.main(["run", tz_job(tmp_path, zone), "--db", sqlite_url, "--quiet"]) == 0
    assert dates(sqlite_url) == expected


@pytest.mark.postgres
@pytest.mark.parametrize("zone, expected", [(None, "2026-06-02"), ("Asia/Shanghai", "2026-06-02"),
                                            ("UTC", "2026-06-01")])
def test_timestamptz_date_in_the_configured_zone(tmp_path: Path, pg_url: str, zone, expected) -> None:
    """The session's zone (UTC here) no longer decides the date: the config's zone does."""
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text(f"ALTER DATABASE \"{pg_url.rsplit('/', 1)[1]}\" SET timezone TO 'UTC'"))
    engine.dispose()
    make_stamped(pg_url, "timestamptz", ["2026-06-02 00:30+08"])
    assert cli.main(["run", tz_job(tmp_path, zone), "--db", pg_url, "--quiet"]) == 0
    assert dates(pg_url) == [expected]


def test_an_unknown_zone_is_a_config_error(tmp_path: Path) -> None:
    from etl import config

    with pytest.raises(config.ConfigError, match="Mars/Olympus"):
        config.load(tz_job(tmp_path, "Mars/Olympus"))

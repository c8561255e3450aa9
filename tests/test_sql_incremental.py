"""A sql source reads only the rows added or changed since the last successful run (a cursor on `key`,
or on `[source.sql] updated` with the key as tie-breaker), exactly: equal timestamps and repeated keys at
the cursor lose nothing; `--full` reads everything; only a run that succeeded moves the cursor; and an
incremental run never sweeps the mentions of articles it did not read (issue 13, part 3)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from etl import cli
from etl.db import make_engine
from tests.test_e2e_listings import table

BACKENDS = ["sqlite_url", pytest.param("pg_url", marks=pytest.mark.postgres),
            pytest.param("mysql_url", marks=pytest.mark.mysql)]
MAOTAI, VANKE = "贵州茅台发布公告", "万科A公告"
T0, T1 = "2026-01-05 10:00:00", "2026-01-06 09:30:00"


def stamp_type(url: str) -> str:
    """A real timestamp column where the database has one (SQLite keeps text)."""
    return "TIMESTAMP" if url.startswith("postgresql") else "DATETIME(6)" if url.startswith("mysql") else "TEXT"


def execute(url: str, sql: str, rows: list[dict] | None = None) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text(sql), rows or {})
    engine.dispose()


def make_news(url: str, n: int = 10) -> None:
    execute(url, "DROP TABLE IF EXISTS news")
    execute(url, f"CREATE TABLE news (id INTEGER PRIMARY KEY, k INTEGER, updated_at {stamp_type(url)}, "
                 "published VARCHAR(40), body TEXT, score VARCHAR(20))")
    add(url, range(1, n + 1))


def add(url: str, ids, body: str = MAOTAI, stamp: str = T0, k: int | None = None,
        score: str = "0.5") -> None:
    if not list(ids):
        return
    execute(url, "INSERT INTO news VALUES (:i, :k, :u, '2026-01-05', :b, :s)",
            [{"i": i, "k": i if k is None else k, "u": stamp, "b": body, "s": score} for i in ids])


def job_file(tmp_path: Path, key: str = "id", updated: str | None = "updated_at", where: str | None = None) -> str:
    path = tmp_path / "news.toml"
    path.write_text(f"""
job = "news-inc"
[source]
type = "sql"
[source.sql]
table = "news"
key = "{key}"
{f'updated = "{updated}"' if updated else ''}
{f'where = "{where}"' if where else ''}
columns = {{ id = "id", published = "published", body = "body", score = "score" }}
chunk_rows = 1
[transform]
type = "stock_mentions"
text_fields = ["body"]
[target]
table = "stock_mentions"
""")
    return str(path)


def run(url: str, path: str, *extra: str) -> int:
    return cli.main(["run", path, "--db", url, "--quiet", *extra])


def last_run(url: str) -> dict:
    """The newest run: with chunk_rows = 1 and a unique key, its units (pages_ok) are the rows it read."""
    return table(url, "SELECT id, status, pages_ok FROM runs ORDER BY id DESC")[0]


def mentions(url: str) -> dict[str, tuple[set[str], set[int]]]:
    """news_id → (stock codes, run ids that wrote them)."""
    out: dict[str, tuple[set[str], set[int]]] = {}
    for r in table(url, "SELECT news_id, stock_code, run_id FROM stock_mentions WHERE source = 'news-inc'"):
        codes, runs = out.setdefault(r["news_id"], (set(), set()))
        codes.add(r["stock_code"])
        runs.add(r["run_id"])
    return out


def read_by(url: str, run_id: int) -> set[str]:
    return {news_id for news_id, (_, runs) in mentions(url).items() if run_id in runs}


@pytest.mark.parametrize("backend", BACKENDS)
def test_only_new_and_changed_rows(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(backend)
    make_news(url)  # ten articles, all stamped T0: the cursor's boundary is one timestamp shared by all
    path = job_file(tmp_path)
    assert run(url, path) == 0
    first = last_run(url)
    assert first["pages_ok"] == 10 and len(read_by(url, first["id"])) == 10
    add(url, [11, 12, 13], stamp=T1)  # three new
    execute(url, "UPDATE news SET body = :b, updated_at = :u WHERE id IN (3, 7)", [{"b": VANKE, "u": T1}])
    assert run(url, path) == 0
    second = last_run(url)
    assert second["pages_ok"] == 5  # exactly the five rows, one unit each
    assert read_by(url, second["id"]) == {"3", "7", "11", "12", "13"}
    found = mentions(url)
    assert found["3"][0] == found["7"][0] == {"000002"}  # an edited article's mentions were replaced
    assert all(found[str(i)][0] == {"600519"} for i in (1, 2, 4, 5, 6, 8, 9, 10, 11, 12, 13))
    assert run(url, path) == 0 and last_run(url)["pages_ok"] == 0  # nothing changed: nothing read
    assert run(url, path, "--full") == 0  # --full reads every row again
    full = last_run(url)
    assert full["pages_ok"] == 13 and len(read_by(url, full["id"])) == 13


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_incremental_run_sweeps_nothing(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    """It did not read the table, so it cannot tell a deleted article from one it did not need to read;
    the next --full run removes the deleted article's mentions."""
    url = request.getfixturevalue(backend)
    make_news(url, 4)
    path = job_file(tmp_path, updated=None)
    assert run(url, path) == 0
    execute(url, "DELETE FROM news WHERE id = 2")
    add(url, [5])
    assert run(url, path) == 0 and last_run(url)["pages_ok"] == 1
    assert set(mentions(url)) == {"1", "2", "3", "4", "5"}
    assert run(url, path, "--full") == 0
    assert set(mentions(url)) == {"1", "3", "4", "5"}


def test_key_cursor_reads_new_rows_only(tmp_path: Path, sqlite_url: str) -> None:
    make_news(sqlite_url, 6)
    path = job_file(tmp_path, updated=None)
    assert run(sqlite_url, path) == 0 and last_run(sqlite_url)["pages_ok"] == 6
    add(sqlite_url, [7, 8, 9])
    execute(sqlite_url, "UPDATE news SET body = :b WHERE id = 2", [{"b": VANKE}])  # no `updated`: not seen
    assert run(sqlite_url, path) == 0
    assert last_run(sqlite_url)["pages_ok"] == 3 and read_by(sqlite_url, last_run(sqlite_url)["id"]) == {"7", "8", "9"}


def test_a_partial_run_does_not_move_the_cursor(tmp_path: Path, sqlite_url: str) -> None:
    make_news(sqlite_url, 5)
    path = job_file(tmp_path)
    assert run(sqlite_url, path) == 0
    add(sqlite_url, [6, 7], stamp=T1)
    add(sqlite_url, [8], stamp=T1, score="n/a")  # that row's failure: the run is partial
    assert run(sqlite_url, path) == 1 and last_run(sqlite_url)["status"] == "partial"
    execute(sqlite_url, "UPDATE news SET score = '0.1' WHERE id = 8")  # fixed, `updated` untouched
    assert run(sqlite_url, path) == 0
    again = last_run(sqlite_url)
    assert again["pages_ok"] == 3 and read_by(sqlite_url, again["id"]) == {"6", "7", "8"}
    assert run(sqlite_url, path, "--set", "run.max_pages=1") == 0  # nothing new: nothing to cut short
    add(sqlite_url, [9, 10], stamp=T1)
    assert run(sqlite_url, path, "--set", "run.max_pages=1") == 1  # cut short: partial
    assert run(sqlite_url, path) == 0 and last_run(sqlite_url)["pages_ok"] == 2


@pytest.mark.parametrize("backend", ["sqlite_url", pytest.param("pg_url", marks=pytest.mark.postgres)])
def test_rows_arriving_at_the_cursor_are_not_lost(tmp_path: Path, backend: str,
                                                  request: pytest.FixtureRequest) -> None:
    """A row added with the very timestamp of the cursor (and a lower id), or the very key of a
    non-unique key, sorts at or before the cursor: the boundary is read again rather than lose it."""
    url = request.getfixturevalue(backend)
    make_news(url, 0)
    add(url, [10, 11, 12])
    path = job_file(tmp_path)
    assert run(url, path) == 0
    add(url, [5])  # stamped T0 like the cursor's own row, id 5 < 12
    assert run(url, path) == 0 and "5" in read_by(url, last_run(url)["id"])
    execute(url, "DELETE FROM news")
    add(url, [1, 2], k=1)
    add(url, [3, 4], k=2)
    keyed = job_file(tmp_path, key="k", updated=None)
    assert run(url, keyed, "--full") == 0
    add(url, [5], k=2)  # the cursor's key again
    assert run(url, keyed) == 0 and "5" in read_by(url, last_run(url)["id"])


def test_a_changed_where_reads_everything(tmp_path: Path, sqlite_url: str) -> None:
    """The cursor belongs to the rows it was taken on: another table, key, updated or where starts over."""
    make_news(sqlite_url, 10)
    assert run(sqlite_url, job_file(tmp_path, where="id > 5")) == 0 and last_run(sqlite_url)["pages_ok"] == 5
    assert run(sqlite_url, job_file(tmp_path)) == 0 and last_run(sqlite_url)["pages_ok"] == 10


def test_a_missing_updated_column_is_one_line_exit_2(tmp_path: Path, sqlite_url: str, capsys) -> None:
    make_news(sqlite_url, 3)
    code = run(sqlite_url, job_file(tmp_path, updated="changed_at"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "changed_at" in err[0], err


def test_updated_must_be_a_column_name(tmp_path: Path) -> None:
    from etl import config

    with pytest.raises(config.ConfigError, match="plain table/column name"):
        config.load(job_file(tmp_path, updated="updated_at; DROP TABLE news"))


def test_a_resumed_run_reads_the_window_it_planned(tmp_path: Path, sqlite_url: str) -> None:
    """Rows arriving while a run is unfinished are the next run's; the cursor moves when it succeeds."""
    make_news(sqlite_url, 10)
    path = job_file(tmp_path)
    assert run(sqlite_url, path) == 0
    add(sqlite_url, [11, 12, 13], stamp=T1)
    assert run(sqlite_url, path, "--set", "run.max_pages=1") == 1
    cut = last_run(sqlite_url)["id"]
    execute(sqlite_url, "UPDATE runs SET status = 'interrupted' WHERE id = :i", [{"i": cut}])  # as after SIGTERM
    add(sqlite_url, [14, 15], stamp=T1)
    assert run(sqlite_url, path) == 0
    resumed = last_run(sqlite_url)
    assert resumed["id"] == cut and resumed["pages_ok"] == 3 and read_by(sqlite_url, cut) == {"11", "12", "13"}
    assert run(sqlite_url, path) == 0
    assert last_run(sqlite_url)["pages_ok"] == 2 and read_by(sqlite_url, last_run(sqlite_url)["id"]) == {"14", "15"}


def test_rows_the_cursor_cannot_place_are_read_every_run(tmp_path: Path, sqlite_url: str) -> None:
    """A NULL key sorts nowhere and a NULL `updated` says nothing about change: such rows are read again
    by every run rather than never."""
    make_news(sqlite_url, 6)
    execute(sqlite_url, "UPDATE news SET k = NULL WHERE id IN (1, 2)")
    execute(sqlite_url, "UPDATE news SET updated_at = NULL WHERE id = 5")
    path = job_file(tmp_path, key="k")
    assert run(sqlite_url, path) == 0
    assert read_by(sqlite_url, last_run(sqlite_url)["id"]) == {"1", "2", "3", "4", "5", "6"}
    assert run(sqlite_url, path) == 0
    assert read_by(sqlite_url, last_run(sqlite_url)["id"]) == {"1", "2", "5"}

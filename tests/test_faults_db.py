"""The database misbehaving: connections killed mid-run, a database that stays away, wrong schema
versions, an unreachable server, and scraped text that is hostile to SQL."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from etl import db
from etl.dialects import dialect_for
from etl.items import PageDone
from etl.targets import target_spec
from etl.write import Batch, Writer, WriterSettings
from tests.test_e2e_listings import assert_matches_truth, table

ROOT = Path(__file__).resolve().parent.parent


def etl(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "etl.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def admin(url: str):
    return create_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")


@pytest.mark.postgres
def test_writer_survives_killed_connections(pg_url: str) -> None:
    name = pg_url.rsplit("/", 1)[1]
    stop = threading.Event()
    kills = []

    def killer() -> None:
        engine = admin(pg_url)
        time.sleep(4)
        while not stop.is_set():
            with engine.connect() as conn:
                n = conn.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                      "WHERE datname = :d AND pid <> pg_backend_pid()"), {"d": name}).scalar()
            kills.append(n)
            time.sleep(2.5)
        engine.dispose()

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        result = etl("run", str(ROOT / "config/demo.toml"), "--db", pg_url, "--quiet")
    finally:
        stop.set()
        thread.join(timeout=10)
    assert sum(kills) > 0, "the test never killed a connection"
    assert result.returncode == 0, result.stdout + result.stderr
    assert_matches_truth(pg_url)


@pytest.mark.postgres
def test_database_gone_for_good_fails_the_run_with_one_message(pg_url: str) -> None:
    name = pg_url.rsplit("/", 1)[1]
    db.upgrade(pg_url)
    proc = subprocess.Popen([sys.executable, "-m", "etl.cli", "run", str(ROOT / "config/demo.toml"), "--db", pg_url,
                             "--quiet", "--set", "database.retry_seconds=3"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    engine = admin(pg_url)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if table(pg_url, "SELECT count(*) AS n FROM listings")[0]["n"] > 0:
                break
            time.sleep(0.2)
        with engine.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"),
                         {"d": name})
        out, err = proc.communicate(timeout=120)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        engine.dispose()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, out + err
    last = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(last) == 1 and "run failed" in last[0], err


def mysql_admin():
    from tests.conftest import mysql_admin_engine

    return mysql_admin_engine()


@pytest.mark.mysql
def test_writer_survives_killed_connections_mysql(mysql_url: str) -> None:
    name = make_url(mysql_url).database
    stop = threading.Event()
    kills = []

    def killer() -> None:
        engine = mysql_admin()
        time.sleep(4)
        while not stop.is_set():
            with engine.connect() as conn:
                ids = conn.execute(text("SELECT id FROM information_schema.processlist WHERE db = :d "
                                        "AND id <> CONNECTION_ID()"), {"d": name}).scalars().all()
                for pid in ids:
                    try:
                        conn.execute(text(f"KILL CONNECTION {int(pid)}"))
                    except Exception:  # it ended by itself in between
                        pass
            kills.append(len(ids))
            time.sleep(2.5)
        engine.dispose()

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        result = etl("run", str(ROOT / "config/demo.toml"), "--db", mysql_url, "--quiet")
    finally:
        stop.set()
        thread.join(timeout=10)
    assert sum(kills) > 0, "the test never killed a connection"
    assert result.returncode == 0, result.stdout + result.stderr
    assert_matches_truth(mysql_url)


@pytest.mark.mysql
def test_database_gone_for_good_fails_the_run_with_one_message_mysql(mysql_url: str) -> None:
    """The job's own account is locked and its connections killed: reconnecting is refused from then on."""
    name = make_url(mysql_url).database
    user = f"u_{name[-10:]}"
    admin = mysql_admin()
    with admin.connect() as conn:
        conn.execute(text(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'"))
        conn.execute(text(f"GRANT ALL ON `{name}`.* TO '{user}'@'%'"))
    url = make_url(mysql_url).set(username=user, password="pw").render_as_string(hide_password=False)
    db.upgrade(url)
    proc = subprocess.Popen([sys.executable, "-m", "etl.cli", "run", str(ROOT / "config/demo.toml"), "--db", url,
                             "--quiet", "--set", "database.retry_seconds=3"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if table(mysql_url, "SELECT count(*) AS n FROM listings")[0]["n"] > 0:
                break
            time.sleep(0.2)
        with admin.connect() as conn:
            conn.execute(text(f"ALTER USER '{user}'@'%' ACCOUNT LOCK"))
            for pid in conn.execute(text("SELECT id FROM information_schema.processlist WHERE user = :u"),
                                    {"u": user}).scalars().all():
                try:
                    conn.execute(text(f"KILL CONNECTION {int(pid)}"))
                except Exception:
                    pass
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        with admin.connect() as conn:
            conn.execute(text(f"DROP USER IF EXISTS '{user}'@'%'"))
        admin.dispose()
    assert proc.returncode == 3, out + err
    last = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(last) == 1 and "run failed" in last[0], err
    assert "pw@" not in out + err  # the password is masked


def test_unreachable_database_is_exit_2_and_one_line(tmp_path: Path) -> None:
    result = etl("run", str(ROOT / "config/demo.toml"), "--db", "postgresql://nobody:secret@127.0.0.1:1/x")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot connect" in errors[0]
    assert "secret" not in result.stderr + result.stdout  # passwords are masked


def test_schema_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    result = etl("run", str(ROOT / "config/demo.toml"), "--db", url)
    assert result.returncode == 2
    assert "newer than this version of etl" in result.stderr
    assert table(url, "SELECT count(*) AS n FROM runs")[0]["n"] == 0  # nothing written


def test_db_upgrade_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'y.db'}"
    result = etl("db", "upgrade", "--db", url)
    assert result.returncode == 0 and db.head_revision() in result.stdout
    assert db.current_revision(db.make_engine(url)) == db.head_revision()


def writer_for_run(url: str) -> Writer:
    """A migrated database with run 1 open, and a Writer for it (no writer process, no queue)."""
    db.upgrade(url)
    engine = db.make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO runs (id, job, config_digest, started_at, status, pages_ok, pages_failed, "
                          "rows_written) VALUES (1, 'j', 'd', :t, 'running', 0, 0, 0)"), {"t": dt.datetime.now(dt.UTC)})
    engine.dispose()
    return Writer(WriterSettings(url=url, target=target_spec("listings", None, {}), run_id=1))


HOSTILE = ["O'Brien \"quoted\"", "'; DROP TABLE listings; --", "nul\x00byte", "back\\slash", "日本語 ＦＵＬＬ",
           "tab\there", "new\nline\r\n", "\\N", "percent % and $1 :name", "emoji 😀🎉, 4-byte 𠀀 𝄞", "\\'", "'\\"]


def _write_hostile(url: str, copies: int = 1) -> list[dict]:
    writer = writer_for_run(url)
    batch = Batch()
    rows = [{"source": "t", "listing_id": f"{i:04d}", "title": s, "community": s, "extras": {"note": s}}
            for i, s in enumerate(HOSTILE * copies)]
    writer.add(batch, PageDone(1, rows, [], "done"))
    writer.flush(batch)
    writer.engine.dispose()
    return table(url, "SELECT listing_id, title, community, extras FROM listings ORDER BY listing_id")


def test_hostile_text_stored_verbatim_sqlite(sqlite_url: str) -> None:
    got = _write_hostile(sqlite_url)
    assert [r["title"] for r in got] == HOSTILE


SERVERS = [pytest.param("pg_url", marks=pytest.mark.postgres, id="postgres"),
           pytest.param("mysql_url", marks=pytest.mark.mysql, id="mysql")]


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("copies", [1, 10])  # a small batch: executemany; a big one: COPY / literal multi-row INSERT
def test_hostile_text_server(server: str, copies: int, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(server)
    got = _write_hostile(url, copies)
    expected = HOSTILE * copies
    if not dialect_for(url).nul_in_text:  # documented: NUL → U+FFFD on PostgreSQL; MySQL keeps it
        expected = [s.replace("\x00", "\ufffd") for s in expected]
    assert [r["title"] for r in got] == expected
    assert [r["community"] for r in got] == expected
    notes = [(r["extras"] if isinstance(r["extras"], dict) else json.loads(r["extras"]))["note"] for r in got]
    assert notes == expected


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("filler", [0, 100])  # through executemany and through the bulk path
def test_refused_row_becomes_a_failure_not_a_lost_batch(server: str, filler: int, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(server)
    writer = writer_for_run(url)
    batch = Batch()
    rows = [{"source": "t", "listing_id": "ok1", "title": "fine"},
            {"source": "t", "listing_id": "bad", "floor_level": "x" * 500},  # longer than the column allows
            {"source": "t", "listing_id": "ok2", "title": "fine too"}]
    rows += [{"source": "t", "listing_id": f"z{i:03d}", "title": "filler"} for i in range(filler)]
    writer.add(batch, PageDone(1, rows, [], "done"))
    writer.flush(batch)
    writer.engine.dispose()
    ids = [r["listing_id"] for r in table(url, "SELECT listing_id FROM listings ORDER BY 1")]
    assert ids == ["ok1", "ok2"] + [f"z{i:03d}" for i in range(filler)]
    failures = table(url, "SELECT stage, error FROM failures")
    assert len(failures) == 1 and failures[0]["stage"] == "write" and "too long" in failures[0]["error"]


def test_value_the_driver_cannot_take_is_a_failure_sqlite(sqlite_url: str) -> None:
    """sqlite3 raises OverflowError (not a database error) for a 2**70 integer: still one failed row."""
    writer = writer_for_run(sqlite_url)
    batch = Batch()
    rows = [{"source": "t", "listing_id": "a", "rooms": 2}, {"source": "t", "listing_id": "b", "rooms": 2**70},
            {"source": "t", "listing_id": "c", "title": "lone \udcff surrogate"}, {"source": "t", "listing_id": "d"}]
    writer.add(batch, PageDone(1, rows, [], "done"))
    writer.flush(batch)
    writer.engine.dispose()
    ids = [r["listing_id"] for r in table(sqlite_url, "SELECT listing_id FROM listings ORDER BY 1")]
    assert "a" in ids and "d" in ids and "b" not in ids
    assert len(table(sqlite_url, "SELECT * FROM failures WHERE stage = 'write'")) == 4 - len(ids)


@pytest.mark.postgres
def test_a_long_multibyte_link_fits_the_frontier_postgres(pg_url: str) -> None:
    """1,500 CJK characters are 4.5 KB of UTF-8: over PostgreSQL's btree limit when the URL was the key
    (issue 12, 10). The frontier's key is now the URL's fingerprint; the URL itself is not indexed."""
    from etl.items import Link
    from etl.urls import fingerprint

    writer = writer_for_run(pg_url)
    batch = Batch()
    url = "http://x.test/" + "列表" * 750
    writer.add(batch, PageDone(1, [], [Link(url, fingerprint(url), "list", "{}")], "done"))
    writer.flush(batch)
    writer.engine.dispose()
    assert table(pg_url, "SELECT url FROM frontier")[0]["url"] == url

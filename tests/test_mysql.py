"""What is MySQL/MariaDB's own in etl/dialects/mysql.py: URLs and drivers, which errors are waited out,
the literal bulk path (escaping, statement count), keys that stay distinct, read-only source reads, a
deadlock inside the writer's savepoint, and a migration that fails half way. The end-to-end twins of the
SQLite/PostgreSQL tests live beside those (test_e2e_*, test_faults_db, test_resume, test_schema)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from decimal import Decimal

import pymysql
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from etl import db, schema
from etl.dialects import dialect_for, url_problem
from etl.dialects.mysql import MySQLDialect, sql_literal
from etl.items import Link, PageDone
from etl.targets import ensure, target_spec
from etl.urls import fingerprint
from etl.write import Batch
from tests.test_e2e_listings import table
from tests.test_faults_db import writer_for_run

D = MySQLDialect()


# ------------------------------------------------------------------------------------------ no server
@pytest.mark.parametrize(("given", "used"), [
    ("mysql://u@h/db", "mysql+pymysql://u@h/db?charset=utf8mb4"),
    ("mariadb://u@h:3307/db", "mariadb+pymysql://u@h:3307/db?charset=utf8mb4"),
    ("mysql+mysqldb://u@h/db", "mysql+mysqldb://u@h/db?charset=utf8mb4"),
    ("mysql+pymysql://u@h/db?charset=utf8mb4&ssl_ca=/ca.pem", "mysql+pymysql://u@h/db?charset=utf8mb4&ssl_ca=/ca.pem"),
    ("mysql://u@h/db?charset=latin1", "mysql+pymysql://u@h/db?charset=latin1"),
    ("mysql://u:p%40ss%2Fw@h/db", "mysql+pymysql://u:p%40ss%2Fw@h/db?charset=utf8mb4"),
])
def test_urls_name_the_driver_and_utf8mb4(given: str, used: str) -> None:
    assert D.driver_url(given) == used
    assert make_url(D.driver_url(given)).password == make_url(given).password
    assert isinstance(dialect_for(given), MySQLDialect) and url_problem(given) is None


def test_an_unsupported_url_names_mysql_among_the_choices() -> None:
    assert "mysql://user@host/db" in (url_problem("mssql://u:secret@h/db") or "")


def _err(cls, code: int, msg: str = "x") -> DBAPIError:
    return DBAPIError("stmt", {}, cls(code, msg))


def test_only_connection_trouble_deadlocks_and_lock_waits_are_waited_out() -> None:
    for code in (2002, 2003, 2006, 2013, 2055, 1040, 1203, 1053, 1205, 1213, 1927, 4031):
        assert D.is_transient(_err(pymysql.err.OperationalError, code)), code
        assert D.is_transient(pymysql.err.OperationalError(code, "raw driver error")), code
    assert D.is_transient(_err(pymysql.err.InterfaceError, 0, ""))  # PyMySQL: connection already closed
    # PyMySQL raises OperationalError for server errors it has no class for: the number decides
    for cls, code in ((pymysql.err.DataError, 1406), (pymysql.err.OperationalError, 1366),
                      (pymysql.err.OperationalError, 4025), (pymysql.err.OperationalError, 1292),
                      (pymysql.err.OperationalError, 1317), (pymysql.err.IntegrityError, 1062),
                      (pymysql.err.OperationalError, 1045), (pymysql.err.ProgrammingError, 1064),
                      (pymysql.err.OperationalError, 1305)):
        assert not D.is_transient(_err(cls, code)), code
    invalidated = OperationalError("stmt", {}, pymysql.err.OperationalError(1105, "?"), connection_invalidated=True)
    assert D.is_transient(invalidated)
    # ROLLBACK TO SAVEPOINT failing (1305) after InnoDB rolled back the transaction for a deadlock
    try:
        try:
            raise _err(pymysql.err.OperationalError, 1213, "Deadlock found")
        except DBAPIError:
            raise _err(pymysql.err.OperationalError, 1305, "SAVEPOINT sa_savepoint_1 does not exist") from None
    except DBAPIError as exc:
        assert D.is_transient(exc)


def test_literals() -> None:
    assert sql_literal(None) == "NULL" and sql_literal(True) == "1" and sql_literal(7) == "7"
    assert sql_literal(0.1) == "0.1" and sql_literal(Decimal("12.50")) == "12.50"
    assert sql_literal("it's") == "_utf8mb4'it''s'"
    assert sql_literal("a\\b") == "_utf8mb4 X'615c62'" and sql_literal("\x00") == "_utf8mb4 X'00'"
    assert sql_literal(dt.date(2026, 1, 2)) == "_utf8mb4'2026-01-02'"
    assert sql_literal(dt.datetime(2026, 1, 2, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))) == \
        "_utf8mb4'2026-01-02 01:00:00'"  # UTC wall time
    assert sql_literal({"k": "é"}) == "_utf8mb4'{\"k\": \"é\"}'"
    with pytest.raises(ValueError):
        sql_literal(float("nan"))


# ------------------------------------------------------------------------------------------ server
HOSTILE = ["O'Brien \"quoted\"", "'; DROP TABLE x; --", "nul\x00byte", "back\\slash", "\\", "\\'", "'\\",
           "日本語 ＦＵＬＬ", "emoji 😀🎉 𠀀 𝄞", "tab\there", "new\nline\r\n", "\\N", "%s %(x)s %% :name ?",
           "", " trailing ", "\x1a ctrl-z"]


@pytest.mark.mysql
@pytest.mark.parametrize("mode", ["", "NO_BACKSLASH_ESCAPES", "ANSI_QUOTES,PIPES_AS_CONCAT"])
def test_literals_mean_the_same_in_every_sql_mode(mysql_url: str, mode: str) -> None:
    engine = db.make_engine(mysql_url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"SET SESSION sql_mode = '{mode}'")
            for s in HOSTILE:
                got = conn.exec_driver_sql("SELECT " + sql_literal(s), execution_options={"no_parameters": True})
                assert got.scalar() == s, (mode, s)
    finally:
        engine.dispose()


@pytest.mark.mysql
def test_strict_mode_on_every_connection(mysql_url: str) -> None:
    """Even when the URL (or the server) asks for a lenient sql_mode: a too-long value is refused, not cut."""
    engine = db.make_engine(mysql_url + "?init_command=SET+sql_mode%3D%27%27")
    try:
        with engine.connect() as conn:
            assert "STRICT_ALL_TABLES" in conn.exec_driver_sql("SELECT @@SESSION.sql_mode").scalar()
    finally:
        engine.dispose()


def _inserts(conn) -> int:
    return int(conn.exec_driver_sql("SHOW SESSION STATUS LIKE 'Com_insert'").all()[0][1])


def _listing(i: int, now: dt.datetime) -> dict:
    return {"source": "t", "listing_id": f"{i:05d}", "title": HOSTILE[i % len(HOSTILE)], "area_m2": 0.1 + i,
            "total_price": Decimal("1.25"), "listed_date": dt.date(2026, 1, 1), "extras": {"n": HOSTILE[i % 9]},
            "first_seen": now, "last_seen": now, "run_id": 1}


@pytest.mark.mysql
@pytest.mark.parametrize("driver", ["pymysql"])  # the shipped driver; mysqlclient is compared in bench/writer.py
@pytest.mark.parametrize("n", [40, 1000])  # the driver's executemany, then the literal bulk path
def test_a_batch_is_a_few_multi_row_statements(mysql_url: str, driver: str, n: int) -> None:
    url = mysql_url.replace("mysql://", f"mysql+{driver}://", 1)
    db.upgrade(url)
    engine = db.make_engine(url)
    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    rows = [_listing(i, now) for i in range(n)]
    key, keep = schema.NATURAL_KEYS["listings"], schema.KEEP_ON_UPDATE["listings"]
    try:
        for _ in range(2):  # the second time every row is a duplicate: updated in place
            with engine.begin() as conn:
                before = _inserts(conn)
                D.upsert_rows(conn, schema.listings, key, keep, rows)
                assert _inserts(conn) - before <= max(1, n // 150), "one statement per row: no rewrite"
    finally:
        engine.dispose()
    got = table(url, "SELECT listing_id, title, area_m2, extras FROM listings ORDER BY listing_id")
    assert [r["title"] for r in got] == [r["title"] for r in rows]
    assert [r["area_m2"] for r in got] == [r["area_m2"] for r in rows]
    assert [json.loads(r["extras"]) for r in got] == [r["extras"] for r in rows]


@pytest.mark.mysql
def test_update_by_key_changes_only_existing_keys_of_its_run(mysql_url: str) -> None:
    check_update_by_key(mysql_url)


def check_update_by_key(url: str) -> None:
    """300 keys: above PostgreSQL's and MySQL's thresholds for their staged UPDATE."""
    db.upgrade(url)
    f = schema.frontier
    engine = db.make_engine(url)
    d = dialect_for(url)
    try:
        with engine.begin() as conn:
            d.insert_new_rows(conn, f, ("run_id", "url_key"), [
                {"run_id": run, "url_key": k, "url": f"u{k}", "kind": "detail", "meta": None, "state": "pending",
                 "lease_owner": None, "lease_until": None, "claims": 0}
                for run in (1, 2) for k in range(300)])
            d.update_by_key(conn, f, {"run_id": 1}, "url_key", "state",
                            {**{k: "done" for k in range(0, 300, 2)}, 1: "failed", 999: "done"})
    finally:
        engine.dispose()
    states = {(r["run_id"], r["url_key"]): r["state"] for r in table(url, "SELECT * FROM frontier")}
    assert len(states) == 600 and (1, 999) not in states
    assert states[(1, 0)] == "done" and states[(1, 1)] == "failed" and states[(1, 3)] == "pending"
    assert all(states[(2, k)] == "pending" for k in range(300))


@pytest.mark.mysql
def test_a_mariadb_url_gets_the_same_tables_and_writes(mysql_url: str) -> None:
    """`mariadb://` is SQLAlchemy's MariaDB-only dialect (named "mariadb": mysql_* options do not apply
    to it); the variants and the table options must reach it too."""
    url = mysql_url.replace("mysql://", "mariadb://", 1)
    writer = writer_for_run(url)
    batch = Batch()
    writer.add(batch, PageDone(1, [{"source": "t", "listing_id": i, "title": HOSTILE[j], "area_m2": 0.1}
                                   for j, i in enumerate(["a", "A", "a "])], [], "done"))
    writer.flush(batch)
    writer.engine.dispose()
    assert [r["title"] for r in table(url, "SELECT title FROM listings ORDER BY title")] == sorted(HOSTILE[:3])
    found = table(url, "SELECT data_type AS t, collation_name AS c FROM information_schema.columns "
                       "WHERE table_schema = DATABASE() AND table_name = 'listings' AND column_name IN "
                       "('area_m2', 'listing_id') ORDER BY column_name")
    assert [(r["t"], r["c"]) for r in found] == [("double", None), ("varchar", "utf8mb4_nopad_bin")]


@pytest.mark.mysql
def test_source_reads_are_read_only(mysql_url: str) -> None:
    db.upgrade(mysql_url)
    engine = db.make_engine(mysql_url)
    try:
        with engine.connect() as conn:
            with conn.begin():
                D.begin_read_only(conn)
                assert conn.exec_driver_sql("SELECT count(*) FROM runs").scalar() == 0
                with pytest.raises(DBAPIError, match="1792"):  # cannot execute in a READ ONLY transaction
                    conn.exec_driver_sql("DELETE FROM runs")
            with conn.begin():  # the next transaction on the same connection writes again
                conn.exec_driver_sql("DELETE FROM runs")
    finally:
        engine.dispose()


@pytest.mark.mysql
def test_keys_differing_in_case_accent_or_trailing_space_are_distinct(mysql_url: str) -> None:
    """Also in a database whose default collation is case-insensitive and pads: the tables we create
    (migrated and config-defined) use a binary no-pad collation of their own."""
    admin_db = make_url(mysql_url).database
    engine = db.make_engine(mysql_url)
    with engine.connect() as conn:
        conn.exec_driver_sql(f"ALTER DATABASE `{admin_db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
    ensure(engine, target_spec("rentals", "code", {"title": "text", "price": "float"}))
    engine.dispose()
    writer = writer_for_run(mysql_url)
    batch = Batch()
    ids = ["a", "A", "a ", "á", "ａ"]
    writer.add(batch, PageDone(1, [{"source": "t", "listing_id": i, "title": i} for i in ids], [], "done"))
    writer.flush(batch)
    writer.engine.dispose()
    assert sorted(r["listing_id"] for r in table(mysql_url, "SELECT listing_id FROM listings")) == sorted(ids)
    collations = {r["t"]: r["c"] for r in table(
        mysql_url, "SELECT table_name AS t, table_collation AS c FROM information_schema.tables "
                   "WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'")}
    assert set(collations.values()) == {"utf8mb4_nopad_bin"}, collations
    assert "rentals" in collations


@pytest.mark.mysql
def test_long_text_is_stored_whole(mysql_url: str) -> None:
    """Text columns are MEDIUMTEXT: 60,000 four-byte characters (240 kB) fit, as on SQLite/PostgreSQL."""
    writer = writer_for_run(mysql_url)
    batch = Batch()
    long = "𠀀" * 60_000
    writer.add(batch, PageDone(1, [{"source": "t", "listing_id": "1", "title": long}], [], "done"))
    writer.flush(batch)
    writer.engine.dispose()
    assert table(mysql_url, "SELECT title FROM listings")[0]["title"] == long


@pytest.mark.mysql
def test_a_deadlock_inside_the_upsert_retries_the_whole_batch(mysql_url: str) -> None:
    """InnoDB rolls back the deadlock victim's whole transaction, links inserted before the upsert
    included. Treated as refused data, the batch would go on row by row in a fresh transaction and
    commit its rows without those links; it must be retried whole instead."""
    writer = writer_for_run(mysql_url)
    other = db.make_engine(mysql_url)
    conn = other.connect()
    with conn.begin():
        conn.exec_driver_sql("CREATE TABLE scratch (i INT PRIMARY KEY)")
    tx = conn.begin()  # many changes, so that InnoDB picks the writer as the victim; then hold listing k2
    conn.exec_driver_sql("INSERT INTO scratch VALUES " + ",".join(f"({i})" for i in range(5000)))
    conn.execute(text("INSERT INTO listings (source, listing_id, first_seen, last_seen, run_id) "
                      "VALUES ('t', 'k2', NOW(), NOW(), 1)"))

    def close_the_cycle() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not table(
                mysql_url, "SELECT count(*) AS n FROM information_schema.innodb_trx "
                           "WHERE trx_state = 'LOCK WAIT'")[0]["n"]:
            time.sleep(0.05)  # until the writer waits for k2, holding its new links
        try:
            conn.execute(text("INSERT INTO frontier (run_id, url_key, url, kind, state) "
                              "VALUES (1, :k, 'x', 'detail', 'pending')"), {"k": fingerprint("http://a.test/0")})
            victims.append("writer")  # our insert went through: InnoDB rolled the writer back
            time.sleep(0.3)
        finally:
            tx.rollback()

    victims: list[str] = []
    thread = threading.Thread(target=close_the_cycle)
    thread.start()
    batch = Batch()
    links = [Link(f"http://a.test/{i}", fingerprint(f"http://a.test/{i}"), "detail", "{}") for i in range(3)]
    writer.add(batch, PageDone(fingerprint("http://a.test/list"), [{"source": "t", "listing_id": f"k{i}"}
                                                                   for i in range(5)], links, "done"))
    writer.flush(batch)
    thread.join()
    conn.close()
    other.dispose()
    writer.engine.dispose()
    assert victims == ["writer"]
    assert [r["url"] for r in table(mysql_url, "SELECT url FROM frontier ORDER BY url")] == \
        [link.url for link in links]
    assert len(table(mysql_url, "SELECT listing_id FROM listings")) == 5
    assert not table(mysql_url, "SELECT * FROM failures")


@pytest.mark.mysql
def test_a_migration_failing_half_way_says_what_it_left(mysql_url: str) -> None:
    """DDL commits as it goes on MySQL: the error names the revision reached and the tables the failed
    revision had created, and upgrading works once those are gone."""
    engine = db.make_engine(mysql_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE stock_daily_sentiment (x INT)")  # 0002's view cannot be created
    with pytest.raises(db.DatabaseError) as failed:
        db.upgrade(mysql_url)
    message = str(failed.value)
    assert "revision 0002 failed" in message and "Table 'stock_daily_sentiment' already exists" in message
    assert "stays at schema revision 0001" in message and "stock_mentions, stocks" in message
    assert "\n" not in message
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE stock_daily_sentiment, stock_mentions, stocks")
    engine.dispose()
    assert db.upgrade(mysql_url) == db.head_revision()

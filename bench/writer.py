"""Writer throughput: etl's upsert path vs the database's own fastest way in (the limit), side by side.

Why: the writer is ONE process; if it cannot keep up, every crawl is capped at its rows/s. The figures
are on the same rows (listing rows as the extractor produces them, from the demo site's ground truth):

  limit     PostgreSQL: psycopg2 copy_expert (CSV) into an unindexed table with the listings columns.
            MySQL/MariaDB: LOAD DATA LOCAL INFILE into an unindexed copy of listings, or, where
            local_infile is off (client or server), a bare multi-row INSERT of the same rows
  upsert    `conn.execute(dialect.upsert_statement(...), 1000 rows)` per transaction: the bare statement
  rows      `Writer.flush` of 1000-row batches without frontier bookkeeping: the writer's row path alone
  writer    `Writer.add` + `Writer.flush` fed the crawl's message stream (a list page's 30 new links,
            then one 1-row message per detail page, each marking its frontier entry done): the real path

MySQL: a URL without a driver (`mysql://…`) runs the row and writer paths once per driver in --drivers
(PyMySQL, mysqlclient), alternately with the limit, and counts the INSERT statements the server saw per
1000-row batch (1 is one multi-row INSERT, 1000 a loop); `--executemany` measures the drivers' own
executemany rewrite instead of the dialect's literal bulk path. Last, the frontier's page states: the
dialect's UPDATE … IN (…) against an executemany of UPDATE.

    python bench/writer.py PG_URL [--rows 100000]      # prints one JSON line (bench/run.py reads it)
    python bench/writer.py mysql://root@127.0.0.1/db   # one line per figure, then one JSON line
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

from sqlalchemy import insert, text

from etl import db, schema
from etl.demo.site import DemoSite, SiteOptions
from etl.dialects import dialect_for, scheme
from etl.items import Link, PageDone
from etl.targets import target_spec
from etl.urls import fingerprint
from etl.write import Batch, Writer, WriterSettings

COLUMNS = [c.name for c in schema.listings.columns]
LISTINGS = target_spec("listings", None, {})


def listing_rows(n: int) -> list[dict[str, Any]]:
    """n rows shaped like the extractor's output (source, typed columns, extras dict)."""
    truth = DemoSite(SiteOptions(listings=n)).truth("bj")
    return [{"source": "demo", **t} for t in truth]


def _full(row: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    return {**{c: row.get(c) for c in COLUMNS}, "first_seen": now, "last_seen": now, "run_id": 1}


# ---------------------------------------------------------------------------------------- the limits
def bench_copy(url: str, rows: list[dict[str, Any]]) -> float:
    import psycopg2

    now = dt.datetime.now(dt.UTC)
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS listings_copy; CREATE TABLE listings_copy "
                    "(LIKE listings INCLUDING DEFAULTS)")  # no INCLUDING INDEXES: no primary key
    t0 = time.perf_counter()
    for i in range(0, len(rows), 1000):
        buf = io.StringIO()
        w = csv.writer(buf)
        for r in rows[i:i + 1000]:
            full = _full(r, now)
            w.writerow([json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else ("" if v is None else v)
                        for v in (full[c] for c in COLUMNS)])
        buf.seek(0)
        with conn, conn.cursor() as cur:
            cur.copy_expert(f"COPY listings_copy ({', '.join(COLUMNS)}) FROM STDIN WITH (FORMAT csv)", buf)
    wall = time.perf_counter() - t0
    conn.close()
    return wall


def _mysql_raw(url: str, **kwargs):
    """A bare PyMySQL connection to the URL's server (no SQLAlchemy, no dialect)."""
    import pymysql
    from sqlalchemy.engine import make_url

    u = make_url(dialect_for(url).driver_url(url))
    return pymysql.connect(host=u.host or "localhost", port=u.port or 3306, user=u.username, password=u.password or "",
                           database=u.database, charset="utf8mb4", **kwargs)


def _tsv(value: Any) -> str:
    """One LOAD DATA field (its default escapes: \\N for NULL, backslash before tab, newline, backslash)."""
    if value is None:
        return "\\N"
    if isinstance(value, dict):
        value = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, dt.datetime):
        value = value.replace(tzinfo=None).isoformat(" ")
    text_ = str(value)
    return text_.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n") if any(
        ch in text_ for ch in "\\\t\n") else text_


def bench_mysql_limit(url: str, rows: list[dict[str, Any]], how: str) -> float:
    """`how` = load (LOAD DATA LOCAL INFILE) or insert (multi-row INSERT), 1000 rows per transaction,
    into an unindexed copy of listings."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    conn = _mysql_raw(url, local_infile=how == "load")
    cols = ", ".join(f"`{c}`" for c in COLUMNS)
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS listings_load")
        cur.execute("CREATE TABLE listings_load AS SELECT * FROM listings WHERE 1 = 0")  # no keys, no indexes
    conn.commit()
    path = os.path.join(tempfile.gettempdir(), f"etl-bench-{os.getpid()}.tsv")
    insert_sql = f"INSERT INTO listings_load ({cols}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"
    t0 = time.perf_counter()
    try:
        for i in range(0, len(rows), 1000):
            chunk = [_full(r, now) for r in rows[i:i + 1000]]
            with conn.cursor() as cur:
                if how == "load":
                    with open(path, "w", encoding="utf-8") as fh:
                        fh.writelines("\t".join(_tsv(r[c]) for c in COLUMNS) + "\n" for r in chunk)
                    cur.execute(f"LOAD DATA LOCAL INFILE %s INTO TABLE listings_load CHARACTER SET utf8mb4 ({cols})",
                                (path,))
                else:
                    cur.executemany(insert_sql, [[json.dumps(r[c], ensure_ascii=False) if isinstance(r[c], dict)
                                                  else r[c] for c in COLUMNS] for r in chunk])
            conn.commit()
    finally:
        if os.path.exists(path):
            os.unlink(path)
        conn.close()
    return time.perf_counter() - t0


def mysql_limit_kind(url: str) -> str:
    """load if LOAD DATA LOCAL INFILE works here (local_infile on the server too), else insert."""
    try:
        bench_mysql_limit(url, listing_rows(10), "load")
        return "load"
    except Exception as exc:  # 1148/3948: local_infile is off on the server
        print(f"LOAD DATA LOCAL INFILE unavailable ({exc}); the limit is a bare multi-row INSERT", file=sys.stderr)
        return "insert"


# ---------------------------------------------------------------------------------------- etl's paths
def _clear(conn, *tables: str) -> None:
    for name in tables:
        conn.execute(text(f"DELETE FROM {name}"))


def bench_upsert(url: str, rows: list[dict[str, Any]]) -> float:
    engine = db.make_engine(url)
    d = dialect_for(url)
    stmt = d.upsert_statement(schema.listings, schema.NATURAL_KEYS["listings"], schema.KEEP_ON_UPDATE["listings"])
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        _clear(conn, "listings")
    t0 = time.perf_counter()
    for i in range(0, len(rows), 1000):
        with engine.begin() as conn:
            conn.execute(stmt, [_full(r, now) for r in rows[i:i + 1000]])
    wall = time.perf_counter() - t0
    engine.dispose()
    return wall


def _new_run(url: str) -> int:
    engine = db.make_engine(url)
    with engine.begin() as conn:
        _clear(conn, "listing_history", "listings", "frontier")  # every repetition starts from empty tables
        run_id = conn.execute(insert(schema.runs).values(
            job="bench-writer", config_digest="x", started_at=dt.datetime.now(dt.UTC), status="running",
            pages_ok=0, pages_failed=0, rows_written=0)).inserted_primary_key[0]
    engine.dispose()
    return run_id


def _writer(url: str) -> Writer:
    return Writer(WriterSettings(url=url, target=LISTINGS, run_id=_new_run(url), batch_size=1000))


def _inserts_seen(writer: Writer) -> int:
    """The server's count of INSERT statements on the writer's (only) connection so far (MySQL)."""
    with writer.engine.connect() as conn:
        return int(conn.execute(text("SHOW SESSION STATUS LIKE 'Com_insert'")).all()[0][1])


def bench_rows_only(url: str, rows: list[dict[str, Any]], count: bool = False) -> tuple[float, float, float | None]:
    """Wall seconds, this process's CPU seconds (the driver's share shows here, whatever else the shared
    machine is doing), and (count=True, MySQL) INSERT statements per 1000-row batch."""
    writer = _writer(url)
    before = _inserts_seen(writer) if count else 0
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, len(rows), 1000):
        batch = Batch()
        for r in rows[i:i + 1000]:
            full = {c: r.get(c) for c in writer.columns}
            batch.rows[tuple(full[k] for k in writer.key)] = full
        writer.flush(batch)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    per_batch = (_inserts_seen(writer) - before) / max(1, writer.batches) if count else None
    writer.engine.dispose()
    return wall, cpu, per_batch


def crawl_messages(rows: list[dict[str, Any]]) -> list[PageDone]:
    base = "http://127.0.0.1:8000"
    msgs: list[PageDone] = []
    for i in range(0, len(rows), 30):  # one list page: 30 detail links discovered, then the details
        chunk = rows[i:i + 30]
        links = [Link(base + r["url"], fingerprint(base + r["url"]), "detail", json.dumps({"key": r["listing_id"]}))
                 for r in chunk]
        msgs.append(PageDone(fingerprint(f"{base}/bj/ershoufang/pg{i // 30 + 2}/"), [], links, "done"))
        msgs.extend(PageDone(fingerprint(base + r["url"]), [r], [], "done") for r in chunk)
    return msgs


def bench_writer(url: str, rows: list[dict[str, Any]]) -> float:
    writer = _writer(url)
    msgs = crawl_messages(rows)
    t0 = time.perf_counter()
    batch = Batch()
    for msg in msgs:  # the loop of writer_main, without the queue
        writer.add(batch, msg)
        if len(batch) >= 1000:
            writer.flush(batch)
            batch = Batch()
    writer.flush(batch)
    wall = time.perf_counter() - t0
    writer.engine.dispose()
    return wall


def bench_states(url: str, n: int = 30_000) -> dict[str, float]:
    """Marking frontier entries done/failed, 1000 keys per transaction, on a frontier of n entries: the
    dialect's update_by_key (one UPDATE … IN (…) per state) vs the base class's executemany of UPDATE."""
    from etl.dialects.base import Dialect

    d, f = dialect_for(url), schema.frontier
    engine = db.make_engine(url)
    keys = [fingerprint(f"http://127.0.0.1/{k}") for k in range(n)]
    with engine.begin() as conn:
        _clear(conn, "frontier")
        for i in range(0, n, 5000):
            d.insert_new_rows(conn, f, ("run_id", "url_key"), [
                {"run_id": 1, "url_key": k, "url": "u", "kind": "detail", "meta": None, "state": "pending"}
                for k in keys[i:i + 5000]])
    ways = {"in_lists": d.update_by_key, "executemany": lambda *a: Dialect.update_by_key(d, *a)}
    out: dict[str, float] = {}
    for name, way in ways.items():
        t0 = time.perf_counter()
        for i in range(0, n, 1000):
            with engine.begin() as conn:
                way(conn, f, {"run_id": 1}, "url_key", "state",
                    {k: "failed" if j % 3 == 0 else name[:8] for j, k in enumerate(keys[i:i + 1000])})
        out[f"states_{name}_ms_per_1000"] = round(1000 * (time.perf_counter() - t0) / (n / 1000), 1)
    engine.dispose()
    return out


def _count(url: str, table: str) -> int:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() or 0)
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------------- runs
def run_postgres(url: str, rows: list[dict[str, Any]], repeat: int) -> dict[str, Any]:
    result: dict[str, Any] = {"rows": len(rows)}
    # The machine is shared: the compared paths run alternately, `repeat` times, and medians are kept.
    runs: dict[str, list[float]] = {"copy_s": [], "rows_only_s": [], "writer_s": []}
    for _ in range(repeat):
        runs["copy_s"].append(bench_copy(url, rows))
        runs["rows_only_s"].append(bench_rows_only(url, rows)[0])
        runs["writer_s"].append(bench_writer(url, rows))
    for key, values in runs.items():
        result[key] = statistics.median(values)
        result[key.removesuffix("_s") + "_runs_s"] = [round(v, 3) for v in values]
    result["upsert_s"] = bench_upsert(url, rows)  # the slow bare statement: once
    bench_writer(url, rows)  # leaves listings as the writer path writes them, for the row check
    result["rows_listings"], result["rows_copy"] = _count(url, "listings"), _count(url, "listings_copy")
    return result


def run_mysql(url: str, rows: list[dict[str, Any]], repeat: int, drivers: list[str]) -> dict[str, Any]:
    from sqlalchemy.engine import make_url

    given = make_url(url)
    urls = {d: given.set(drivername=f"{given.get_backend_name()}+{d}").render_as_string(hide_password=False)
            for d in drivers} if "+" not in given.drivername else {given.get_driver_name(): url}
    kind = mysql_limit_kind(url)
    result: dict[str, Any] = {"rows": len(rows), "limit": "LOAD DATA LOCAL INFILE" if kind == "load"
                              else "multi-row INSERT"}
    runs: dict[str, list[float]] = {"limit_s": [], "bare_insert_s": []}
    per_batch: dict[str, float | None] = {}
    for _ in range(repeat):  # alternately: limit, then each driver's row path and writer path
        runs["limit_s"].append(bench_mysql_limit(url, rows, kind))
        runs["bare_insert_s"].append(bench_mysql_limit(url, rows, "insert"))
        for name, u in urls.items():
            wall, cpu, per_batch[name] = bench_rows_only(u, rows, count=True)
            runs.setdefault(f"{name}_rows_only_s", []).append(wall)
            runs.setdefault(f"{name}_rows_only_cpu_s", []).append(cpu)
            runs.setdefault(f"{name}_writer_s", []).append(bench_writer(u, rows))
    for key, values in runs.items():
        result[key] = statistics.median(values)
        result[key.removesuffix("_s") + "_runs_s"] = [round(v, 3) for v in values]
    for name in urls:
        result[f"{name}_inserts_per_batch"] = per_batch[name]
        result[f"{name}_rows_only_vs_limit"] = round(result["limit_s"] / result[f"{name}_rows_only_s"], 3)
        result[f"{name}_writer_vs_limit"] = round(result["limit_s"] / result[f"{name}_writer_s"], 3)
    result["rows_listings"], result["rows_limit"] = _count(url, "listings"), _count(url, "listings_load")
    result.update(bench_states(url))
    n = len(rows)
    print(f"limit ({result['limit']}, unindexed): {n / result['limit_s']:,.0f} rows/s; bare multi-row INSERT "
          f"{n / result['bare_insert_s']:,.0f} rows/s")
    for name in urls:
        print(f"{name}: rows path {n / result[f'{name}_rows_only_s']:,.0f} rows/s = "
              f"{result[f'{name}_rows_only_vs_limit']:.3f} of the limit; with frontier bookkeeping "
              f"{n / result[f'{name}_writer_s']:,.0f} rows/s = {result[f'{name}_writer_vs_limit']:.3f}; "
              f"{per_batch[name]:.1f} INSERT statements per 1000-row batch; client CPU "
              f"{1000 * 1000 * result[f'{name}_rows_only_cpu_s'] / n:.1f} ms per 1000 rows on the rows path")
    print(f"frontier states, ms per 1000 keys: UPDATE … IN (…) {result['states_in_lists_ms_per_1000']}, "
          f"executemany of UPDATE {result['states_executemany_ms_per_1000']}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url", help="a PostgreSQL or MySQL/MariaDB URL (its tables are emptied)")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--drivers", default="pymysql,mysqldb", help="MySQL drivers to compare (mysql:// URLs)")
    ap.add_argument("--executemany", action="store_true",
                    help="MySQL: turn the dialect's literal bulk path off (the drivers' own executemany rewrite)")
    args = ap.parse_args()
    if args.executemany:
        import etl.dialects.mysql

        etl.dialects.mysql.BULK_THRESHOLD = 10**9
    db.upgrade(args.url)
    rows = listing_rows(args.rows)
    if scheme(args.url) in ("mysql", "mariadb"):
        result = run_mysql(args.url, rows, args.repeat, args.drivers.split(","))
    else:
        result = run_postgres(args.url, rows, args.repeat)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

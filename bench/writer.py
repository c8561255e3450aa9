"""Writer throughput: etl's upsert path into PostgreSQL vs a plain COPY into an unindexed table (the limit).

Why: the writer is ONE process; if it cannot keep up, every crawl is capped at its rows/s. Three figures
on the same rows (listing rows as the extractor produces them, from the demo site's ground truth):

  copy      psycopg2 copy_expert (CSV) into an unindexed table with the listings columns: the ceiling
  upsert    `conn.execute(upsert_statement(...), 1000 rows)` per transaction: the bare statement
  rows      `Writer.flush` of 1000-row batches without frontier bookkeeping: the writer's row path alone
  writer    `Writer.add` + `Writer.flush` fed the crawl's message stream (a list page's 30 new links,
            then one 1-row message per detail page, each marking its frontier entry done): the real path

    python bench/writer.py PG_URL [--rows 100000]   # prints one JSON line
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import statistics
import time
from typing import Any

import psycopg2
from sqlalchemy import insert, text

from etl import db, schema
from etl.demo.site import DemoSite, SiteOptions
from etl.write import Batch, Writer, WriterSettings, upsert_statement


def listing_rows(n: int) -> list[dict[str, Any]]:
    """n rows shaped like the extractor's output (source, typed columns, extras dict)."""
    truth = DemoSite(SiteOptions(listings=n)).truth("bj")
    return [{"source": "demo", **t} for t in truth]


def bench_copy(url: str, rows: list[dict[str, Any]], columns: list[str]) -> float:
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
            full = {**r, "first_seen": now, "last_seen": now, "run_id": 1}
            w.writerow([json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else ("" if v is None else v)
                        for v in (full.get(c) for c in columns)])
        buf.seek(0)
        with conn, conn.cursor() as cur:
            cur.copy_expert(f"COPY listings_copy ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)", buf)
    wall = time.perf_counter() - t0
    conn.close()
    return wall


def bench_upsert(url: str, rows: list[dict[str, Any]], columns: list[str]) -> float:
    engine = db.make_engine(url)
    stmt = upsert_statement(engine, "listings")
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE listings"))
    t0 = time.perf_counter()
    for i in range(0, len(rows), 1000):
        chunk = [{**{c: r.get(c) for c in columns}, "first_seen": now, "last_seen": now, "run_id": 1}
                 for r in rows[i:i + 1000]]
        with engine.begin() as conn:
            conn.execute(stmt, chunk)
    wall = time.perf_counter() - t0
    engine.dispose()
    return wall


def _new_run(url: str) -> int:
    engine = db.make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE listings, frontier"))  # every repetition starts from empty tables
        run_id = conn.execute(insert(schema.runs).values(
            job="bench-writer", config_digest="x", started_at=dt.datetime.now(dt.UTC), status="running",
            pages_ok=0, pages_failed=0, rows_written=0)).inserted_primary_key[0]
    engine.dispose()
    return run_id


def bench_rows_only(url: str, rows: list[dict[str, Any]]) -> float:
    writer = Writer(WriterSettings(url=url, table="listings", run_id=_new_run(url), batch_size=1000))
    t0 = time.perf_counter()
    for i in range(0, len(rows), 1000):
        batch = Batch()
        for r in rows[i:i + 1000]:
            full = {c: r.get(c) for c in writer.columns}
            batch.rows[tuple(full[k] for k in writer.key)] = full
        writer.flush(batch)
    wall = time.perf_counter() - t0
    writer.engine.dispose()
    return wall


def bench_writer(url: str, rows: list[dict[str, Any]]) -> float:
    writer = Writer(WriterSettings(url=url, table="listings", run_id=_new_run(url), batch_size=1000))
    base = "http://127.0.0.1:8000"
    msgs: list[tuple] = []
    for i in range(0, len(rows), 30):  # one list page: 30 detail links discovered, then the details
        chunk = rows[i:i + 30]
        links = [(base + r["url"], "detail", json.dumps({"key": r["listing_id"]})) for r in chunk]
        msgs.append(("page", f"{base}/bj/ershoufang/pg{i // 30 + 2}/", [], links, "done"))
        msgs.extend(("page", base + r["url"], [r], [], "done") for r in chunk)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pg_url")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    db.upgrade(args.pg_url)
    rows = listing_rows(args.rows)
    columns = [c.name for c in schema.listings.columns]
    result: dict[str, Any] = {"rows": len(rows)}
    # The machine is shared: the compared paths run alternately, `--repeat` times, and medians are kept.
    runs: dict[str, list[float]] = {"copy_s": [], "rows_only_s": [], "writer_s": []}
    for _ in range(args.repeat):
        runs["copy_s"].append(bench_copy(args.pg_url, rows, columns))
        runs["rows_only_s"].append(bench_rows_only(args.pg_url, rows))
        runs["writer_s"].append(bench_writer(args.pg_url, rows))
    for key, values in runs.items():
        result[key] = statistics.median(values)
        result[key.replace("_s", "_runs_s")] = [round(v, 3) for v in values]
    result["upsert_s"] = bench_upsert(args.pg_url, rows, columns)  # the slow bare statement: once
    bench_writer(args.pg_url, rows)  # leaves listings as the writer path writes them, for the row check
    n = psycopg2.connect(args.pg_url)
    with n, n.cursor() as cur:
        cur.execute("SELECT (SELECT count(*) FROM listings), (SELECT count(*) FROM listings_copy)")
        result["rows_listings"], result["rows_copy"] = cur.fetchone()
    n.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""`etl demo seed-news`: fill a news table with synthetic scored articles for the sql source.

The table stands for a user's existing table of scored news (it is not part of our schema, so it is not
created by the migrations). Articles are generated on a process pool (two cores → twice the rate) and
loaded with COPY on PostgreSQL, executemany on SQLite.
"""

from __future__ import annotations

import io
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor

from sqlalchemy import BigInteger, Column, Date, Float, MetaData, Table, Text, inspect

from etl.db import make_engine
from etl.write import copy_value

CHUNK = 10_000


def news_table(name: str = "news") -> Table:
    return Table(name, MetaData(), Column("id", BigInteger, primary_key=True), Column("published", Date),
                 Column("title", Text), Column("body", Text), Column("score", Float))


def _chunk(args: tuple[int, int, int, bool]) -> str | list[dict]:
    from etl.demo.news import generate_articles

    start, n, seed, as_tsv = args
    arts = generate_articles(n, seed=seed, start_id=start)
    if as_tsv:
        return "".join("\t".join(map(copy_value, (a.id, a.published, a.title, a.body, a.score))) + "\n"
                       for a in arts)
    return [{"id": a.id, "published": a.published, "title": a.title, "body": a.body, "score": a.score}
            for a in arts]


def table_exists(url: str, name: str) -> bool:
    engine = make_engine(url)
    try:
        return inspect(engine).has_table(name)
    finally:
        engine.dispose()


def seed_news(url: str, rows: int, table: str = "news", seed: int = 0, processes: int = 0) -> int:
    """Replace `table` with `rows` synthetic articles (ids 1..rows). Returns the number loaded."""
    engine = make_engine(url)
    t = news_table(table)
    t.drop(engine, checkfirst=True)
    t.create(engine)
    postgres = engine.dialect.name == "postgresql"
    chunks = [(start, min(CHUNK, rows - start + 1), seed, postgres) for start in range(1, rows + 1, CHUNK)]
    ctx = mp.get_context("spawn")
    try:
        with ProcessPoolExecutor(max_workers=processes or min(4, mp.cpu_count()), mp_context=ctx) as pool:
            raw = engine.raw_connection()
            try:
                cur = raw.cursor()
                for data in pool.map(_chunk, chunks):
                    if postgres:
                        cur.copy_expert(f"COPY {table} (id, published, title, body, score) FROM STDIN", io.StringIO(data))
                    else:
                        cur.executemany(f"INSERT INTO {table} (id, published, title, body, score) "
                                        "VALUES (:id, :published, :title, :body, :score)",
                                        [{**d, "published": d["published"].isoformat()} for d in data])
                raw.commit()
            finally:
                raw.close()
        if postgres:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"ANALYZE {table}")
    finally:
        engine.dispose()
    return rows

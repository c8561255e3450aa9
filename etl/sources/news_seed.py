"""`etl demo seed-news`: fill a news table with synthetic scored articles for the sql source.

The table stands for a user's existing table of scored news (it is not part of our schema, so it is not
created by the migrations). Articles are generated and encoded for the database's bulk path (COPY text,
or rows for a multi-row INSERT: the dialect's) on a process pool, two cores giving twice the rate.
"""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from sqlalchemy import BigInteger, Column, Date, Float, MetaData, Table, Text, inspect

from etl.db import make_engine
from etl.dialects import dialect_for

CHUNK = 10_000
COLUMNS = ["id", "published", "title", "body", "score"]


def news_table(name: str = "news") -> Table:
    return Table(name, MetaData(), Column("id", BigInteger, primary_key=True), Column("published", Date),
                 Column("title", Text), Column("body", Text), Column("score", Float(53)))


def _chunk(args: tuple[int, int, int, str]) -> Any:
    from etl.demo.news import generate_articles

    start, n, seed, url = args
    arts = generate_articles(n, seed=seed, start_id=start)
    return dialect_for(url).encode_bulk(COLUMNS, [(a.id, a.published, a.title, a.body, a.score) for a in arts])


def table_exists(url: str, name: str) -> bool:
    engine = make_engine(url)
    try:
        return inspect(engine).has_table(name)
    finally:
        engine.dispose()


def seed_news(url: str, rows: int, table: str = "news", seed: int = 0, processes: int = 0) -> int:
    """Replace `table` with `rows` synthetic articles (ids 1..rows). Returns the number loaded."""
    engine = make_engine(url)
    dialect = dialect_for(url)
    t = news_table(table)
    t.drop(engine, checkfirst=True)
    t.create(engine)
    chunks = [(start, min(CHUNK, rows - start + 1), seed, url) for start in range(1, rows + 1, CHUNK)]
    ctx = mp.get_context("spawn")
    try:
        with ProcessPoolExecutor(max_workers=processes or min(4, mp.cpu_count()), mp_context=ctx) as pool:
            with engine.begin() as conn:
                for payload in pool.map(_chunk, chunks):
                    dialect.load_bulk(conn, t, payload)
        with engine.begin() as conn:
            dialect.analyze(conn, table)
    finally:
        engine.dispose()
    return rows

"""The migrations and etl/schema.py describe the same tables (the code writes what Alembic created)."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from etl import db, schema


def _check(url: str) -> None:
    db.upgrade(url)
    engine = db.make_engine(url)
    try:
        found = inspect(engine)
        for table in schema.metadata.sorted_tables:
            columns = {c["name"]: c for c in found.get_columns(table.name)}
            assert list(columns) == [c.name for c in table.columns], table.name
            for c in table.columns:
                assert columns[c.name]["nullable"] == (c.nullable and not c.primary_key), (table.name, c.name)
            assert found.get_pk_constraint(table.name)["constrained_columns"] == [c.name for c in table.primary_key]
    finally:
        engine.dispose()


def test_migrations_match_schema_sqlite(sqlite_url: str) -> None:
    _check(sqlite_url)


@pytest.mark.postgres
def test_migrations_match_schema_postgres(pg_url: str) -> None:
    _check(pg_url)


@pytest.mark.mysql
def test_migrations_match_schema_mysql(mysql_url: str) -> None:
    """Plus what MySQL would otherwise degrade: double precision floats, text longer than 64 kB, keys
    compared by code point (the view of 0002 is there and answers)."""
    from sqlalchemy import Float, Text

    from tests.test_e2e_listings import table

    _check(mysql_url)
    columns = {(r["t"], r["c"]): r for r in table(
        mysql_url, "SELECT table_name AS t, column_name AS c, data_type AS type, collation_name AS coll "
                   "FROM information_schema.columns WHERE table_schema = DATABASE()")}
    for t in schema.metadata.sorted_tables:
        for c in t.columns:
            found = columns[(t.name, c.name)]
            if isinstance(c.type, Float) or isinstance(getattr(c.type, "impl", None), Float):
                assert found["type"] == "double", (t.name, c.name, found)
            elif type(c.type) is Text:
                assert found["type"] == "mediumtext", (t.name, c.name, found)
            if found["coll"] and c.name != "extras":  # JSON is utf8mb4_bin by definition
                assert found["coll"] == "utf8mb4_nopad_bin", (t.name, c.name, found)
    assert table(mysql_url, "SELECT count(*) AS n FROM stock_daily_sentiment")[0]["n"] == 0

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

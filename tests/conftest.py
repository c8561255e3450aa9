"""Shared fixtures: a scratch PostgreSQL database per test session, and helpers to run jobs in-process.

PostgreSQL tests use ETL_TEST_PG_URL (default postgresql://postgres@127.0.0.1:5432/postgres) to create a
scratch database and drop it afterwards. If the server is unreachable they are skipped — unless
ETL_REQUIRE_PG=1 (as in CI), which turns that into a failure.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("ETL_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def _admin_engine():
    url = PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg2://", 1)
    return create_engine(url, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def pg_server() -> str:
    """Base URL of a reachable PostgreSQL server (with the admin database name)."""
    try:
        engine = _admin_engine()
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        if os.environ.get("ETL_REQUIRE_PG") == "1":
            pytest.fail(f"PostgreSQL required (ETL_REQUIRE_PG=1) but unreachable at {PG_ADMIN_URL}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN_URL}")
    return PG_ADMIN_URL


@pytest.fixture
def pg_url(pg_server: str):
    """A fresh, empty database for one test; dropped afterwards."""
    name = f"etl_test_{uuid.uuid4().hex[:10]}"
    engine = _admin_engine()
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = pg_server.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'etl.db'}"


@pytest.fixture
def demo_config() -> str:
    return str(ROOT / "config" / "demo.toml")

"""Shared fixtures: a scratch PostgreSQL or MySQL/MariaDB database per test, and helpers to run jobs in-process.

PostgreSQL tests use ETL_TEST_PG_URL (default postgresql://postgres@127.0.0.1:5432/postgres) to create a
scratch database and drop it afterwards. If the server is unreachable they are skipped — unless
ETL_REQUIRE_PG=1 (as in CI), which turns that into a failure. MySQL/MariaDB tests do the same with
ETL_TEST_MYSQL_URL (default mysql://root@127.0.0.1:3306/mysql) and ETL_REQUIRE_MYSQL=1.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("ETL_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
MYSQL_ADMIN_URL = os.environ.get("ETL_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/mysql")


def _admin_engine():
    url = PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg2://", 1)
    return create_engine(url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)  # survives a server restart


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


def mysql_admin_engine():
    from etl.dialects.mysql import MySQLDialect

    return create_engine(MySQLDialect().driver_url(MYSQL_ADMIN_URL), isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def mysql_server() -> str:
    """URL of a reachable MySQL/MariaDB server (with the admin database name)."""
    try:
        engine = mysql_admin_engine()
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        if os.environ.get("ETL_REQUIRE_MYSQL") == "1":
            pytest.fail(f"MySQL required (ETL_REQUIRE_MYSQL=1) but unreachable at {MYSQL_ADMIN_URL}: {exc}")
        pytest.skip(f"MySQL unreachable at {MYSQL_ADMIN_URL}")
    return MYSQL_ADMIN_URL


@pytest.fixture
def mysql_url(mysql_server: str):
    """A fresh, empty utf8mb4 database for one test; dropped afterwards."""
    name = f"etl_test_{uuid.uuid4().hex[:10]}"
    engine = mysql_admin_engine()
    with engine.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
    yield make_url(mysql_server).set(database=name).render_as_string(hide_password=False)
    with engine.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'etl.db'}"


@pytest.fixture
def demo_config() -> str:
    return str(ROOT / "config" / "demo.toml")

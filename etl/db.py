"""Engines and migrations. Every process calls make_engine() itself: engines never cross a fork."""

from __future__ import annotations

import logging
import time
from importlib import resources
from pathlib import Path

from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from etl.dialects import dialect_for
from etl.dialects.base import mask_url
from etl.errors import one_line

log = logging.getLogger("etl.db")
MIGRATION_WAIT = 600.0  # seconds a process waits for another's migration before giving up


class DatabaseError(Exception):
    """The database cannot be used (unreachable, wrong schema version); str() is one line for the user."""


def make_engine(url: str, **kwargs) -> Engine:
    """A fresh engine for this process, set up as its database's dialect says (etl/dialects/)."""
    return dialect_for(url).create_engine(url, **kwargs)


def migrations_dir() -> Path:
    return Path(str(resources.files("etl.migrations")))


def _alembic_config(connection=None):
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _connect_and_lock(url: str, engine: Engine, lock, connect_wait: float) -> str | None:
    """Take the migration lock and read the schema revision, retrying a refused or dropped connection for
    `connect_wait` seconds (a database container still starting next to the job)."""
    deadline = time.monotonic() + connect_wait
    delay = 0.5
    while True:
        try:
            # Two processes starting on a brand-new database would both create the schema: the second
            # waits here for the first, then finds the schema current.
            if not lock.acquire(MIGRATION_WAIT):
                raise DatabaseError(f"another process has been migrating {mask_url(url)} for "
                                    f"{MIGRATION_WAIT:.0f} s; try again when it is done")
            return current_revision(engine)
        except SQLAlchemyError as exc:
            lock.release()
            if time.monotonic() + delay > deadline or not dialect_for(url).is_transient(exc):
                waited = f" (tried for {connect_wait:.0f} s)" if connect_wait else ""
                raise DatabaseError(f"cannot connect to {mask_url(url)}{waited}: {one_line(exc, 1000)}") from None
            log.warning("cannot connect to %s yet; trying again in %.1f s", mask_url(url), delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            engine.dispose()


def upgrade(url: str, connect_wait: float = 0.0) -> str:
    """Bring the schema to the code's head revision; refuse a database that is newer than the code."""
    from alembic import command
    from alembic.script import ScriptDirectory

    engine = make_engine(url)
    lock = dialect_for(url).named_lock(url, "etl:migrate")
    try:
        current = _connect_and_lock(url, engine, lock, connect_wait)
        script = ScriptDirectory.from_config(_alembic_config())
        known = {rev.revision for rev in script.walk_revisions()}
        if current is not None and current not in known:
            raise DatabaseError(f"database {mask_url(url)} has schema revision {current}, newer than this "
                                f"version of etl knows (head {script.get_current_head()}); upgrade etl")
        order = [rev.revision for rev in reversed(list(script.walk_revisions()))]  # base → head
        pending = order[order.index(current) + 1:] if current else order
        # All in one transaction where DDL is transactional; else one revision at a time, so that a
        # failure can say exactly which revision's tables were left behind.
        for step in (pending[-1:] if dialect_for(url).transactional_ddl else pending):
            tables = set(inspect(engine).get_table_names())
            try:
                with engine.begin() as conn:
                    command.upgrade(_alembic_config(conn), step)
            except SQLAlchemyError as exc:
                raise _migration_failed(url, engine, step, tables, exc) from None
        return script.get_current_head()
    finally:
        lock.release()
        engine.dispose()


def _migration_failed(url: str, engine: Engine, step: str, tables: set[str], exc: Exception) -> DatabaseError:
    """One line: what failed, and what state it left. On a database that cannot roll back DDL (MySQL)
    the failed revision's first steps stay, and upgrading again would stop at the first table it left:
    those tables are named."""
    where = f"migrating {mask_url(url)} to revision {step} failed: {one_line(exc, 1000)}"
    engine.dispose()  # the failed connection may be unusable
    try:
        now = current_revision(engine) or "none"
        left = sorted(set(inspect(engine).get_table_names()) - tables - {"alembic_version"})
    except SQLAlchemyError:
        now, left = "unknown", []
    if dialect_for(url).transactional_ddl:
        return DatabaseError(f"{where} (rolled back: the schema is still at revision {now})")
    return DatabaseError(
        f"{where} (this database cannot roll back DDL: it stays at schema revision {now}, plus the tables "
        f"{step} created before the error: {', '.join(left) or 'none'}; drop those, fix the "
        f"cause and run `etl db upgrade` again)")

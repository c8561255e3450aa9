"""Alembic environment: the job passes its own connection (config.attributes['connection']) so the
migration runs in the caller's process on the caller's engine; `alembic` on the command line uses
ETL_DATABASE_URL or sqlalchemy.url instead."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
        return
    url = os.environ.get("ETL_DATABASE_URL") or config.get_main_option("sqlalchemy.url") or "sqlite:///etl.db"
    engine = create_engine(url)
    with engine.connect() as conn:
        context.configure(connection=conn, render_as_batch=conn.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    context.configure(url=os.environ.get("ETL_DATABASE_URL", "sqlite:///etl.db"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run()

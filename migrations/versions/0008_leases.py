"""Leases: several machines share one run through the database (etl worker)

The frontier's rows get a lease (who holds the entry, until when, how often it was claimed): a worker
claims pending entries with FOR UPDATE SKIP LOCKED, and commits a page's rows only while it still holds
the page's lease. `workers` records each worker of a run (where, its heartbeat, what it did); `host_turns`
and `host_slots` make per_host and delay hold across all workers together; `robots_txt` keeps each
origin's robots.txt once per run.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("frontier") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(64)))
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("claims", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "workers",
        sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("worker", sa.String(64), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("pages_ok", sa.Integer, nullable=False, server_default="0"),
        sa.Column("pages_failed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("rows_written", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_table(
        "host_turns",
        sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("host", sa.String(191), primary_key=True),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "host_slots",
        sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("host", sa.String(191), primary_key=True),
        sa.Column("slot", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("holder", sa.String(64)),
        sa.Column("until", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "robots_txt",
        sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("origin", sa.String(191), primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("robots_txt")
    op.drop_table("host_slots")
    op.drop_table("host_turns")
    op.drop_table("workers")
    with op.batch_alter_table("frontier") as batch:
        batch.drop_column("claims")
        batch.drop_column("lease_until")
        batch.drop_column("lease_owner")

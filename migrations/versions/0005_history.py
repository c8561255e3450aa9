"""listing_history, listings.delisted_at, what each run did (runs.rows_new … rows_relisted)

A changed price overwrote the old one and a listing that disappeared kept looking current. Now every
version of a listing's tracked values is a row of listing_history (etl/history.py), and a complete run
marks the listings it did not see delisted. Existing listings get one current version each, with the
values they hold, valid from when they were last seen (what they were before that is not known).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COUNTS = ("rows_new", "rows_changed", "rows_unchanged", "rows_delisted", "rows_relisted")


def upgrade() -> None:
    tz = sa.DateTime(timezone=True)
    with op.batch_alter_table("listings") as batch:
        batch.add_column(sa.Column("delisted_at", tz))
    with op.batch_alter_table("runs") as batch:
        for name in COUNTS:
            batch.add_column(sa.Column(name, sa.Integer))
    op.create_table(
        "listing_history",
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("listing_id", sa.String(64), primary_key=True),
        sa.Column("total_price", sa.Numeric(16, 2)),
        sa.Column("unit_price", sa.Integer),
        sa.Column("valid_from", tz, nullable=False),
        sa.Column("valid_to", tz),
        sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(8), nullable=False),
    )
    op.create_index("ix_listing_history_run_id", "listing_history", ["run_id"])
    op.execute("INSERT INTO listing_history (source, listing_id, total_price, unit_price, valid_from, valid_to, "
               "run_id, kind) SELECT source, listing_id, total_price, unit_price, last_seen, NULL, run_id, 'new' "
               "FROM listings")


def downgrade() -> None:
    op.drop_index("ix_listing_history_run_id", "listing_history")
    op.drop_table("listing_history")
    with op.batch_alter_table("runs") as batch:
        for name in COUNTS:
            batch.drop_column(name)
    with op.batch_alter_table("listings") as batch:
        batch.drop_column("delisted_at")

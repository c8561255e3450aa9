"""listing_history, listings.delisted_at, what each run did (runs.rows_new … rows_relisted)

A changed price overwrote the old one and a listing that disappeared kept looking current. Now every
version of a listing's tracked values is a row of listing_history (etl/history.py), and a complete run
marks the listings it did not see delisted. Existing listings get one current version each, with the
values they hold, valid from when they were last seen (what they were before that is not known).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

COUNTS = ("rows_new", "rows_changed", "rows_unchanged", "rows_delisted", "rows_relisted")


def _add_columns(table: str, columns: list[sa.Column]) -> None:
    """One ALTER TABLE for all of a table's new columns where the database takes several (each ALTER is a
    table rebuild's worth of work on MySQL); SQLite adds them one at a time."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.add_column(column)
        return
    q = bind.dialect.identifier_preparer.quote
    op.execute(f"ALTER TABLE {q(table)} " + ", ".join(
        f"ADD COLUMN {q(c.name)} {c.type.compile(dialect=bind.dialect)}" for c in columns))


def upgrade() -> None:
    tz = sa.DateTime(timezone=True)
    _add_columns("listings", [sa.Column("delisted_at", tz)])
    _add_columns("runs", [sa.Column(name, sa.Integer) for name in COUNTS])
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

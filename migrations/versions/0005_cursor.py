"""sql_cursors: where each job's last successful run of a sql source stopped reading

One row per job: `upto` (JSON) is the top of the window that run read — its (key) or (updated, key)
position, how many rows sat at that value, and the table, key, updated column and where it was taken
on — so the next run reads only the rows after it (etl/sources/sql_cursor.py). Written only in the
transaction that records a succeeded run's end.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sql_cursors",
        sa.Column("job", sa.String(200), primary_key=True),
        sa.Column("upto", sa.Text, nullable=False),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sql_cursors")

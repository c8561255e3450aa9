"""url_state: what a job already knows about each URL, kept across runs (incremental fetching)

One row per (job, URL): the validators the server last sent (ETag, Last-Modified), when the page was last
confirmed current (a 200 or a 304), and for a detail page the item it completes and a hash of the list-page
field values it was built from. A later run reads it to skip the detail pages of unchanged listings and to
ask the server "has this changed?" (If-None-Match / If-Modified-Since). It replaces what a finished run's
frontier used to keep: a succeeded run's frontier rows are deleted (etl/incremental.py: compact), so the
database no longer grows by one row per page per run.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "url_state",
        sa.Column("job", sa.String(200), primary_key=True),
        sa.Column("url_key", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("etag", sa.Text),
        sa.Column("last_modified", sa.String(64)),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("item_key", sa.String(191)),
        sa.Column("item_hash", sa.String(32)),
        sa.Column("run_id", sa.Integer, nullable=False),
    )
    op.create_index("ix_url_state_job_item", "url_state", ["job", "item_key"])


def downgrade() -> None:
    op.drop_index("ix_url_state_job_item", table_name="url_state")
    op.drop_table("url_state")

"""frontier keyed by a stable fingerprint of the canonical URL

The frontier's key was (run_id, url): a text column in a primary key, which MySQL/MariaDB cannot index
without a prefix, and which treated two spellings of one page (`HTTP://x/a/../b`, `http://x/b`) as two
pages. The key is now (run_id, url_key), url_key = etl.urls.fingerprint(url), a signed 64-bit hash of
the canonical URL that every process and machine computes alike; url keeps the URL as the page wrote it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

CHUNK = 5000


def upgrade() -> None:
    from etl.urls import fingerprint

    op.create_table(
        "frontier_new",
        sa.Column("run_id", sa.Integer, primary_key=True),
        sa.Column("url_key", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("meta", sa.Text),
        sa.Column("state", sa.String(8), nullable=False),
    )
    conn = op.get_bind()
    old = sa.table("frontier", sa.column("run_id"), sa.column("url"), sa.column("kind"), sa.column("meta"),
                   sa.column("state"))
    new = sa.table("frontier_new", sa.column("run_id"), sa.column("url_key"), sa.column("url"),
                   sa.column("kind"), sa.column("meta"), sa.column("state"))
    rows = conn.execute(sa.select(old)).mappings()
    seen: set[tuple[int, int]] = set()
    while chunk := rows.fetchmany(CHUNK):
        out = []
        for r in chunk:
            key = (r["run_id"], fingerprint(r["url"]))
            if key not in seen:  # two spellings of one page: the first stays
                seen.add(key)
                out.append({**r, "url_key": key[1]})
        if out:
            conn.execute(new.insert(), out)
    op.drop_table("frontier")
    op.rename_table("frontier_new", "frontier")
    op.create_index("ix_frontier_run_state", "frontier", ["run_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_frontier_run_state", "frontier")
    with op.batch_alter_table("frontier") as batch:
        batch.drop_column("url_key")

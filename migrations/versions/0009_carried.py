"""carried: the facet texts frontier rows refer to, stored once per run and value set

A field `from = "facet:<kind>"` reads the text of the facet link that led to a page; that text was copied
into the meta of every frontier row below the facet (a list page of 30 items: 30 copies, and again on
every page below). Frontier metas now hold a reference, "via@": carried_key, a stable hash of the via
dict's canonical JSON, and this table holds the texts once (etl/carried.py). Rows written before keep
their inline "via" and are read as they are. A succeeded run's rows go with its frontier (etl/compact.py).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "carried",
        sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("carried_key", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("via", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("carried")

"""core tables: runs, frontier, failures, listings

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


# MySQL/MariaDB: FLOAT is single precision there (DOUBLE is FLOAT(53)), and a TEXT column cannot be in a
# primary key. These variants leave the other databases' DDL exactly as it was.
DOUBLE = sa.Float().with_variant(sa.Float(53), "mysql", "mariadb")
# 0001's frontier lives on MySQL only until 0003 replaces it (MySQL support came after 0003, so no MySQL
# database ever held rows in it): 760 utf8mb4 characters plus run_id fit the 3,072-byte key limit.
FRONTIER_URL = sa.Text().with_variant(sa.String(760), "mysql", "mariadb")


def upgrade() -> None:
    tz = sa.DateTime(timezone=True)
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job", sa.String(200), nullable=False),
        sa.Column("config_digest", sa.String(32), nullable=False),
        sa.Column("database", sa.Text),
        sa.Column("started_at", tz, nullable=False),
        sa.Column("finished_at", tz),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("pages_ok", sa.Integer, nullable=False, server_default="0"),
        sa.Column("pages_failed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("rows_written", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("message", sa.Text),
        sa.Column("params", sa.Text),
    )
    op.create_index("ix_runs_job", "runs", ["job"])
    op.create_table(
        "frontier",
        sa.Column("run_id", sa.Integer, primary_key=True),
        sa.Column("url", FRONTIER_URL, primary_key=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("meta", sa.Text),
        sa.Column("state", sa.String(8), nullable=False),
    )
    op.create_table(
        "failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("status", sa.Integer),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("at", tz, nullable=False),
    )
    op.create_index("ix_failures_run_id", "failures", ["run_id"])
    op.create_table(
        "listings",
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("listing_id", sa.String(64), primary_key=True),
        sa.Column("city", sa.String(64)),
        sa.Column("district", sa.String(64)),
        sa.Column("subdistrict", sa.String(64)),
        sa.Column("community", sa.String(200)),
        sa.Column("title", sa.Text),
        sa.Column("rooms", sa.Integer),
        sa.Column("halls", sa.Integer),
        sa.Column("area_m2", DOUBLE),
        sa.Column("orientation", sa.String(64)),
        sa.Column("decoration", sa.String(32)),
        sa.Column("floor_level", sa.String(16)),
        sa.Column("total_floors", sa.Integer),
        sa.Column("year_built", sa.Integer),
        sa.Column("total_price", sa.Numeric(16, 2)),
        sa.Column("unit_price", sa.Integer),
        sa.Column("listed_date", sa.Date),
        sa.Column("url", sa.Text),
        sa.Column("extras", sa.JSON),
        sa.Column("first_seen", tz, nullable=False),
        sa.Column("last_seen", tz, nullable=False),
        sa.Column("run_id", sa.Integer, nullable=False),
    )
    op.create_index("ix_listings_city_district", "listings", ["city", "district"])


def downgrade() -> None:
    op.drop_table("listings")
    op.drop_table("failures")
    op.drop_table("frontier")
    op.drop_index("ix_runs_job", "runs")
    op.drop_table("runs")

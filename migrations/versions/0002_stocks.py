"""stocks and stock_mentions, plus the per-stock daily sentiment view

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

DOUBLE = sa.Float().with_variant(sa.Float(53), "mysql", "mariadb")  # FLOAT is single precision on MySQL

VIEW = """
CREATE VIEW stock_daily_sentiment AS
SELECT stock_code, stock_name, news_date,
       COUNT(*) AS articles, SUM(mention_count) AS mentions, AVG(score) AS avg_score
FROM stock_mentions
GROUP BY stock_code, stock_name, news_date
"""


def upgrade() -> None:
    op.create_table(
        "stocks",
        sa.Column("code", sa.String(6), primary_key=True),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("exchange", sa.String(4), nullable=False),
        sa.Column("listed_date", sa.Date),
        sa.Column("aliases", sa.Text, nullable=False),
    )
    op.create_table(
        "stock_mentions",
        sa.Column("news_id", sa.String(64), primary_key=True),
        sa.Column("stock_code", sa.String(6), primary_key=True),
        sa.Column("stock_name", sa.String(32), nullable=False),
        sa.Column("news_date", sa.Date),
        sa.Column("score", DOUBLE),
        sa.Column("mention_count", sa.Integer, nullable=False),
        sa.Column("run_id", sa.Integer, nullable=False),
    )
    op.create_index("ix_stock_mentions_code_date", "stock_mentions", ["stock_code", "news_date"])
    op.execute(VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW stock_daily_sentiment")
    op.drop_table("stock_mentions")
    op.drop_table("stocks")

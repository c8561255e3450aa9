"""stock_mentions keyed by source too; stocks.delisted

Two news tables (two jobs) with overlapping ids overwrote each other's mentions: the key was (news_id,
stock_code). It is now (source, news_id, stock_code), source = the job's name, which is also what a
complete re-run sweeps within (etl/stocks/store.py). Existing rows get the job of the run that wrote them
(runs.job through run_id), or 'news-stocks' (the bundled job) when that run is gone.

stocks.delisted marks codes that are no longer traded (etl/stocks/dictionary.py says which); they stay
in the dictionary, so old news still finds them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DOUBLE = sa.Float().with_variant(sa.Float(53), "mysql", "mariadb")
DEFAULT_SOURCE = "news-stocks"
VIEW = """
CREATE VIEW stock_daily_sentiment AS
SELECT stock_code, stock_name, news_date,
       COUNT(*) AS articles, SUM(mention_count) AS mentions, AVG(score) AS avg_score
FROM stock_mentions
GROUP BY stock_code, stock_name, news_date
"""
REST = "stock_code, stock_name, news_date, score, mention_count, run_id"


def _mentions_table(name: str, with_source: bool) -> None:
    key = [sa.Column("source", sa.String(200), primary_key=True)] if with_source else []
    op.create_table(
        name,
        *key,
        sa.Column("news_id", sa.String(64), primary_key=True),
        sa.Column("stock_code", sa.String(6), primary_key=True),
        sa.Column("stock_name", sa.String(32), nullable=False),
        sa.Column("news_date", sa.Date),
        sa.Column("score", DOUBLE),
        sa.Column("mention_count", sa.Integer, nullable=False),
        sa.Column("run_id", sa.Integer, nullable=False),
    )


def _swap(new: str) -> None:
    op.drop_table("stock_mentions")
    op.rename_table(new, "stock_mentions")
    op.create_index("ix_stock_mentions_code_date", "stock_mentions", ["stock_code", "news_date"])
    op.execute(VIEW)


def upgrade() -> None:
    op.execute("DROP VIEW stock_daily_sentiment")
    _mentions_table("stock_mentions_new", with_source=True)
    op.execute(f"INSERT INTO stock_mentions_new (source, news_id, {REST}) "
               f"SELECT COALESCE((SELECT r.job FROM runs r WHERE r.id = m.run_id), '{DEFAULT_SOURCE}'), "
               f"m.news_id, {', '.join('m.' + c for c in REST.split(', '))} FROM stock_mentions m")
    _swap("stock_mentions_new")
    with op.batch_alter_table("stocks") as batch:
        batch.add_column(sa.Column("delisted", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    """Back to one row per (news_id, stock_code): where two sources share a key, the first source (in
    sort order) keeps it."""
    with op.batch_alter_table("stocks") as batch:
        batch.drop_column("delisted")
    op.execute("DROP VIEW stock_daily_sentiment")
    _mentions_table("stock_mentions_old", with_source=False)
    op.execute(f"INSERT INTO stock_mentions_old (news_id, {REST}) SELECT m.news_id, "
               f"{', '.join('m.' + c for c in REST.split(', '))} FROM stock_mentions m WHERE NOT EXISTS "
               "(SELECT 1 FROM stock_mentions o WHERE o.news_id = m.news_id AND o.stock_code = m.stock_code "
               "AND o.source < m.source)")
    _swap("stock_mentions_old")

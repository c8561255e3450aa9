"""Table definitions (SQLAlchemy Core) the code reads and writes.

The database schema itself is created only by the Alembic migrations in migrations/; a test checks that
the migrated database and these definitions agree.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
)

metadata = MetaData()


def double() -> Float:
    """Double precision everywhere: FLOAT alone is single precision on MySQL/MariaDB (the migrations'
    variant; SQLite and PostgreSQL keep plain FLOAT, which is double there)."""
    return Float().with_variant(Float(53), "mysql", "mariadb")


runs = Table(
    "runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", String(200), nullable=False, index=True),
    Column("config_digest", String(32), nullable=False),
    Column("database", Text),  # masked URL: never a password
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("status", String(16), nullable=False),  # running | succeeded | partial | failed | interrupted
    Column("pages_ok", Integer, nullable=False, default=0),
    Column("pages_failed", Integer, nullable=False, default=0),
    Column("rows_written", BigInteger, nullable=False, default=0),
    Column("message", Text),
    Column("params", Text),  # JSON: runtime facts a resume needs (e.g. the demo server's base URL)
)

frontier = Table(
    "frontier", metadata,
    Column("run_id", Integer, primary_key=True),
    Column("url_key", BigInteger, primary_key=True, autoincrement=False),  # etl.urls.fingerprint(url)
    Column("url", Text, nullable=False),  # as the page wrote it; or sql:<table>:<lo> for a row range
    Column("kind", String(64), nullable=False),
    Column("meta", Text),  # JSON: page number, raw fields carried to a detail page
    Column("state", String(8), nullable=False),  # pending | done | failed
    Index("ix_frontier_run_state", "run_id", "state"),
)

failures = Table(
    "failures", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, nullable=False, index=True),
    Column("url", Text, nullable=False),
    Column("stage", String(16), nullable=False),  # fetch | parse | write
    Column("status", Integer),  # HTTP status, when there was one
    Column("error", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

listings = Table(
    "listings", metadata,
    Column("source", String(64), primary_key=True),
    Column("listing_id", String(64), primary_key=True),
    Column("city", String(64)),
    Column("district", String(64)),
    Column("subdistrict", String(64)),
    Column("community", String(200)),
    Column("title", Text),
    Column("rooms", Integer),
    Column("halls", Integer),
    Column("area_m2", double()),
    Column("orientation", String(64)),
    Column("decoration", String(32)),
    Column("floor_level", String(16)),
    Column("total_floors", Integer),
    Column("year_built", Integer),
    Column("total_price", Numeric(16, 2)),
    Column("unit_price", Integer),
    Column("listed_date", Date),
    Column("url", Text),
    Column("extras", JSON),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("run_id", Integer, nullable=False),
)

stocks = Table(
    "stocks", metadata,
    Column("code", String(6), primary_key=True),
    Column("name", String(32), nullable=False),
    Column("exchange", String(4), nullable=False),
    Column("listed_date", Date),
    Column("aliases", Text, nullable=False),  # JSON list
    Column("delisted", Boolean, nullable=False, default=False),  # still matched: old news names it
)

stock_mentions = Table(
    "stock_mentions", metadata,
    Column("source", String(200), primary_key=True),  # the job's name: two news tables never collide
    Column("news_id", String(64), primary_key=True),
    Column("stock_code", String(6), primary_key=True),
    Column("stock_name", String(32), nullable=False),
    Column("news_date", Date),
    Column("score", double()),
    Column("mention_count", Integer, nullable=False),
    Column("run_id", Integer, nullable=False),
)

NATURAL_KEYS: dict[str, tuple[str, ...]] = {
    "listings": ("source", "listing_id"),
    "stock_mentions": ("source", "news_id", "stock_code"),
    "stocks": ("code",),
}
# The column an item's key goes in, for the tables a config may name as its target.
ROW_KEYS: dict[str, str] = {"listings": "listing_id", "stock_mentions": "news_id"}
# Columns an upsert must not overwrite once a row exists.
KEEP_ON_UPDATE: dict[str, tuple[str, ...]] = {"listings": ("first_seen",)}


def table_columns(name: str) -> list[str]:
    if name not in metadata.tables:
        return []
    return [c.name for c in metadata.tables[name].columns]

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
    # What the run did to a table that keeps history (etl/history.py); NULL where it keeps none, and
    # rows_delisted NULL too when the run did not complete (it cannot know what is gone)
    Column("rows_new", Integer),
    Column("rows_changed", Integer),
    Column("rows_unchanged", Integer),
    Column("rows_delisted", Integer),
    Column("rows_relisted", Integer),
)

frontier = Table(
    "frontier", metadata,
    Column("run_id", Integer, primary_key=True),
    Column("url_key", BigInteger, primary_key=True, autoincrement=False),  # etl.urls.fingerprint(url)
    Column("url", Text, nullable=False),  # as the page wrote it; or sql:<table>:<lo> for a row range
    Column("kind", String(64), nullable=False),
    Column("meta", Text),  # JSON: page number, raw fields carried to a detail page, "via@" (see carried)
    Column("state", String(8), nullable=False),  # pending | done | failed
    # A worker's lease on a pending entry (etl worker: etl/shared/); NULL for a run on one machine
    Column("lease_owner", String(64)),
    Column("lease_until", DateTime(timezone=True)),
    Column("claims", Integer, nullable=False, default=0, server_default="0"),  # times a worker claimed it
    Index("ix_frontier_run_state", "run_id", "state"),
)

workers = Table(  # one row per worker of a shared run (etl worker): where it ran, its heartbeat, its share
    "workers", metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=False),
    Column("worker", String(64), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),  # its last heartbeat
    Column("status", String(16), nullable=False),  # running | finished | interrupted | failed
    Column("pages_ok", Integer, nullable=False, default=0, server_default="0"),
    Column("pages_failed", Integer, nullable=False, default=0, server_default="0"),
    Column("rows_written", BigInteger, nullable=False, default=0, server_default="0"),
)

host_turns = Table(  # per host, when the next request of any worker may start ([fetch] delay across workers)
    "host_turns", metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=False),
    Column("host", String(191), primary_key=True),
    Column("next_at", DateTime(timezone=True), nullable=False),
)

host_slots = Table(  # per host, per_host slots leased by the requests in flight, across workers
    "host_slots", metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=False),
    Column("host", String(191), primary_key=True),
    Column("slot", Integer, primary_key=True, autoincrement=False),
    Column("holder", String(64)),
    Column("until", DateTime(timezone=True)),
)

robots_txt = Table(  # each origin's robots.txt, fetched once per shared run
    "robots_txt", metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=False),
    Column("origin", String(191), primary_key=True),
    Column("body", Text, nullable=False),
    Column("fetched_at", DateTime(timezone=True), nullable=False),
)

carried = Table(  # facet texts carried down to the frontier rows below a facet, once per run and value set
    "carried", metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=False),
    Column("carried_key", BigInteger, primary_key=True, autoincrement=False),  # etl.carried.carried_key(via)
    Column("via", Text, nullable=False),  # JSON: kind → link text, what frontier metas refer to as "via@"
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

url_state = Table(  # per job and URL, across runs: validators, last confirmed, the item a detail page made
    "url_state", metadata,
    Column("job", String(200), primary_key=True),
    Column("url_key", BigInteger, primary_key=True, autoincrement=False),  # etl.incremental.url_id(url)
    Column("url", Text, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("etag", Text),
    Column("last_modified", String(64)),
    Column("fetched_at", DateTime(timezone=True), nullable=False),  # last 200 or 304
    Column("item_key", String(191)),  # detail pages: the item's key
    Column("item_hash", String(32)),  # detail pages: hash of the list-page values the row was built from
    Column("run_id", Integer, nullable=False),
    Index("ix_url_state_job_item", "job", "item_key"),
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
    Column("delisted_at", DateTime(timezone=True)),  # a complete run of its job did not see it; NULL when listed
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

sql_cursors = Table(
    "sql_cursors", metadata,
    Column("job", String(200), primary_key=True),
    Column("upto", Text, nullable=False),  # JSON: where the job's last successful run stopped (etl/sources/sql_cursor.py)
    Column("run_id", Integer, nullable=False),
    Column("saved_at", DateTime(timezone=True), nullable=False),
)

HISTORY_COLUMNS = ("valid_from", "valid_to", "run_id", "kind")


def history_columns(key: list[Column], tracked: list[Column]) -> list[Column | Index]:
    """The columns of a history table (listing_history, <table>_history): the row's key, the tracked
    values, when this version held, and which run saw it first. One version per key per run, so the
    primary key makes a second version from a redo of the same run impossible, not just unlikely."""
    return [*key, *tracked,
            Column("valid_from", DateTime(timezone=True), nullable=False),
            Column("valid_to", DateTime(timezone=True)),  # NULL while current
            Column("run_id", Integer, primary_key=True, autoincrement=False),
            Column("kind", String(8), nullable=False)]  # new | changed | relisted


listing_history = Table(
    "listing_history", metadata,
    *history_columns([Column("source", String(64), primary_key=True),
                      Column("listing_id", String(64), primary_key=True)],
                     [Column("total_price", Numeric(16, 2)), Column("unit_price", Integer)]),
    Index("ix_listing_history_run_id", "run_id"),
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
# Built-in tables that keep history, with the columns tracked when the config names none ([target] track)
TRACK_DEFAULT: dict[str, tuple[str, ...]] = {"listings": ("total_price", "unit_price")}


def table_columns(name: str) -> list[str]:
    if name not in metadata.tables:
        return []
    return [c.name for c in metadata.tables[name].columns]

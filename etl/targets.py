"""Where a job's rows go: a built-in table (listings, stock_mentions: created by the Alembic migrations)
or a table the config defines (`[target] table = "rentals"`: its columns and types from the config's
fields, its key from `[items] key` plus `source`).

A table that names `track` (listings always: total_price and unit_price unless it names others) keeps a
history table beside it, listing_history or `<table>_history` (etl/history.py writes it), and a
`delisted_at` column. The history table is created here for a config-defined table, seeded with the rows
the table already holds (one current version each), and widened when `track` names another column.

A TargetSpec is small and picklable; every process resolves it to a SQLAlchemy Table itself. The tool
creates a config-defined table, and adds a column when a later config adds a field; it never drops or
retypes one (a type change is refused with what to do instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    DateTime,
    Float,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    and_,
    inspect,
    select,
    update,
)

from etl import schema
from etl.config.model import TargetSpec

# field type → column type of a config-defined table
COLUMN_TYPES: dict[str, Any] = {
    "text": Text, "url": Text, "int": BigInteger, "float": lambda: Float(53), "decimal": lambda: Numeric(20, 4),
    "date": Date,
}
KEY_CHARS = 191  # a key column's width: (source, key) fits MySQL's 3,072-byte index limit in utf8mb4
BOOKKEEPING = ("first_seen", "last_seen", "run_id")
DELISTED = "delisted_at"  # the column a table with history marks its rows gone in


class TargetError(Exception):
    """The target table cannot take this config's rows; str() is one line saying what to do."""


@dataclass(frozen=True)
class Target:
    table: Table
    key: tuple[str, ...]
    keep: tuple[str, ...]  # columns an upsert leaves as they were (first_seen)
    history: Table | None = None  # where versions of the tracked columns go (None: the table keeps none)
    track: tuple[str, ...] = ()


def history_name(table: str) -> str:
    return "listing_history" if table == "listings" else f"{table}_history"


def resolve(spec: TargetSpec) -> Target:
    """The SQLAlchemy table (with its key) that a TargetSpec names, and its history table if it keeps one."""
    if spec.builtin:
        table, key = schema.metadata.tables[spec.name], schema.NATURAL_KEYS[spec.name]
        history = None
        if spec.track:
            history = schema.listing_history if spec.track == schema.TRACK_DEFAULT.get(spec.name) else Table(
                history_name(spec.name), MetaData(), *schema.history_columns(
                    [Column(k, table.c[k].type, primary_key=True) for k in key],
                    [Column(c, table.c[c].type) for c in spec.track]))
        return Target(table, key, schema.KEEP_ON_UPDATE.get(spec.name, ()), history, spec.track)
    types = dict(spec.columns)
    cols = [Column(name, String(KEY_CHARS), primary_key=True) if name in spec.key
            else Column(name, COLUMN_TYPES[ftype]()) for name, ftype in spec.columns]
    cols += [Column("first_seen", DateTime(timezone=True), nullable=False),
             Column("last_seen", DateTime(timezone=True), nullable=False),
             Column("run_id", Integer, nullable=False)]
    history = None
    if spec.track:
        cols.append(Column(DELISTED, DateTime(timezone=True)))
        history = Table(history_name(spec.name), MetaData(), *schema.history_columns(
            [Column(k, String(KEY_CHARS), primary_key=True) for k in spec.key],
            [Column(c, COLUMN_TYPES[types[c]]()) for c in spec.track]))
    return Target(Table(spec.name, MetaData(), *cols), spec.key, ("first_seen",), history, spec.track)


def ensure(engine, spec: TargetSpec) -> None:
    """Create a config-defined table, or add the columns a new field needs. Built-in tables are the
    migrations' business."""
    target = resolve(spec)
    found = inspect(engine)
    if spec.builtin:
        if target.history is not None and target.history is not schema.listing_history:
            _ensure_history(engine, target, found)  # more tracked columns than the migrations' default
        return
    if not found.has_table(spec.name):
        target.table.create(engine)
        if target.history is not None:
            _ensure_history(engine, target, inspect(engine))
        return
    existing = {c["name"]: c for c in found.get_columns(spec.name)}
    have_key = found.get_pk_constraint(spec.name)["constrained_columns"]
    if list(have_key) != list(spec.key):
        raise TargetError(f"table {spec.name!r} exists with key ({', '.join(have_key)}), the config says "
                          f"({', '.join(spec.key)}); name another [target] table or drop it")
    with engine.begin() as conn:
        for column in target.table.columns:
            if column.name not in existing:
                conn.execute(_add_column(engine, spec.name, column))
                continue
            if not _compatible(existing[column.name]["type"], column.type):
                raise TargetError(
                    f"table {spec.name!r} column {column.name!r} is {existing[column.name]['type']} but the "
                    f"config now makes it {column.type.compile(engine.dialect)}; the tool never retypes a "
                    f"column: rename the field, or ALTER the column yourself")
    if target.history is not None:
        _ensure_history(engine, target, inspect(engine))


def _ensure_history(engine, target: Target, found) -> None:
    """Create the history table, seeded with one current version of each stored row (from when it was
    last seen), or add a newly tracked column, filled in on the current versions from the table: a
    column tracked from today starts its history with today's values, not with a change from NULL."""
    history, table = target.history, target.table
    if not found.has_table(history.name):
        history.create(engine)
        with engine.begin() as conn:
            conn.execute(history.insert().from_select(
                [*target.key, *target.track, "valid_from", "valid_to", "run_id", "kind"],
                select(*[table.c[c] for c in (*target.key, *target.track)], table.c.last_seen,
                       table.c[DELISTED], table.c.run_id, _literal("new"))))
        return
    existing = {c["name"] for c in found.get_columns(history.name)}
    added = [c for c in history.columns if c.name not in existing]
    if not added:
        return
    with engine.begin() as conn:
        for column in added:
            conn.execute(_add_column(engine, history.name, column))
        same = and_(*(table.c[k] == history.c[k] for k in target.key))
        conn.execute(update(history).where(history.c.valid_to.is_(None)).values(
            {c.name: select(table.c[c.name]).where(same).scalar_subquery() for c in added}))


def _literal(text: str):
    from sqlalchemy import literal

    return literal(text, String(8))


def _add_column(engine, table: str, column: Column):
    from sqlalchemy import DDL

    ddl = column.type.compile(engine.dialect)
    return DDL(f"ALTER TABLE {engine.dialect.identifier_preparer.quote(table)} ADD COLUMN "
               f"{engine.dialect.identifier_preparer.quote(column.name)} {ddl}")


_FAMILY = {"text": ("text", "char", "clob", "string"), "int": ("int",), "float": ("float", "double", "real"),
           "numeric": ("numeric", "decimal"), "date": ("date",), "datetime": ("datetime", "timestamp")}


def _family(type_: Any) -> str:
    name = type(type_).__name__.lower() if not isinstance(type_, str) else type_.lower()
    if "datetime" in name or "timestamp" in name:
        return "datetime"
    for family, words in _FAMILY.items():
        if any(w in name for w in words):
            return family
    return name


def _compatible(found: Any, wanted: Any) -> bool:
    return _family(found) == _family(wanted) or isinstance(found, JSON)


def target_spec(table: str, key_column: str | None, fields: dict[str, str],
                track: list[str] | None = None) -> TargetSpec:
    """A config's target: built-in by name, otherwise defined by its fields (name → field type). `track`
    is `[target] track` (None: not given); raises TargetError for a column it cannot track."""
    if table in schema.ROW_KEYS:
        columns = tuple(str(c) for c in schema.table_columns(table))  # plain str: SQLAlchemy's quoted_name
        # would make every process the config is sent to (parse, fetch) import SQLAlchemy to unpickle it
        default = schema.TRACK_DEFAULT.get(table)
        if track is not None and default is None:
            raise TargetError(f"{table} keeps no history; track is for listings and tables the config defines")
        chosen = tuple(track) if track is not None else default or ()
        _check_track(table, chosen, columns, schema.NATURAL_KEYS[table])
        return TargetSpec(table, schema.ROW_KEYS[table], columns, track=chosen)
    key = ("source", key_column or "id")
    columns = [("source", "text"), (key[1], "text")]
    columns += [(name, ftype) for name, ftype in fields.items() if name not in key and name not in BOOKKEEPING]
    names = tuple(c for c, _ in columns)
    if track and DELISTED in names:
        raise TargetError(f"a field named {DELISTED!r} cannot be a column of a table that keeps history "
                          "(the tool marks rows gone in it): rename the field")
    if track and len(history_name(table)) > 63:
        raise TargetError(f"{history_name(table)!r} is too long a table name for its history; shorten the table")
    _check_track(table, tuple(track or ()), names, key)
    return TargetSpec(table, key[1], tuple([*names, *BOOKKEEPING]), key, tuple(columns), tuple(track or ()))


def _check_track(table: str, track: tuple[str, ...], columns: tuple[str, ...], key: tuple[str, ...]) -> None:
    """Only value columns can be tracked: the key names the row, the bookkeeping moves every run."""
    can = [c for c in columns if c not in key and c not in BOOKKEEPING and c not in (DELISTED, "extras")]
    for name in track:
        if name not in can:
            raise TargetError(f"cannot track {name!r}: not a value column of {table} "
                              f"(one of {', '.join(can)})")
    if len(set(track)) != len(track):
        raise TargetError("a column is named twice")

"""Where a job's rows go: a built-in table (listings, stock_mentions: created by the Alembic migrations)
or a table the config defines (`[target] table = "rentals"`: its columns and types from the config's
fields, its key from `[items] key` plus `source`).

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
    inspect,
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


class TargetError(Exception):
    """The target table cannot take this config's rows; str() is one line saying what to do."""


@dataclass(frozen=True)
class Target:
    table: Table
    key: tuple[str, ...]
    keep: tuple[str, ...]  # columns an upsert leaves as they were (first_seen)


def resolve(spec: TargetSpec) -> Target:
    """The SQLAlchemy table (with its key) that a TargetSpec names."""
    if spec.builtin:
        return Target(schema.metadata.tables[spec.name], schema.NATURAL_KEYS[spec.name],
                      schema.KEEP_ON_UPDATE.get(spec.name, ()))
    cols = [Column(name, String(KEY_CHARS), primary_key=True) if name in spec.key
            else Column(name, COLUMN_TYPES[ftype]()) for name, ftype in spec.columns]
    cols += [Column("first_seen", DateTime(timezone=True), nullable=False),
             Column("last_seen", DateTime(timezone=True), nullable=False),
             Column("run_id", Integer, nullable=False)]
    return Target(Table(spec.name, MetaData(), *cols), spec.key, ("first_seen",))


def ensure(engine, spec: TargetSpec) -> None:
    """Create a config-defined table, or add the columns a new field needs. Built-in tables are the
    migrations' business."""
    if spec.builtin:
        return
    target = resolve(spec)
    found = inspect(engine)
    if not found.has_table(spec.name):
        target.table.create(engine)
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


def target_spec(table: str, key_column: str | None, fields: dict[str, str]) -> TargetSpec:
    """A config's target: built-in by name, otherwise defined by its fields (name → field type)."""
    if table in schema.ROW_KEYS:
        return TargetSpec(table, schema.ROW_KEYS[table], tuple(schema.table_columns(table)))
    key = ("source", key_column or "id")
    columns = [("source", "text"), (key[1], "text")]
    columns += [(name, ftype) for name, ftype in fields.items() if name not in key and name not in BOOKKEEPING]
    return TargetSpec(table, key[1], tuple([c for c, _ in columns] + list(BOOKKEEPING)), key, tuple(columns))

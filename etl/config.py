"""Job configuration: TOML files validated on load into small frozen dataclasses.

Precedence, lowest first: the file, environment (ETL_DATABASE_URL), then the CLI (--db, --set k=v).
Every problem a user can fix is raised as one ConfigError line naming the file, the key and what is wrong;
the CLI turns it into exit code 2. Config files are data only: nothing in them is executed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TABLES = ("listings", "stock_mentions")


class ConfigError(Exception):
    """A config problem the user can fix; str() is the one line to show them."""


@dataclass(frozen=True)
class FieldSpec:
    name: str
    css: str | None = None  # None: the item (or page) node itself
    attr: str | None = None  # None: the node's text
    json: str | None = None  # dot path into a JSON value held in the text/attribute
    regex: str | None = None  # first capture group (or the whole match) is kept
    type: str = "text"
    scale: str | None = None
    value: str | None = None  # a constant, e.g. "{city}"
    source: str = "item"  # item | detail | page | config
    all: bool = False  # join every match with a space instead of taking the first
    required: bool = False  # missing or unreadable → no row and a failure, instead of NULL
    format: str | None = None  # date fields: a strptime format ("%d/%m/%Y") instead of year-month-day search


@dataclass(frozen=True)
class LinkRule:
    css: str
    kind: str
    attr: str = "href"
    match: str | None = None  # only URLs matching this regex


@dataclass(frozen=True)
class PageRule:
    kind: str
    total: FieldSpec | None = None  # how many results this filter has (compared with crawl.cap)
    facets: LinkRule | None = None  # narrower filters, followed when total > cap
    paginate: bool = False
    items: bool = False
    links: tuple[LinkRule, ...] = ()


@dataclass(frozen=True)
class Pagination:
    total_pages: FieldSpec | None = None
    url: FieldSpec | None = None  # a template holding {page}, read from the page
    template: str | None = None  # or a fixed template: {url} = page 1's URL, {page} = page number
    next: str | None = None  # CSS of a "next page" link
    links: str | None = None  # CSS of numbered page links
    max_pages: int = 100


@dataclass(frozen=True)
class Items:
    select: str
    key: FieldSpec
    skip: str | None = None
    detail: LinkRule | None = None


@dataclass(frozen=True)
class Transform:
    type: str = "none"  # "none" | "stock_mentions" | "plugin"
    text_fields: tuple[str, ...] = ("title", "body")
    plugin: str | None = None  # "package.module:function", imported only because the config names it


@dataclass(frozen=True)
class SqlSource:
    url: str | None
    table: str
    key: str
    columns: dict[str, str]
    chunk_rows: int = 5000
    where: str | None = None


@dataclass(frozen=True)
class Config:
    path: str
    job: str
    source_type: str
    site: str
    vars: dict[str, Any]
    demo: dict[str, Any] | None
    start_urls: tuple[str, ...]
    allowed_domains: tuple[str, ...]
    sql: SqlSource | None
    cap: int
    pages: dict[str, PageRule]
    pagination: Pagination
    items: Items | None
    fields: dict[str, FieldSpec]
    table: str
    transform: Transform
    database_url: str
    fetch_threads: int
    parse_processes: int
    batch_size: int
    flush_seconds: float
    engine: str
    max_pages: int
    start_method: str
    frontier_memory: int
    per_host: int
    delay: float
    robots: bool
    user_agent: str
    connect_timeout: float
    read_timeout: float
    total_timeout: float
    retries: int
    backoff: float
    max_bytes: int
    db_retry_seconds: float
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def digest(self) -> str:
        """Identifies the config's meaning for run records and resume checks: what is crawled and how it
        becomes rows — not where it is stored, nor how fast or politely it is fetched (a run interrupted
        and resumed with more threads, another engine or a longer timeout is still the same run)."""
        raw = {k: v for k, v in self.raw.items() if k not in OPERATIONAL}
        return hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def as_dict(self) -> dict[str, Any]:
        return self.raw


# ---------------------------------------------------------------------------------------------- loading

_DEFAULTS: dict[str, dict[str, Any]] = {
    "run": {"fetch_threads": 16, "parse_processes": 0, "batch_size": 1000, "flush_seconds": 1.0,
            "engine": "selectolax", "max_pages": 0, "start_method": "spawn", "frontier_memory": 200_000},
    "politeness": {"per_host": 16, "delay": 0.0, "robots": True,
                   "user_agent": "etl-crawl/0.1 (+https://github.com/etl-crawl/etl-crawl)",
                   "connect_timeout": 5.0, "read_timeout": 20.0, "total_timeout": 120.0, "retries": 3, "backoff": 0.5,
                   "max_bytes": 10_000_000},
    "database": {"url": "sqlite:///etl.db", "retry_seconds": 60.0},
}
OPERATIONAL = ("run", "politeness", "database")  # sections that do not change what a run produces
_TOP = {"job", "source", "crawl", "items", "fields", "target", "transform", "run", "politeness", "database"}

def parse_value(text: str) -> Any:
    """`--set` values are TOML literals when they parse as one (8, true, 1.5, [..]), else plain strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _scalar_paths(node: dict[str, Any], key: str, prefix: str = "") -> list[str]:
    """Dotted paths of every scalar setting named `key` in nested tables (arrays of tables are not searched)."""
    out = []
    for name, value in node.items():
        if isinstance(value, dict):
            out += _scalar_paths(value, key, f"{prefix}{name}.")
        elif name == key and prefix and not isinstance(value, list):
            out.append(prefix + name)
    return out


def apply_override(raw: dict[str, Any], assignment: str, path: str) -> None:
    """Apply one `key=value`. A bare key is looked up among the sections' scalar keys (city → source.city)."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment}: expected key=value")
    key, _, text = assignment.partition("=")
    key = key.strip()
    value = parse_value(text.strip())
    parts = key.split(".")
    if len(parts) == 1 and key not in raw:
        owners = _scalar_paths(raw, key)  # anywhere in the file, nested tables included
        owners += [f"{name}.{key}" for name in _DEFAULTS if key in _DEFAULTS[name] and f"{name}.{key}" not in owners]
        if len(owners) > 1:
            raise ConfigError(f"--set {key}: ambiguous, say which: {', '.join(owners)}")
        if not owners:
            raise ConfigError(f"--set {key}: no such setting in {path}; use a dotted path such as source.{key}")
        parts = owners[0].split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {part} is not a table")
    node[parts[-1]] = value


def load(path: str | Path, overrides: list[str] = (), database_url: str | None = None) -> Config:
    """Read, override and validate a job config. Raises ConfigError with one clear line."""
    path = str(path)
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    env_db = os.environ.get("ETL_DATABASE_URL")
    if env_db:
        raw.setdefault("database", {})["url"] = env_db
    for assignment in overrides:
        apply_override(raw, assignment, path)
    if database_url:
        raw.setdefault("database", {})["url"] = database_url
    from etl.config_check import build

    return build(raw, path)

def mask_url(url: str) -> str:
    """postgresql://user:secret@host/db → postgresql://user:***@host/db (for logs and run records)."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)

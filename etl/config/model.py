"""What a checked job config is: small frozen dataclasses, one per section, and one settings object per
stage (RunSettings for the coordinator and pools, FetchSettings for the fetch stage, DatabaseSettings for
the writer), so a stage receives what it reads and nothing else.

This module imports nothing of etl's and nothing heavy: the fetch process imports it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

TABLES = ("listings", "stock_mentions")
HTTP_ENGINES = ("requests", "curl")  # [run] http: requests, or libcurl through pycurl (etl/fetch/)


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
    label: str | None = None  # the text next to the element whose text is this label (etl/parse/labels.py)


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
    refresh_days: float | None = None  # [items.detail] refresh_days: re-check an unchanged item's detail page


@dataclass(frozen=True)
class Transform:
    type: str = "none"  # "none" | "stock_mentions" | "plugin"
    text_fields: tuple[str, ...] = ("title", "body")
    plugin: str | None = None  # "package.module:function", imported only because the config names it


@dataclass(frozen=True)
class TargetSpec:
    """[target]: the table rows go to. Built-in tables (listings, stock_mentions) are the migrations';
    any other name is defined by the config's fields (etl/targets.py creates and widens it)."""

    name: str
    row_key: str  # the column the item's key goes in (listing_id, news_id, or [target] key)
    column_names: tuple[str, ...]  # every column, bookkeeping included
    key: tuple[str, ...] = ()  # config-defined only: the primary key columns
    columns: tuple[tuple[str, str], ...] = ()  # config-defined only: (column, field type)
    track: tuple[str, ...] = ()  # columns whose versions a history table keeps (etl/history.py); () = none

    @property
    def builtin(self) -> bool:
        return not self.columns


@dataclass(frozen=True)
class RunSettings:
    """[run]: how the coordinator and the pools run (not what a run produces)."""

    fetch_threads: int = 16
    parse_processes: int = 0  # resolved to the number of cores by the loader
    batch_size: int = 1000
    flush_seconds: float = 1.0
    engine: str = "selectolax"
    http: str = "curl"  # the fetch stage's HTTP engine, one of HTTP_ENGINES (README: HTTP engines)
    max_pages: int = 0
    start_method: str = "spawn"
    frontier_memory: int = 200_000
    parse_timeout: float = 60.0  # seconds one page may take to parse before its process is replaced
    max_urls: int = 5_000_000  # distinct URLs a run's frontier may hold; new links past it are dropped (partial)
    seen_memory: int = 1_000_000  # fingerprints kept in memory (70-90 bytes each); past it the database dedupes
    lease: float = 60.0  # etl worker: seconds a claim on a page lasts without a heartbeat (then others take it)
    claim_batch: int = 0  # etl worker: units claimed at a time (0: fetch_threads, or 2 per parse process)


@dataclass(frozen=True)
class FetchSettings:
    """[politeness]: everything the fetch stage reads."""

    per_host: int = 16
    delay: float = 0.0
    robots: bool = True
    user_agent: str = "etl-crawl/0.1 (+https://github.com/etl-crawl/etl-crawl)"
    connect_timeout: float = 5.0
    read_timeout: float = 20.0
    total_timeout: float = 120.0
    retries: int = 2  # retries after the first attempt, as Scrapy's RETRY_TIMES (2: three attempts in all)
    backoff: float = 0.5
    max_bytes: int = 10_000_000


@dataclass(frozen=True)
class DatabaseSettings:
    """[database]: where rows go and how long the writer waits out a lost database."""

    url: str = "sqlite:///etl.db"
    retry_seconds: float = 60.0
    connect_wait: float = 0.0  # seconds a run start retries a refused connection (a database still starting)


@dataclass(frozen=True)
class Config:
    path: str
    job: str
    source_type: str  # the registry name of the source kind (etl/sources/); only the registry reads it
    site: str
    vars: dict[str, Any]
    demo: dict[str, Any] | None
    start_urls: tuple[str, ...]
    allowed_domains: tuple[str, ...]
    source: Any  # the source kind's own checked settings (etl/sources/<kind>.py), or None
    cap: int
    pages: dict[str, PageRule]
    pagination: Pagination
    items: Items | None
    fields: dict[str, FieldSpec]
    target: TargetSpec
    transform: Transform
    run: RunSettings
    fetch: FetchSettings
    database: DatabaseSettings
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def table(self) -> str:
        return self.target.name

    @property
    def database_url(self) -> str:
        return self.database.url

    @property
    def detail_kind(self) -> str | None:
        return self.items.detail.kind if self.items and self.items.detail else None

    @property
    def digest(self) -> str:
        """Identifies the config's meaning for run records and resume checks: what is crawled and how it
        becomes rows — not where it is stored, nor how fast or politely it is fetched (a run interrupted
        and resumed with more threads, another engine or a longer timeout is still the same run)."""
        raw = {k: v for k, v in self.raw.items() if k not in OPERATIONAL}
        return hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def as_dict(self) -> dict[str, Any]:
        return self.raw


OPERATIONAL = ("run", "politeness", "database")  # sections that do not change what a run produces
SETTINGS = {"run": RunSettings, "politeness": FetchSettings, "database": DatabaseSettings}
# every [run] / [politeness] / [database] key with its default, read off the settings dataclasses
DEFAULTS: dict[str, dict[str, Any]] = {
    section: {f.name: f.default for f in dataclasses.fields(cls)} for section, cls in SETTINGS.items()}

"""Database dialects, one module each behind etl/dialects/base.py's Dialect. The registry below is the
only place that maps a URL to a database; nothing else asks which database is in use."""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from etl.dialects.base import Dialect

REGISTRY: dict[str, str] = {  # URL scheme (before any +driver) → dialect
    "sqlite": "etl.dialects.sqlite:SQLiteDialect",
    "postgresql": "etl.dialects.postgresql:PostgreSQLDialect",
    "postgres": "etl.dialects.postgresql:PostgreSQLDialect",
    "mysql": "etl.dialects.mysql:MySQLDialect",
    "mariadb": "etl.dialects.mysql:MySQLDialect",
}


def scheme(url: str) -> str:
    return url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""


@cache
def _load(path: str) -> Dialect:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)()


def dialect_for(url: str) -> Dialect:
    """The dialect for a database URL (ValueError with a one-line reason for an unsupported one)."""
    problem = url_problem(url)
    if problem:
        raise ValueError(problem)
    return _load(REGISTRY[scheme(url)])


def url_problem(url: str) -> str | None:
    """Why a database URL cannot be used, or None."""
    if scheme(url) not in REGISTRY:
        from etl.dialects.base import mask_url

        examples = ", ".join(sorted({_load(p).example for p in REGISTRY.values()}))
        return f"unsupported URL {mask_url(url)!r} (use {examples})"
    return None

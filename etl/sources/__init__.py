"""Source kinds, one module each behind etl/sources/base.py's Source. The registry below is the only
place that maps a `[source] type` to code; modules are imported only when their kind is used."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from etl.config.model import Config
    from etl.sources.base import Source

REGISTRY: dict[str, str] = {
    "http": "etl.sources.http:HttpSource",
    "sql": "etl.sources.sql:SqlSource",
    "files": "etl.sources.files:FilesSource",
    "json": "etl.sources.json_api:JsonSource",
}


def source_class(kind: str) -> type[Source]:
    module, _, name = REGISTRY[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def source_for(cfg: Config) -> Source:
    return source_class(cfg.source_type)(cfg)

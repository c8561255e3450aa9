"""Job configuration: `load(path, overrides, database_url) -> Config`.

model.py says what a checked config is (and is all the fetch process imports); loader.py reads and
overrides; checker.py holds the per-value checks the sections share; build.py assembles a Config, asking
the source kind's own module (etl/sources/) to check its section. Nothing imports back up this list.
"""

from __future__ import annotations

from typing import Any

from etl.config.model import (
    TABLES,
    Config,
    ConfigError,
    DatabaseSettings,
    FetchSettings,
    FieldSpec,
    Items,
    LinkRule,
    PageRule,
    Pagination,
    RunSettings,
    Transform,
)

_LAZY = {"load", "apply_override", "parse_value", "DEFAULTS"}


def __getattr__(name: str) -> Any:
    """Loading pulls in the checks (CSS engines, source kinds); importing the model must not."""
    if name == "mask_url":
        from etl.dialects.base import mask_url

        return mask_url
    if name in _LAZY:
        from etl.config import loader as load_module

        return getattr(load_module, name)
    raise AttributeError(name)


__all__ = ["TABLES", "Config", "ConfigError", "DatabaseSettings", "FetchSettings", "FieldSpec", "Items",
           "LinkRule", "PageRule", "Pagination", "RunSettings", "Transform", *sorted(_LAZY), "mask_url"]

"""The hashes that let a re-run skip unchanged detail pages (etl/incremental.py), computed where items are
read: in the parse processes. Pure functions in a module of their own, so that parsing imports no database
code (SQLAlchemy alone is tens of MB in every parse process)."""

from __future__ import annotations

import hashlib
from typing import Any

from etl import jsontext
from etl.config.model import Config


def shape_digest(cfg: Config) -> str:
    """What a row is made of: the field definitions and the item key (not refresh_days, not the site's
    day): a change re-fetches every detail page once."""
    spec = [repr(sorted(cfg.fields.items())), repr(cfg.items.key if cfg.items else None)]
    return hashlib.blake2b("\n".join(spec).encode(), digest_size=8).hexdigest()


def item_hash(shape: str, raw: dict[str, Any], via: dict[str, Any] | None) -> str:
    """The hash of an item's list-page values (what a detail link carries to its page)."""
    text = jsontext.sorted_text([shape, raw, via or {}])
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()

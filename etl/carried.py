"""Carried facet texts stored once per run, referenced by the frontier rows below them.

A field `from = "facet:district"` reads the text of the facet link that led to a page, so that text
(`meta["via"]`, kind → text) travels down to every request below the facet: pagination, detail pages.
Copied into each frontier row, a list page of 30 items stored it 30 times, and every page below again
(a 2 MB link text once made an 8 GB frontier). So a frontier row's meta holds a reference instead,
`"via@": carried_key`, where carried_key is a stable hash of the via dict's canonical JSON, and the
`carried` table holds (run_id, carried_key) → via once. The writer inserts-if-new a page's carried rows
in the transaction of the links that reference them; whatever reads frontier rows back into Requests
resolves the references (`resolve`), so the parse process sees `meta["via"]` as ever. Rows written
before this (an inline "via") are read as they are. In memory the links of one page share one via dict,
so a pickle of them (a Parsed, a batch for the fetch process) holds it once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from etl import jsontext, schema
from etl.items import Link, Request
from etl.urls import frontier_key

log = logging.getLogger("etl.carried")

REF = "via@"  # the meta key of the reference (a frontier row never has both it and "via")
IN_CHUNK = 500  # keys per `IN (…)`


def canonical(via: dict[str, Any]) -> str:
    """The via dict as stored: key order and spacing fixed, so one value set is one text and one key."""
    return jsontext.canonical(via)


def carried_key(text: str) -> int:
    """A stable signed 64-bit key of a canonical via text (a BIGINT everywhere, as etl.urls.fingerprint)."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class Packer:
    """Frontier metas for one page's (or one batch's) links: each distinct via set is hashed and kept once
    (`texts`, carried_key → canonical via), however many links share it."""

    def __init__(self) -> None:
        self.texts: dict[int, str] = {}
        self._by_id: dict[int, tuple[int, dict]] = {}  # id(via) → (key, via): the via kept alive with its id

    def meta_json(self, request: Request) -> str:
        via = request.meta.get("via")
        if not via:
            return request.meta_json()
        known = self._by_id.get(id(via))
        if known is None:
            text = canonical(via)
            known = self._by_id[id(via)] = (carried_key(text), via)
            self.texts.setdefault(known[0], text)
        meta = {k: v for k, v in request.meta.items() if k != "via"}
        meta[REF] = known[0]
        return jsontext.text_or_str(meta)

    def links(self, requests: Iterable[Request]) -> list[Link]:
        return [Link(r.url, frontier_key(r), r.kind, self.meta_json(r)) for r in requests]

    def rows(self) -> list[dict[str, Any]]:
        """carried rows for insert-if-new (the run_id is the caller's)."""
        return [{"carried_key": k, "via": v} for k, v in self.texts.items()]


def resolve(conn, run_id: int, requests: list[Request]) -> list[Request]:
    """Put each referenced via set back into the meta of `requests` read from the frontier, one shared dict
    per key (a second query, not a join: the text is read once, not once per row). Returns `requests`."""
    wanted = {r.meta[REF] for r in requests if REF in r.meta}
    if not wanted:
        return requests
    found = read(conn, run_id, wanted)
    missing = 0
    for r in requests:
        if REF in r.meta:
            via = found.get(r.meta.pop(REF))
            if via is None:
                missing += 1
            else:
                r.meta["via"] = via
    if missing:  # never written without its carried row; a database edited by hand, say
        log.warning("carried: %d frontier entries of run %d refer to facet texts the database does not "
                    "hold; their facet fields will be empty", missing, run_id)
    return requests


def read(conn, run_id: int, keys: Iterable[int]) -> dict[int, dict[str, Any]]:
    c = schema.carried
    keys = sorted(keys)
    out: dict[int, dict[str, Any]] = {}
    for i in range(0, len(keys), IN_CHUNK):
        query = select(c.c.carried_key, c.c.via).where(c.c.run_id == run_id, c.c.carried_key.in_(keys[i:i + IN_CHUNK]))
        out.update((key, json.loads(via)) for key, via in conn.execute(query))
    return out

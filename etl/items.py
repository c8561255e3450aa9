"""The small dataclasses that travel between the stages — the whole data flow in one screen.

    Request ──fetch (thread)──▶ Page ──parse (process)──▶ Parsed ──writer queue──▶ database rows
                                                            └─ links: new Requests back to the frontier
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from etl import jsontext

if TYPE_CHECKING:
    from etl.arena import Slot


@dataclass(slots=True)
class Request:
    """A URL to fetch, the kind of page it is (a config `kind`) and what we already know about it."""

    url: str
    kind: str
    meta: dict[str, Any] = field(default_factory=dict)  # page number, fields carried from a list item…
    attempt: int = 0
    key: int | None = None  # etl.urls.fingerprint(url), once the frontier has computed it (see frontier_key)

    def meta_json(self) -> str:
        """The meta as the frontier table stores it (so a resumed run gets the same Request back)."""
        return jsontext.text_or_str(self.meta)

    @classmethod
    def from_frontier(cls, url: str, kind: str, meta: str | None, key: int | None = None) -> Request:
        return cls(url, kind, json.loads(meta) if meta else {}, key=key)


@dataclass(slots=True)
class RowShare:
    """Up to batch_size rows pickled once, in the parse process that made them. The coordinator forwards
    the bytes to the writer unopened: it only counts rows, so unpickling every row to pickle it again for
    the writer was its largest per-row cost (a row-heavy job such as news → stock mentions)."""

    count: int
    data: bytes

    def __len__(self) -> int:
        return self.count

    def load(self) -> list[dict[str, Any]]:
        return pickle.loads(self.data)

    @staticmethod
    def pack(rows: list[dict[str, Any]], step: int) -> list[RowShare]:
        step = max(1, step)
        return [RowShare(len(part), pickle.dumps(part, pickle.HIGHEST_PROTOCOL))
                for part in (rows[i:i + step] for i in range(0, len(rows), step))]


Rows = list[dict[str, Any]] | RowShare  # what a writer message carries: rows, or a share still pickled


@dataclass(slots=True)
class Page:
    """A fetched response: raw bytes, decoded later in the parse process (never in the fetch thread)."""

    request: Request
    url: str  # final URL after redirects
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class Parsed:
    """What the parse stage made of one page (or one SQL row range)."""

    request: Request
    rows: list[dict[str, Any]] = field(default_factory=list)
    links: list[Request] = field(default_factory=list)
    skipped: int = 0  # list items dropped by rule ([items] skip: ads, banners)
    keyless: int = 0  # list items with no natural key (or no detail link): not a rule, maybe a wrong selector
    error: str | None = None  # the page could not be used at all; recorded as a failure
    item_errors: list[str] = field(default_factory=list)  # list items dropped for a required field
    warnings: list[str] = field(default_factory=list)
    # Leading key values (e.g. (job, news_id)) whose stored rows `rows` replace: a row under one of them
    # that this unit did not produce again is stale (an edited article's dropped stock mention).
    replaces: list[tuple] = field(default_factory=list)
    # The page's ETag and Last-Modified (HTTP pages): kept per URL for the next run (etl/incremental.py)
    validators: tuple[str | None, str | None] | None = None
    shares: list[RowShare] = field(default_factory=list)  # `rows` as they travel to the coordinator (pack)

    def pack(self, step: int) -> None:
        """Pickle the rows into shares of `step` (batch_size) rows, for the trip to the writer."""
        if self.rows:
            self.shares, self.rows = RowShare.pack(self.rows, step), []

    @property
    def row_count(self) -> int:
        return len(self.rows) + sum(share.count for share in self.shares)


@dataclass(slots=True)
class Failure:
    """One row of the failures table: what could not be done, after every retry."""

    url: str
    stage: str  # fetch | parse | write
    error: str
    status: int | None = None
    attempts: int = 1


# ------------------------------------------------------------------------------ fetch stage → coordinator
@dataclass(slots=True)
class Fetched:
    """A page the fetch stage got, still pickled: the coordinator forwards it to a parse process as it is,
    the bytes themselves or, for a page in the shared arena (etl/arena.py), where they lie."""

    url: str  # the request's URL (the coordinator's handle on it)
    status: int
    payload: bytes  # pickle of the Page; empty when it is in the arena
    slot: Slot | None = None


# ------------------------------------------------------------------------------ coordinator → writer
@dataclass(slots=True)
class Link:
    """A newly discovered unit of work, as the frontier table stores it."""

    url: str
    key: int  # etl.urls.fingerprint(url)
    kind: str
    meta: str  # JSON; facet texts by reference ("via@", the PageDone's carried)


@dataclass(slots=True)
class PageRows:
    """A share of a unit's rows sent ahead of its PageDone: a page of 500,000 items travels and is committed
    in shares of `batch_size` rows, so no message or transaction holds the whole page. The unit stays
    pending until its PageDone commits; a crash in between redoes the page, and the upserts make that exact."""

    key: int  # the unit's frontier key
    rows: Rows
    replaces: list[tuple] = field(default_factory=list)  # on the first share only (see PageDone.replaces)


@dataclass(slots=True)
class PageDone:
    """A unit is finished: its (last share of) rows, the new work it found, and its state, committed together."""

    key: int  # the unit's frontier key
    rows: Rows
    links: list[Link]
    state: str  # done | failed
    replaces: list[tuple] = field(default_factory=list)  # Parsed.replaces: deleted in the rows' transaction
    # The facet texts its links refer to, once per page however many links share them: carried_key →
    # canonical via JSON (etl/carried.py), inserted if new with the links
    carried: dict[int, str] = field(default_factory=dict)


@dataclass(slots=True)
class Unchanged:
    """Rows seen again as they are stored (a list item whose list-page values did not change, a detail page
    that answered 304): the writer moves only their last_seen and run_id, so detail-only fields stay and a
    complete run still knows it saw them. Sent before the page's PageDone, so it commits with or before it."""

    keys: list[tuple]  # natural keys of the target table, e.g. (source, listing_id)


@dataclass(slots=True)
class UrlSeen:
    """What the next run needs to know about a URL just fetched (a url_state row, etl/incremental.py)."""

    job: str
    url_key: int  # etl.incremental.url_id(url): stable when the demo server moves to another port
    url: str
    kind: str
    etag: str | None
    last_modified: str | None
    item_key: str | None = None  # a detail page: the item it completes
    item_hash: str | None = None  # and the hash of the list-page values it was completed with


@dataclass(slots=True)
class FailureNote:
    url: str
    stage: str  # fetch | parse | write
    status: int | None
    error: str
    attempts: int
    key: int | None = None  # the frontier key of the unit it belongs to (a shared run drops a lost unit's)


@dataclass(slots=True)
class Bundle:
    """Several messages in one pickle and one pipe write."""

    messages: list[Any]


@dataclass(slots=True)
class Sync:
    """Commit now and answer Synced (the coordinator is about to read the frontier)."""


@dataclass(slots=True)
class Stop:
    """Commit what is held and exit."""


# ------------------------------------------------------------------------------ writer → coordinator
@dataclass(slots=True)
class Synced:
    pass


@dataclass(slots=True)
class WriterDone:
    """rows_written and rows_refused count the whole run (earlier sessions and writers included), so the
    coordinator can tell a run whose every row the database refused from one that lost a few."""

    rows_written: int
    batches: int
    rows_refused: int = 0
    refusal: str | None = None  # the first refusal's error, for the run's one-line message


@dataclass(slots=True)
class WriterError:
    message: str

"""What a job already knows from earlier runs, and what a re-run therefore need not fetch.

A nightly crawl re-reads every list page (they are what says which listings are still there, and at
which price) but not every detail page: at run start the coordinator loads, for the job, a compact map
item key → (hash of the list-page values the stored row was built from, when its detail page was last
confirmed, its validators), from `url_state` joined with the target table (a key whose row is gone is
not "known"). A detail link found on a list page is then

  * followed as usual when the item is new, or its list-page values changed (the row is rebuilt whole
    from the list values and a fresh detail page: no conditional request, since a 304 would leave no
    detail values to rebuild it with);
  * followed with If-None-Match / If-Modified-Since when its values did not change but the detail is older
    than `[items.detail] refresh_days`: a 304 keeps the stored row;
  * dropped otherwise: the row stays as stored and only its last_seen / run_id move (`Unchanged`), so
    detail-only fields are carried over and a complete run still marks the listing as seen.

List pages are never asked conditionally: a 304 would give neither their items (to be re-seen) nor their
links (pagination, facets), and storing every list page's output to replay it would cost more than the
few hundred list pages of a site. Their validators are kept anyway (one row per URL, not per run).

The hash covers the item's raw list-page strings, the facet texts that led to it and the config's field
definitions, so a config that reads a new field re-fetches every detail page once.
"""

from __future__ import annotations

import datetime as dt
import logging
import pickle
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.exc import SQLAlchemyError

from etl import schema
from etl.config.model import Config
from etl.items import Parsed, Request, Unchanged, UrlSeen
from etl.urls import fingerprint

log = logging.getLogger("etl.incremental")

STABLE_ORIGIN = "http://base.invalid"  # stands for the run's base_url in url_state keys
CHUNK = 500  # keys per IN (...) of an UPDATE: under SQLite's variable limit


def url_id(url: str, base_url: str | None) -> int:
    """A URL's url_state key. The demo server (and a bench's nginx) gets a new port every run, so the
    run's base_url is swapped for a fixed origin first: the same page keeps its key from run to run."""
    if base_url and url.startswith(base_url):
        url = STABLE_ORIGIN + url[len(base_url):]
    return fingerprint(url)


@dataclass(slots=True)
class KnownItem:
    hash: str
    fetched: float  # epoch seconds: the detail page was last confirmed current
    etag: str | None = None
    last_modified: str | None = None


class Known:
    """The coordinator's map of known items, and the decisions it makes with it."""

    def __init__(self, cfg: Config, base_url: str | None, items: dict[str, KnownItem] | None = None) -> None:
        self.cfg, self.base_url = cfg, base_url
        self.items = items or {}
        self.detail_kind = cfg.detail_kind
        days = cfg.items.refresh_days if cfg.items else None
        self.refresh_before = None if days is None else time.time() - days * 86400.0
        self.skipped = 0  # detail pages not fetched this session (unchanged listings)

    @classmethod
    def load(cls, cfg: Config, base_url: str | None) -> Known:
        """Read the job's known items (only for crawls with detail pages: nothing else is skipped)."""
        if cfg.detail_kind is None or cfg.items is None:
            return cls(cfg, base_url)
        from etl import db
        from etl.targets import resolve

        target = resolve(cfg.target).table
        u = schema.url_state
        engine = db.make_engine(cfg.database_url)
        try:  # a failed read costs speed, not correctness: everything is fetched, as on a first run
            with engine.connect() as conn:
                query = (select(u.c.item_key, u.c.item_hash, u.c.fetched_at, u.c.etag, u.c.last_modified)
                         .select_from(u.join(target, and_(target.c.source == cfg.site,
                                                          target.c[cfg.target.row_key] == u.c.item_key)))
                         .where(u.c.job == cfg.job, u.c.item_hash.is_not(None)))
                items = {key: KnownItem(h, _epoch(at), etag, lm) for key, h, at, etag, lm in conn.execute(query)}
        except SQLAlchemyError as exc:
            log.warning("could not read what earlier runs fetched (%s); fetching every detail page",
                        str(exc).splitlines()[0][:300])
            items = {}
        finally:
            engine.dispose()
        if items:
            log.info("%s items known from earlier runs: their detail pages are fetched only if changed",
                     f"{len(items):,}")
        return cls(cfg, base_url, items)

    def sift(self, parsed: Parsed, status: int = 200) -> tuple[list[Request], list[Any]]:
        """The links worth following and the messages the writer needs, posted before the page's PageDone:
        the page's url_state row, and the items seen unchanged (their detail links dropped)."""
        req, notes, links, unchanged = parsed.request, [], [], []
        if parsed.validators is not None:
            notes.append(self.seen(req, parsed.validators))
        if status == 304 and req.meta.get("key") is not None:  # a detail page as we have it: the row stays
            unchanged.append((self.cfg.site, str(req.meta["key"])))
        for link in parsed.links:
            verdict = self.verdict(link)
            if verdict is None:
                links.append(link)
            elif verdict is False:
                unchanged.append((self.cfg.site, str(link.meta["key"]).strip()))
            else:  # due for a refresh: ask the server whether it changed
                link.meta["validators"] = verdict
                links.append(link)
        self.skipped += len(unchanged) - (status == 304)
        if unchanged:
            notes.append(Unchanged(unchanged))
        return links, notes

    def verdict(self, link: Request) -> None | bool | list[str | None]:
        """None: fetch (new or changed); False: skip (unchanged); validators: fetch conditionally."""
        if link.kind != self.detail_kind or "list_hash" not in link.meta:
            return None
        known = self.items.get(str(link.meta.get("key")).strip())
        if known is None or known.hash != link.meta["list_hash"]:
            return None
        if self.refresh_before is None or known.fetched >= self.refresh_before:
            return False
        return [known.etag, known.last_modified] if known.etag or known.last_modified else None

    def seen(self, req: Request, validators: tuple[str | None, str | None]) -> UrlSeen:
        etag, modified = validators
        detail = req.kind == self.detail_kind and req.meta.get("list_hash") is not None
        return UrlSeen(self.cfg.job, url_id(req.url, self.base_url), req.url, req.kind, etag, modified,
                       str(req.meta.get("key")).strip() if detail else None,
                       req.meta.get("list_hash") if detail else None)


def validators_of(payload: bytes) -> tuple[str | None, str | None]:
    """The validators a 304 carried (the fetch stage's pickled Page; a 304 has no body, so it is small)."""
    headers = pickle.loads(payload).headers
    return headers.get("etag"), headers.get("last-modified")


def _epoch(value: Any) -> float:
    if isinstance(value, str):  # SQLite without type affinity for a raw read
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


# ---------------------------------------------------------------------------------------- the writer's side
def store(conn, dialect, table, key: tuple[str, ...], unchanged: set[tuple], urls: dict[int, UrlSeen],
          const: dict[str, Any], run_id: int) -> None:
    """In the writer's batch transaction: move last_seen/run_id of the rows seen unchanged, and upsert the
    url_state rows of the pages fetched (one row per job and URL: it never grows with the runs)."""
    moved = {c: v for c, v in const.items() if c in ("last_seen", "run_id")}
    if unchanged and moved:
        by_scope: dict[tuple, list] = {}
        for k in unchanged:
            by_scope.setdefault(k[:-1], []).append(k[-1])
        cols = [table.c[c] for c in key]
        for scope, last in by_scope.items():
            same = [c == v for c, v in zip(cols[:-1], scope, strict=True)]
            last.sort()
            for i in range(0, len(last), CHUNK):
                conn.execute(update(table).where(and_(*same, cols[-1].in_(last[i:i + CHUNK]))).values(**moved))
    if urls:
        now = const.get("last_seen") or dt.datetime.now(dt.UTC)
        rows = [{"job": u.job, "url_key": u.url_key, "url": u.url, "kind": u.kind, "etag": u.etag,
                 "last_modified": u.last_modified, "fetched_at": now, "item_key": u.item_key,
                 "item_hash": u.item_hash, "run_id": run_id} for u in urls.values()]
        dialect.upsert_rows(conn, schema.url_state, ("job", "url_key"), (), rows)

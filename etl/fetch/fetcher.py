"""Fetch stage: HTTP on a thread pool, polite per host, through one of two engines (`[run] http`):
requests (etl/fetch/requests_engine.py) or libcurl (etl/fetch/curl_engine.py).

A fetch never raises: it returns a Page or a FetchFailure saying whether a retry may help. Retries are
scheduled by the coordinator (so a backing-off URL never holds a thread), redirects are followed by hand
so every hop is checked against the allowed domains and robots.txt, bodies are cut off at max_bytes
(decoded), and a response that outlives total_timeout fails so the thread is free. All of that is here,
once; an engine only performs one GET (etl/fetch/engine.py).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from etl.config.model import FetchSettings
from etl.errors import one_line
from etl.fetch.engine import Engine, Reply, TransportError
from etl.items import Page, Request
from etl.robots import Robots
from etl.urls import allowed, origin_of

log = logging.getLogger("etl.fetch")

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10
ROBOTS_MAX_BYTES = 500 * 1024  # RFC 9309: crawlers must read at least 500 KiB; more is not needed


@dataclass(slots=True)
class FetchFailure:
    request: Request
    error: str
    status: int | None = None
    retryable: bool = False
    retry_after: float | None = None  # seconds, from a Retry-After header


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date; both are honoured (capped at 10 minutes)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²".isdigit() is True too
        return min(float(value), 600.0)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # the asctime form carries no zone; HTTP dates are always GMT
        when = when.replace(tzinfo=dt.UTC)
    return min(max(0.0, when.timestamp() - (now if now is not None else time.time())), 600.0)


def conditional_headers(request: Request) -> dict[str, str] | None:
    """The conditional request for a page we hold a copy of (its validators ride in the Request's meta,
    put there by the coordinator: etl/incremental.py). If-None-Match decides when both are sent."""
    validators = request.meta.get("validators")
    if not validators:
        return None
    etag, modified = (list(validators) + [None, None])[:2]
    headers = {}
    if isinstance(etag, str) and etag and "\n" not in etag and "\r" not in etag:
        headers["If-None-Match"] = etag
    if isinstance(modified, str) and modified and "\n" not in modified and "\r" not in modified:
        headers["If-Modified-Since"] = modified
    return headers or None


def make_engine(name: str, settings: FetchSettings, pool_size: int) -> Engine:
    """Imported on demand: a fetch process loads only the HTTP library it uses."""
    if name == "curl":
        from etl.fetch.curl_engine import CurlEngine

        return CurlEngine(settings)
    if name == "requests":
        from etl.fetch.requests_engine import RequestsEngine

        return RequestsEngine(settings, pool_size)
    raise ValueError(f"unknown HTTP engine {name!r}")


class HostGate:
    """At most `per_host` requests in flight per host, and at least `delay` seconds between request starts."""

    def __init__(self, per_host: int, delay: float) -> None:
        self.per_host, self.delay = per_host, delay
        self.lock = threading.Lock()
        self.slots: dict[str, threading.BoundedSemaphore] = {}
        self.next_start: dict[str, float] = {}
        self.host_delay: dict[str, float] = {}

    def slow_down(self, host: str, delay: float) -> None:
        """A host's robots.txt asked for a Crawl-delay longer than ours."""
        with self.lock:
            self.host_delay[host] = max(delay, self.delay)

    def enter(self, host: str) -> threading.BoundedSemaphore:
        with self.lock:
            slot = self.slots.get(host)
            if slot is None:
                slot = self.slots[host] = threading.BoundedSemaphore(self.per_host)
        while not slot.acquire(timeout=5.0):
            pass  # waits for a free slot; the timeout keeps the wait interruptible
        delay = self.host_delay.get(host, self.delay)
        if delay > 0:
            with self.lock:
                start = max(time.monotonic(), self.next_start.get(host, 0.0))
                self.next_start[host] = start + delay
            pause = start - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        return slot


class Fetcher:
    def __init__(self, settings: FetchSettings, domains: tuple[str, ...], pool_size: int = 16,
                 credentials: dict[str, tuple[str, str]] | None = None, http: str = "requests") -> None:
        self.total_timeout = settings.total_timeout
        self.credentials = credentials or {}  # origin → (user, password): Basic auth for that origin only
        self.domains = domains
        self.user_agent = settings.user_agent
        self.max_bytes = settings.max_bytes
        self.gate = HostGate(settings.per_host, settings.delay)
        self.obey_robots = settings.robots
        self.pool_size = pool_size
        self.robots: dict[str, Robots] = {}
        self.robots_lock = threading.Lock()
        self.http = make_engine(http, settings, pool_size)  # `[run] http`: requests or curl

    def _auth(self, url: str) -> tuple[str, str] | None:
        return self.credentials.get(origin_of(url)) if self.credentials else None

    def robots_allows(self, url: str) -> bool | str:
        """True/False, or a reason string when robots.txt cannot be read right now (retryable, RFC 9309:
        a server error on robots.txt means 'disallow everything for now', not 'allow')."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        with self.robots_lock:
            parser = self.robots.get(origin)
        if parser is None:
            loaded = self._load_robots(origin)
            if isinstance(loaded, str):
                return loaded
            with self.robots_lock:
                parser = self.robots.setdefault(origin, loaded)
            if parser.crawl_delay:
                self.gate.slow_down(parts.netloc, parser.crawl_delay)
        return parser.allows(url)

    def _load_robots(self, origin: str) -> Robots | str:
        """RFC 9309: up to five redirects (here: only within the allowed domains), the first 500 KiB read."""
        url = origin + "/robots.txt"
        try:
            for _ in range(6):
                with self.http.get(url, None, self._auth(url), ROBOTS_MAX_BYTES, False) as r:
                    if r.status in REDIRECTS and r.headers.get("location"):
                        url = urljoin(url, r.headers["location"])
                        if not allowed(url, self.domains):
                            return Robots()  # robots.txt lives elsewhere: as if there were none
                        continue
                    return self._robots_from(r)
            return Robots()  # too many redirects: as if there were none
        except TransportError as exc:
            if exc.too_slow:
                return f"robots.txt slower than total_timeout={self.total_timeout:g}s"
            return f"robots.txt unreachable ({exc.kind})"
        except (ValueError, UnicodeError) as exc:
            return f"robots.txt unreachable ({type(exc).__name__})"

    def _robots_from(self, r: Reply) -> Robots | str:
        if r.status >= 500 or r.status == 429:
            return f"robots.txt answered HTTP {r.status}"
        if r.status >= 400:
            return Robots()  # no robots.txt: everything is allowed
        chunks, size = [], 0
        for chunk in r.chunks():
            chunks.append(chunk)
            size += len(chunk)
            if size >= ROBOTS_MAX_BYTES:
                break
        body = b"".join(chunks)[:ROBOTS_MAX_BYTES]
        return Robots.parse(body.decode("utf-8", "replace"), self.user_agent)

    def fetch(self, request: Request, report: Callable[[bool], None] | None = None) -> Page | FetchFailure:
        """`report(True)` when a hop's request is about to be written (it has its turn at the host),
        `report(False)` when a redirect sends it back to waiting for robots.txt and the host's turn."""
        url = request.url
        if not allowed(url, self.domains):
            return FetchFailure(request, "URL outside the allowed domains or not http(s)")
        seen = {url}
        for hop in range(MAX_REDIRECTS + 1):
            if hop and report is not None:
                report(False)
            if self.obey_robots:  # every hop, redirects included
                verdict = self.robots_allows(url)
                if isinstance(verdict, str):
                    return FetchFailure(request, verdict, None, True)
                if not verdict:
                    return FetchFailure(request, f"disallowed by robots.txt: {url}")
            host = urlsplit(url).netloc
            slot = self.gate.enter(host)
            if report is not None:
                report(True)
            try:
                result = self._get(request, url)
            finally:
                slot.release()
            if isinstance(result, str):  # a redirect target
                if not allowed(result, self.domains):
                    return FetchFailure(request, f"redirect to a URL outside the allowed domains: {result}")
                if result in seen:
                    return FetchFailure(request, f"redirect loop at {result}")
                seen.add(result)
                url = result
                continue
            return result
        return FetchFailure(request, f"more than {MAX_REDIRECTS} redirects")

    def _get(self, request: Request, url: str) -> Page | FetchFailure | str:
        """One hop: a Page, a FetchFailure, or the URL a redirect points to. A body is read only for a
        status that can become a page."""
        conditional = conditional_headers(request) if url == request.url else None  # not a redirect's hop
        try:
            with self.http.get(url, conditional, self._auth(url), self.max_bytes, True) as r:
                if r.status == 304 and conditional:  # unchanged since our copy: no body to read
                    return Page(request, url, 304, dict(r.headers), b"")
                if r.status in REDIRECTS and r.headers.get("location"):
                    return urljoin(url, r.headers["location"])
                if r.status in RETRY_STATUS:
                    return FetchFailure(request, f"HTTP {r.status}", r.status, True,
                                        retry_after_seconds(r.headers.get("retry-after")))
                if r.status >= 400:
                    return FetchFailure(request, f"HTTP {r.status}", r.status)
                if r.status >= 300 or r.status in (204, 205):  # 304 unasked, 3xx without Location
                    return FetchFailure(request, f"HTTP {r.status} without content to parse", r.status)
                return self._body(request, url, r)
        except TransportError as exc:
            return self._too_slow(request, None) if exc.too_slow else FetchFailure(request, exc.error, None,
                                                                                   exc.retryable)
        except (ValueError, UnicodeError) as exc:  # bad URLs, redirect targets
            return FetchFailure(request, f"{type(exc).__name__}: {one_line(exc)}")

    def _body(self, request: Request, url: str, r: Reply) -> Page | FetchFailure:
        declared = r.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self.max_bytes:
            return FetchFailure(request, f"body of {declared} bytes exceeds max_bytes={self.max_bytes}", r.status)
        chunks, size = [], 0
        try:
            for chunk in r.chunks():
                size += len(chunk)
                if size > self.max_bytes:
                    return FetchFailure(request, f"body exceeds max_bytes={self.max_bytes}", r.status)
                chunks.append(chunk)
        except TransportError as exc:
            if exc.too_slow:
                return self._too_slow(request, r.status)
            raise
        if not size:  # a glitch more often than a page: retried, then recorded (never stored as NULLs)
            return FetchFailure(request, "empty response body", r.status, True)
        return Page(request, url, r.status, dict(r.headers), b"".join(chunks))

    def _too_slow(self, request: Request, status: int | None) -> FetchFailure:
        return FetchFailure(request, f"response slower than total_timeout={self.total_timeout:g}s", status, True)

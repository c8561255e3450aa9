"""Fetch stage: HTTP on a thread pool, one requests.Session per thread (keep-alive), polite per host.

A fetch never raises: it returns a Page or a FetchFailure saying whether a retry may help. Retries are
scheduled by the coordinator (so a backing-off URL never holds a thread), redirects are followed by hand
so every hop is checked against the allowed domains, bodies are streamed and cut off at max_bytes, and a
response that outlives total_timeout has its socket shut down (etl/fetch/watchdog.py) so the thread is free.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests

from etl.config.model import FetchSettings
from etl.errors import one_line
from etl.fetch.watchdog import Deadline, Watchdog, WatchedAdapter
from etl.items import Page, Request
from etl.robots import Robots
from etl.urls import allowed, origin_of

log = logging.getLogger("etl.fetch")

_PROXY_ENV = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy", "netrc"})
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
            slot = self.slots.setdefault(host, threading.BoundedSemaphore(self.per_host))
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
                 credentials: dict[str, tuple[str, str]] | None = None) -> None:
        self.total_timeout = settings.total_timeout
        self.credentials = credentials or {}  # origin → (user, password): Basic auth for that origin only
        self.domains = domains
        self.user_agent = settings.user_agent
        self.timeout = (settings.connect_timeout, settings.read_timeout)
        self.max_bytes = settings.max_bytes
        self.gate = HostGate(settings.per_host, settings.delay)
        self.obey_robots = settings.robots
        self.pool_size = pool_size
        self.local = threading.local()
        self.robots: dict[str, Robots] = {}
        self.robots_lock = threading.Lock()
        self.watchdog = Watchdog()

    def session(self) -> requests.Session:
        s = getattr(self.local, "session", None)
        if s is None:
            s = requests.Session()
            adapter = WatchedAdapter(pool_connections=4, pool_maxsize=self.pool_size, max_retries=0)
            s.mount("http://", adapter)
            s.mount("https://", adapter)
            s.headers["User-Agent"] = self.user_agent
            s.headers["Accept-Encoding"] = "gzip, deflate"
            # requests re-reads proxy variables and ~/.netrc on every request (~20% of fetch CPU). When no
            # proxy is configured in the environment, skip that; otherwise keep requests' full behaviour.
            if not _PROXY_ENV.intersection(k.lower() for k in os.environ):
                s.trust_env = False
                bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
                if bundle:
                    s.verify = bundle
                # With nothing to merge from the environment, a request is the session's headers plus a
                # URL: prepare that once and copy it, instead of Session.request's per-call merging of
                # params, auth, hooks and headers (a quarter of the fetch CPU, bench/results).
                self.local.template = s.prepare_request(requests.Request("GET", "http://localhost/"))
            else:
                self.local.template = None
            self.local.session = s
        return s

    def _send(self, url: str) -> requests.Response:
        """GET url on this thread's session: streamed, no redirects followed, cookies kept by the session."""
        s = self.session()
        template = self.local.template
        auth = self.credentials.get(origin_of(url)) if self.credentials else None
        if template is None:
            return s.get(url, timeout=self.timeout, stream=True, allow_redirects=False, auth=auth)
        prepared = template.copy()
        prepared.prepare_url(url, None)
        if auth or "@" in url:  # the start URL's user:password for this origin, or one in the URL itself
            prepared.prepare_auth(auth, prepared.url)
        if len(s.cookies):
            prepared.prepare_cookies(s.cookies)
        return s.send(prepared, timeout=self.timeout, stream=True, allow_redirects=False, verify=s.verify,
                      proxies=s.proxies, cert=s.cert)

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
                with self.watchdog.guard(self.total_timeout) as deadline:
                    try:
                        with self.session().get(url, timeout=self.timeout, stream=True, allow_redirects=False,
                                                auth=self.credentials.get(origin_of(url))) as r:
                            if r.status_code in REDIRECTS and r.headers.get("location"):
                                url = urljoin(url, r.headers["location"])
                                if not allowed(url, self.domains):
                                    return Robots()  # robots.txt lives elsewhere: as if there were none
                                continue
                            return self._robots_from(r, deadline)
                    except (requests.RequestException, OSError):
                        if deadline.fired:
                            return f"robots.txt slower than total_timeout={self.total_timeout:g}s"
                        raise
            return Robots()  # too many redirects: as if there were none
        except (requests.RequestException, OSError, ValueError, UnicodeError) as exc:
            return f"robots.txt unreachable ({type(exc).__name__})"

    def _robots_from(self, r: requests.Response, deadline: Deadline) -> Robots | str:
        if r.status_code >= 500 or r.status_code == 429:
            return f"robots.txt answered HTTP {r.status_code}"
        if r.status_code >= 400:
            return Robots()  # no robots.txt: everything is allowed
        body = b""
        for chunk in r.iter_content(65536):
            body += chunk
            if len(body) >= ROBOTS_MAX_BYTES or deadline.passed():
                break
        return Robots.parse(body[:ROBOTS_MAX_BYTES].decode("utf-8", "replace"), self.user_agent)

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
        """One hop: a Page, a FetchFailure, or the URL a redirect points to. total_timeout bounds the whole
        response, headers included: past it the watchdog shuts the socket down and the read returns."""
        with self.watchdog.guard(self.total_timeout) as deadline:
            try:
                with self._send(url) as r:
                    if deadline.fired:  # cut while the headers trickled in: what arrived is not a response
                        return self._too_slow(request, None)
                    if r.status_code in REDIRECTS and r.headers.get("location"):
                        return urljoin(url, r.headers["location"])
                    if r.status_code in RETRY_STATUS:
                        return FetchFailure(request, f"HTTP {r.status_code}", r.status_code, True,
                                            retry_after_seconds(r.headers.get("retry-after")))
                    if r.status_code >= 400:
                        return FetchFailure(request, f"HTTP {r.status_code}", r.status_code)
                    if r.status_code >= 300 or r.status_code in (204, 205):  # 304 unasked, 3xx without Location
                        return FetchFailure(request, f"HTTP {r.status_code} without content to parse",
                                            r.status_code)
                    return self._body(request, url, r, deadline)
            except (requests.RequestException, OSError, ValueError, UnicodeError) as exc:
                return self._failure(request, exc, deadline)

    def _body(self, request: Request, url: str, r: requests.Response, deadline: Deadline) -> Page | FetchFailure:
        declared = r.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self.max_bytes:
            return FetchFailure(request, f"body of {declared} bytes exceeds max_bytes={self.max_bytes}",
                                r.status_code)
        chunks, size = [], 0
        for chunk in r.iter_content(65536):
            if deadline.passed():  # bytes keep coming, but too slowly for the whole response
                return self._too_slow(request, r.status_code)
            size += len(chunk)
            if size > self.max_bytes:
                return FetchFailure(request, f"body exceeds max_bytes={self.max_bytes}", r.status_code)
            chunks.append(chunk)
        if deadline.fired:  # the cut socket read as the end of a body without a declared length
            return self._too_slow(request, r.status_code)
        if not size:  # a glitch more often than a page: retried, then recorded (never stored as NULLs)
            return FetchFailure(request, "empty response body", r.status_code, True)
        return Page(request, url, r.status_code, {k.lower(): v for k, v in r.headers.items()}, b"".join(chunks))

    def _too_slow(self, request: Request, status: int | None) -> FetchFailure:
        return FetchFailure(request, f"response slower than total_timeout={self.total_timeout:g}s", status, True)

    def _failure(self, request: Request, exc: Exception, deadline: Deadline) -> FetchFailure:
        if deadline.fired:  # the watchdog cut it: whatever the read raised, the server was too slow
            return self._too_slow(request, None)
        if isinstance(exc, requests.ConnectionError | requests.Timeout | requests.exceptions.ChunkedEncodingError
                      | requests.exceptions.ContentDecodingError):
            return FetchFailure(request, f"{type(exc).__name__}: {one_line(exc)}", None, True)
        if isinstance(exc, requests.RequestException | ValueError | UnicodeError):  # bad URLs, redirect targets
            return FetchFailure(request, f"{type(exc).__name__}: {one_line(exc)}")
        return FetchFailure(request, f"{type(exc).__name__}: {one_line(exc)}", None, True)  # a socket error

"""The requests engine: one requests.Session per thread (keep-alive), responses streamed, and the
whole-response deadline enforced by the watchdog (etl/fetch/watchdog.py), since a socket read blocked on
a trickling server cannot otherwise be interrupted."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import requests

from etl.config.model import FetchSettings
from etl.errors import one_line
from etl.fetch.engine import TransportError, ca_bundle, env_configured
from etl.fetch.watchdog import Deadline, Watchdog, WatchedAdapter

CHUNK = 65536


class RequestsReply:
    __slots__ = ("deadline", "headers", "r", "status", "too_slow")

    def __init__(self, r: requests.Response, deadline: Deadline, too_slow: TransportError) -> None:
        self.r, self.deadline, self.too_slow = r, deadline, too_slow
        self.status = r.status_code
        self.headers = {k.lower(): v for k, v in r.headers.items()}

    def chunks(self) -> Iterator[bytes]:
        for chunk in self.r.iter_content(CHUNK):
            if self.deadline.passed():  # bytes keep coming, but too slowly for the whole response
                raise self.too_slow
            yield chunk
        if self.deadline.fired:  # the cut socket read as the end of a body without a declared length
            raise self.too_slow


class RequestsEngine:
    def __init__(self, settings: FetchSettings, pool_size: int) -> None:
        self.user_agent = settings.user_agent
        self.timeout = (settings.connect_timeout, settings.read_timeout)
        self.total_timeout = settings.total_timeout
        self.pool_size = pool_size
        self.local = threading.local()
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
            if not env_configured():
                s.trust_env = False
                bundle = ca_bundle()
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

    def _send(self, url: str, headers: dict[str, str] | None,
              auth: tuple[str, str] | None) -> requests.Response:
        """GET url on this thread's session: streamed, no redirects followed, cookies kept by the session."""
        s = self.session()
        template = self.local.template
        if template is None:
            return s.get(url, timeout=self.timeout, stream=True, allow_redirects=False, auth=auth,
                         headers=headers)
        prepared = template.copy()
        prepared.prepare_url(url, None)
        if headers:
            prepared.headers.update(headers)
        if auth or "@" in url:  # the start URL's user:password for this origin, or one in the URL itself
            prepared.prepare_auth(auth, prepared.url)
        if len(s.cookies):
            prepared.prepare_cookies(s.cookies)
        return s.send(prepared, timeout=self.timeout, stream=True, allow_redirects=False, verify=s.verify,
                      proxies=s.proxies, cert=s.cert)

    @contextmanager
    def get(self, url: str, headers: dict[str, str] | None, auth: tuple[str, str] | None, limit: int,
            whole: bool) -> Iterator[RequestsReply]:
        """total_timeout bounds the whole response, headers included: past it the watchdog shuts the
        socket down and the read returns. `limit` and `whole` need nothing here: the body is streamed, so
        the Fetcher stops reading where it wants."""
        too_slow = TransportError(f"response slower than total_timeout={self.total_timeout:g}s", True, True)
        with self.watchdog.guard(self.total_timeout) as deadline:
            try:
                with self._send(url, headers, auth) as r:
                    if deadline.fired:  # cut while the headers trickled in: what arrived is not a response
                        raise too_slow
                    yield RequestsReply(r, deadline, too_slow)
            except (requests.RequestException, OSError) as exc:
                raise too_slow if deadline.fired else _transport_error(exc) from None


def _transport_error(exc: Exception) -> TransportError:
    text = f"{type(exc).__name__}: {one_line(exc)}"
    if isinstance(exc, requests.ConnectionError | requests.Timeout | requests.exceptions.ChunkedEncodingError
                  | requests.exceptions.ContentDecodingError):
        return TransportError(text, True)
    if isinstance(exc, requests.RequestException):  # bad URLs, invalid headers: a retry gives the same
        return TransportError(text, False)
    return TransportError(text, True)  # a socket error

"""The libcurl engine (pycurl): one easy handle per fetch thread, reused, its transfers run by one driver
thread on libcurl's multi interface (etl/fetch/curl_multi.py), whose connection cache keeps them alive.

libcurl reads the response in C with the GIL released, decodes gzip/deflate itself and enforces the
whole-response deadline (TIMEOUT), so no watchdog thread is needed; Python sees only the header lines and
the decoded body. What requests decides for us is decided here the same way, on purpose: the URL sent is
the one requests would send (PreparedRequest.prepare_url), credentials become the same preemptive Basic
header, proxies come from the environment through requests' own functions (libcurl alone would ignore
HTTP_PROXY and read no_proxy its own way), the CA bundle is REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE or
certifi's, and failures are named after the requests exception of the same kind.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import certifi
import pycurl

from etl.config.model import FetchSettings
from etl.fetch.curl_multi import DriverGone, MultiDriver
from etl.fetch.engine import TransportError, basic_auth, ca_bundle, env_configured
from etl.urls import PLAIN_HOST, host_port

BUFFER = 65536  # bytes libcurl hands the write callback at most: fewer calls into Python per page

# curl error → (the requests exception a failure of that kind is named after, whether a retry may help).
# requests counts every connection-level error as a ConnectionError (TLS ones included), hence retryable.
ERRORS: dict[int, tuple[str, bool]] = {
    1: ("ConnectionError", True),  # a reply that is not HTTP/1.x (HTTP/0.9); other schemes never get here
    3: ("InvalidURL", False),  # malformed URL
    5: ("ProxyError", True),  # could not resolve the proxy
    6: ("ConnectionError", True),  # could not resolve the host
    7: ("ConnectionError", True),  # could not connect (refused, unreachable)
    8: ("ConnectionError", True),  # weird server reply
    16: ("ConnectionError", True),  # HTTP/2 framing
    18: ("ChunkedEncodingError", True),  # the body ended before its declared length
    35: ("SSLError", True),  # TLS handshake
    43: ("ValueError", False),  # an option libcurl refused: a bad URL or header value
    52: ("ConnectionError", True),  # the server closed without a reply
    55: ("ConnectionError", True),  # send failed
    56: ("ConnectionError", True),  # receive failed (reset)
    60: ("SSLError", True),  # certificate not verified
    61: ("ContentDecodingError", True),  # bad gzip/deflate
    77: ("OSError", True),  # the CA bundle cannot be read
    97: ("ProxyError", True),  # proxy handshake
}
TIMED_OUT, WRITE_STOPPED = 28, 23
DRIVER_GRACE = 30.0  # seconds past total_timeout (which libcurl enforces) before a transfer counts as lost

# A URL requests would send as it is: lower-case http(s), a host of plain lower-case labels, a port without
# a leading zero, a path and query of characters neither requote_uri nor urllib3 touches (no "%", no
# fragment, no userinfo). Most crawled links look like this; preparing each costs ~0.05 ms of the GIL.
_PLAIN = re.compile(rf"https?://{PLAIN_HOST}"
                    r"(?::[1-9][0-9]{0,4})?/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*(?:\?[A-Za-z0-9\-._~!$&'()*+,;=:@/?]+)?")
_DOT_SEGMENT = re.compile(r"/\.\.?(?:[/?]|$)")


def _plain(url: str) -> bool:
    m = _PLAIN.fullmatch(url)
    if m is None or _DOT_SEGMENT.search(url.partition("?")[0]):
        return False
    port = url.split("/", 3)[2].partition(":")[2]
    return not port or int(port) <= 65535


class CurlReply:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: list[bytes]) -> None:
        self.status, self.headers, self.body = status, headers, body

    def chunks(self) -> Iterator[bytes]:
        return iter(self.body)  # libcurl has read it all (up to the limit) before the reply exists


class _Transfer:
    """One thread's handle, and what its current transfer has gathered through the callbacks."""

    def __init__(self, curl: pycurl.Curl) -> None:
        self.curl = curl
        self.headers: dict[str, str] = {}
        self.last = ""
        self.body: list[bytes] = []
        self.size, self.limit, self.whole, self.stopped = 0, 0, True, False
        curl.setopt(pycurl.HEADERFUNCTION, self.header)
        curl.setopt(pycurl.WRITEFUNCTION, self.write)

    def start(self, limit: int, whole: bool) -> None:
        self.headers, self.last, self.body = {}, "", []
        self.size, self.limit, self.whole, self.stopped = 0, limit, whole, False

    def header(self, line: bytes) -> None:
        """Every header line of every response on the way (a 100 Continue, a proxy's CONNECT answer):
        a status line starts the final response's headers afresh."""
        text = line.decode("latin-1")
        if text.startswith("HTTP/"):
            self.headers, self.last = {}, ""
        elif text[:1] in (" ", "\t") and self.last:  # an obsolete folded continuation line
            self.headers[self.last] += " " + text.strip()
        else:
            name, sep, value = text.partition(":")
            if sep:
                name, value = name.strip().lower(), value.strip()
                self.headers[name] = f"{self.headers[name]}, {value}" if name in self.headers else value
                self.last = name

    def write(self, data: bytes) -> int | None:
        """Decoded bytes. Returning 0 stops the transfer: past the limit, or at once when the body must be
        whole and its declared length is already too long (a gzip bomb is stopped by the decoded count)."""
        if not self.size and self.whole:
            declared = self.headers.get("content-length", "")
            if declared.isascii() and declared.isdigit() and int(declared) > self.limit:
                self.stopped = True
                return 0
        self.body.append(data)
        self.size += len(data)
        if self.size > self.limit:
            self.stopped = True
            return 0
        return None


class CurlEngine:
    options: ClassVar[dict[int, Any]] = {}  # more libcurl options for every new handle (tests: CONNECT_TO)

    def __init__(self, settings: FetchSettings) -> None:
        self.settings = settings
        self.local = threading.local()
        self.from_env = env_configured()  # proxies and .netrc, read as requests reads them
        self.proxies: dict[str, str] = {}  # origin → proxy URL ("" for none), decided once per origin
        self.lock = threading.Lock()
        self.driver = MultiDriver()  # every transfer runs on its one thread (etl/fetch/curl_multi.py)

    def _transfer(self) -> _Transfer:
        t = getattr(self.local, "transfer", None)
        if t is None:
            s, c = self.settings, pycurl.Curl()
            c.setopt(pycurl.NOSIGNAL, 1)  # threads: no SIGALRM for DNS timeouts
            c.setopt(pycurl.FOLLOWLOCATION, 0)  # the Fetcher follows redirects, checking every hop
            web = pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS
            c.setopt(pycurl.PROTOCOLS, web)
            c.setopt(pycurl.REDIR_PROTOCOLS, web)
            c.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
            c.setopt(pycurl.USERAGENT, s.user_agent)
            c.setopt(pycurl.ACCEPT_ENCODING, "gzip, deflate")
            c.setopt(pycurl.CONNECTTIMEOUT_MS, max(1, int(s.connect_timeout * 1000)))
            # requests' read timeout is a silence that long; libcurl's nearest is under 1 byte/s for that
            # many whole seconds (a trickle resets neither: total_timeout bounds it)
            c.setopt(pycurl.LOW_SPEED_LIMIT, 1)
            c.setopt(pycurl.LOW_SPEED_TIME, max(1, math.ceil(s.read_timeout)))
            c.setopt(pycurl.TIMEOUT_MS, max(1, int(s.total_timeout * 1000)))
            c.setopt(pycurl.COOKIEFILE, "")  # the cookie engine on, nothing loaded: this thread's cookies
            c.setopt(pycurl.BUFFERSIZE, BUFFER)
            bundle = ca_bundle() or certifi.where()
            c.setopt(pycurl.CAPATH if os.path.isdir(bundle) else pycurl.CAINFO, bundle)
            c.setopt(pycurl.PROXY, "")  # never libcurl's own reading of the environment
            for option, value in self.options.items():
                c.setopt(option, value)
            t = self.local.transfer = _Transfer(c)
        return t

    def _target(self, url: str, auth: tuple[str, str] | None) -> tuple[str, tuple[str, str] | None]:
        """The URL requests would send, without its userinfo (sent as Basic auth, as requests does), and
        refused when its host or port is no longer the one the allowed-domains check read."""
        if _plain(url):  # prepare_url would give it back unchanged, and it has no userinfo
            if auth is None and self.from_env:
                from requests.utils import get_netrc_auth

                auth = get_netrc_auth(url)
            return url, auth if auth and any(auth) else None
        # requests is imported only for the URLs and environments that need its decisions: on plain URLs
        # without proxy or .netrc settings the fetch process goes without it (a dozen MB)
        from requests.models import PreparedRequest
        from requests.utils import get_auth_from_url, get_netrc_auth

        prepared = PreparedRequest()
        prepared.prepare_url(url, None)
        target = prepared.url or url
        parts = urlsplit(target)
        if "@" in parts.netloc:
            if auth is None:
                auth = get_auth_from_url(target)
            target = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        if auth is None and self.from_env:
            auth = get_netrc_auth(target)
        if not _same_place(url, target):
            raise TransportError(f"InvalidURL: {url!r} names its host ambiguously", False)
        return target, auth if auth and any(auth) else None

    def _proxy(self, url: str) -> str:
        if not self.from_env:  # no *_proxy variable: requests would find none either
            return ""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        with self.lock:
            proxy = self.proxies.get(origin)
        if proxy is None:  # requests' own decision: *_proxy / all_proxy, no_proxy, upper or lower case
            from requests.utils import get_environ_proxies, select_proxy

            proxy = select_proxy(url, get_environ_proxies(url)) or ""
            with self.lock:
                self.proxies[origin] = proxy
        return proxy

    @contextmanager
    def get(self, url: str, headers: dict[str, str] | None, auth: tuple[str, str] | None, limit: int,
            whole: bool) -> Iterator[CurlReply]:
        target, auth = self._target(url, auth)
        t = self._transfer()
        c = t.curl
        c.setopt(pycurl.URL, target)
        lines = [f"{k}: {v}" for k, v in headers.items()] if headers else []
        if auth:
            lines.append("Authorization: " + basic_auth(*auth))
        if lines:
            c.setopt(pycurl.HTTPHEADER, lines)
        else:  # setopt with an empty list keeps the previous request's headers
            c.unsetopt(pycurl.HTTPHEADER)
        if self.from_env:
            c.setopt(pycurl.PROXY, self._proxy(target))
        t.start(limit, whole)
        started = time.monotonic()
        try:
            self.driver.perform(c, self.settings.total_timeout + DRIVER_GRACE)
        except DriverGone:
            self.local.transfer = None  # the handle may still be on the multi stack: never reuse it
            raise TransportError(f"response slower than total_timeout={self.settings.total_timeout:g}s",
                                 True, True) from None
        except pycurl.error as exc:
            code, message = exc.args[0], str(exc.args[1])
            if not (code == WRITE_STOPPED and t.stopped):
                t.body = []
                raise self._error(code, message, time.monotonic() - started) from None
        reply = CurlReply(c.getinfo(pycurl.RESPONSE_CODE), t.headers, t.body)
        t.body = []
        yield reply

    def _error(self, code: int, message: str, took: float) -> TransportError:
        if code == TIMED_OUT:
            if took >= self.settings.total_timeout * 0.99:
                return TransportError(f"response slower than total_timeout={self.settings.total_timeout:g}s",
                                      True, True)
            kind = "ConnectTimeout" if message.startswith(("Connection timed out", "Failed to connect")) \
                else "ReadTimeout"
            return TransportError(f"{kind}: {message} (curl {code})", True)
        kind, retryable = ERRORS.get(code, ("ConnectionError", True))  # as requests: a socket error may pass
        return TransportError(f"{kind}: {message} (curl {code})", retryable)


def _same_place(url: str, target: str) -> bool:
    """Whether the URL handed to libcurl reaches the host and port the allowed-domains check read off
    the original (its host IDNA-encoded, as requests encodes it)."""
    want, got = host_port(url), host_port(target)
    if want is None or got is None:
        return False
    host = want[0]
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return False
    return (host, want[1]) == got

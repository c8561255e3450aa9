"""Fault-injecting HTTP reverse proxy, so end-to-end tests can crawl the demo site through breakage.

``FaultProxy(upstream, Faults(...)).start()`` returns a base URL; GET/HEAD requests are forwarded to the
upstream base URL, except that some of them are answered with a fault instead.  Every decision is a
pure function of (seed, request key, attempt number of that key), so a run is reproducible however the
crawler's threads interleave.  The request key is the path plus query string, minus the ``loop=1``
marker of the redirect-loop fault.

Two kinds of fault:

* transient (500, 503, 429, reset, slow, truncate): drawn per attempt, and a key suffers at most
  ``max_faults_per_url`` of them; afterwards it is always served, so a crawler that tries each URL
  ``max_faults_per_url + 1`` times always gets through;
* permanent: a ``permanent`` fraction of keys (chosen by hash of seed and key) fail on every attempt,
  with a 500 or, for a ``redirect_loop`` fraction of them, a redirect loop ``/a -> /a?loop=1 -> /a``.
  ``permanent_failures()`` predicts them, so a test knows what "truly could not be fetched".

``wrong_charset`` is not a failure (the crawler gets a 200 and will not retry it), so it is a property
of the key, not of the attempt: that page always carries ``charset=utf-8`` on a non-UTF-8 body.

``stats`` counts every answered request under exactly one key: ``passed``, a transient kind,
``wrong_charset``, ``permanent_500``, ``redirect_loop`` or ``upstream_error`` (502, upstream down).
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import logging
import re
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import urlsplit

log = logging.getLogger("tests.faultserver")

# Order matters: one uniform draw per attempt walks these cumulative rates.
TRANSIENT = ("error_500", "error_503", "throttle_429", "reset", "slow", "truncate")
PERMANENT = ("permanent_500", "redirect_loop")
RATES = (*TRANSIENT, "wrong_charset", "redirect_loop", "permanent")
STAT_KEYS = ("passed", *TRANSIENT, "wrong_charset", *PERMANENT, "upstream_error")
LOOP_MARK = "loop=1"
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "trailers", "transfer-encoding", "upgrade", "proxy-connection"})
# send_response() writes our own Server and Date; Content-Length is always recomputed.
DROP_RESPONSE = HOP_BY_HOP | {"content-length", "server", "date"}
DROP_REQUEST = HOP_BY_HOP | {"host", "content-length"}


@dataclass
class Faults:
    """Fault rates (each in [0, 1]); the transient ones are alternatives of one draw, so sum to <= 1."""

    error_500: float = 0.0        # HTTP 500
    error_503: float = 0.0        # 503 with Retry-After: 1
    throttle_429: float = 0.0     # 429, Retry-After alternating "1" and an HTTP date one second ahead
    reset: float = 0.0            # no (complete) response: FIN, RST or half a status line
    slow: float = 0.0             # wait slow_seconds, then answer normally (the crawler should time out)
    slow_seconds: float = 3.0
    truncate: float = 0.0         # Content-Length of the full body, half the body, then close
    wrong_charset: float = 0.0    # fraction of non-UTF-8 HTML pages labelled "charset=utf-8"
    redirect_loop: float = 0.0    # fraction of PERMANENT keys that loop instead of answering 500
    permanent: float = 0.0        # fraction of keys that always fail
    max_faults_per_url: int = 2   # transient faults per key, then it is always served
    seed: int = 0
    exempt: tuple[str, ...] = ("/robots.txt",)  # path prefixes never faulted (so a crawl can start)
    permanent_only: str | None = None  # regex: only matching keys can fail permanently (e.g. detail pages)

    def __post_init__(self) -> None:
        for name in RATES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Faults.{name} must be a rate in [0, 1], got {value}")
        total = sum(getattr(self, k) for k in TRANSIENT)
        if total > 1.0 + 1e-9:
            raise ValueError(f"transient fault rates sum to {total} > 1")
        if self.max_faults_per_url < 0 or self.slow_seconds < 0:
            raise ValueError("max_faults_per_url and slow_seconds must be >= 0")
        self.exempt = tuple(self.exempt)


def _unit(seed: int, tag: str, key: str, attempt: int = 0) -> float:
    """Deterministic uniform draw in [0, 1): a hash, so no RNG state is shared between threads."""
    digest = hashlib.blake2b(f"{seed}:{tag}:{key}:{attempt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def request_key(target: str) -> str:
    """Path + query of a request target (or absolute URL), without the redirect-loop marker."""
    parts = urlsplit(target)
    query = "&".join(q for q in parts.query.split("&") if q and q != LOOP_MARK)
    return (parts.path or "/") + (f"?{query}" if query else "")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], proxy: FaultProxy) -> None:
        self.proxy = proxy
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a client hanging up mid-fault is expected, so no tracebacks on stderr."""
        log.debug("fault proxy: error while serving %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "faultproxy/1.0"
    disable_nagle_algorithm = True  # headers and body are separate writes; Nagle would stall the second

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by design
        pass

    def setup(self) -> None:
        super().setup()
        cast(_Server, self.server).proxy._track(self.connection, True)

    def finish(self) -> None:
        cast(_Server, self.server).proxy._track(self.connection, False)
        super().finish()

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._serve(head=False)

    def do_HEAD(self) -> None:  # noqa: N802 - http.server naming
        self._serve(head=True)

    def _serve(self, head: bool) -> None:
        try:
            cast(_Server, self.server).proxy._handle(self, head)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. read timeout during `slow`)


class FaultProxy:
    """Reverse proxy in a background thread that injects `Faults` in front of an upstream base URL."""

    def __init__(self, upstream: str, faults: Faults, host: str = "127.0.0.1", port: int = 0) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be an http:// base URL, got {upstream!r}")
        self.upstream = upstream.rstrip("/")
        self.faults = faults
        self.host, self.port = host, port
        self.base_url = ""
        self._up_host, self._up_port = parts.hostname, parts.port or 80
        self._up_netloc, self._up_prefix = parts.netloc, parts.path.rstrip("/")
        self._lock = threading.Lock()
        self._attempts: Counter[str] = Counter()
        self._faulted: Counter[str] = Counter()
        self._stats: Counter[str] = Counter()
        self._pool: list[http.client.HTTPConnection] = []
        self._pool_lock = threading.Lock()
        self._clients: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> str:
        """Bind, serve in a daemon thread, and return the proxy's base URL."""
        if self._server is not None:
            return self.base_url
        self._stopping.clear()
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        shown = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        self.base_url = f"http://{shown}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="fault-proxy", daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        """Stop accepting, wake sleeping `slow` handlers, drop client and upstream connections."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            clients = list(self._clients)
        for sock in clients:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self._pool_lock:
            pool, self._pool = self._pool, []
        for conn in pool:
            conn.close()

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- introspection -------------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, int]:
        """Snapshot: answered requests per outcome (every key of STAT_KEYS present)."""
        with self._lock:
            return {k: self._stats[k] for k in STAT_KEYS}

    def attempts(self, path: str) -> int:
        """How many requests this path (request key) has received so far."""
        with self._lock:
            return self._attempts[request_key(path)]

    def permanent_failures(self, paths: Iterable[str]) -> set[str]:
        """The given paths (or URLs) that fail on every attempt; same answer before or after a crawl."""
        return {p for p in paths if self._permanent_kind(request_key(p)) is not None}

    # -- decisions -----------------------------------------------------------------------------------

    def _exempt(self, key: str) -> bool:
        path = urlsplit(key).path
        return any(path.startswith(prefix) for prefix in self.faults.exempt)

    def _permanent_kind(self, key: str) -> str | None:
        f = self.faults
        if f.permanent_only and not re.search(f.permanent_only, key):
            return None
        if self._exempt(key) or f.permanent <= 0 or _unit(f.seed, "permanent", key) >= f.permanent:
            return None
        return "redirect_loop" if _unit(f.seed, "loop", key) < f.redirect_loop else "permanent_500"

    def _decide(self, key: str) -> tuple[str | None, int]:
        """(fault to inject or None, attempt number of this key), updating the per-key counters."""
        f = self.faults
        with self._lock:
            attempt = self._attempts[key]
            self._attempts[key] += 1
            if self._exempt(key):
                return None, attempt
            permanent = self._permanent_kind(key)
            if permanent is not None:
                return permanent, attempt
            if self._faulted[key] >= f.max_faults_per_url:
                return None, attempt
            draw, edge = _unit(f.seed, "transient", key, attempt), 0.0
            for kind in TRANSIENT:
                edge += getattr(f, kind)
                if draw < edge:
                    self._faulted[key] += 1
                    return kind, attempt
            return None, attempt

    def _count(self, outcome: str) -> None:
        with self._lock:
            self._stats[outcome] += 1

    def _track(self, sock: socket.socket, alive: bool) -> None:
        with self._lock:
            if alive:
                self._clients.add(sock)
            else:
                self._clients.discard(sock)

    # -- serving -------------------------------------------------------------------------------------

    def _handle(self, h: _Handler, head: bool) -> None:
        length = h.headers.get("Content-Length", "")
        if length.isdigit():
            h.rfile.read(int(length))  # keep the keep-alive stream in step; bodies are not forwarded
        key = request_key(h.path)
        fault, attempt = self._decide(key)
        if fault is not None:
            self._count(fault)
        if fault in ("error_500", "permanent_500"):
            self._reply(h, 500, [("Content-Type", "text/plain")], b"injected fault: 500\n", head)
        elif fault == "error_503":
            self._reply(h, 503, [("Content-Type", "text/plain"), ("Retry-After", "1")],
                        b"injected fault: 503\n", head)
        elif fault == "throttle_429":
            # alternate the two legal forms of Retry-After: delta-seconds, then an HTTP date
            when = "1" if attempt % 2 == 0 else email.utils.formatdate(time.time() + 1, usegmt=True)
            self._reply(h, 429, [("Content-Type", "text/plain"), ("Retry-After", when)],
                        b"injected fault: 429\n", head)
        elif fault == "redirect_loop":
            target = urlsplit(h.path)
            looped = LOOP_MARK in target.query.split("&")
            self._reply(h, 302, [("Location", key if looped else key + ("&" if "?" in key else "?") + LOOP_MARK),
                                 ("Content-Type", "text/plain")], b"injected fault: redirect loop\n", head)
        elif fault == "reset":
            self._reset(h, attempt)
        else:
            if fault == "slow":
                if self._stopping.wait(self.faults.slow_seconds):
                    h.close_connection = True  # woken by stop(): nobody is waiting for this answer
                    return
            self._forward(h, head, key, truncate=fault == "truncate", counted=fault is not None)

    def _reply(self, h: _Handler, status: int, headers: list[tuple[str, str]], body: bytes, head: bool,
               declared: int | None = None) -> None:
        h.send_response(status)
        for name, value in headers:
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(body) if declared is None else declared))
        h.end_headers()
        if not head:
            h.wfile.write(body)

    def _reset(self, h: _Handler, attempt: int) -> None:
        """Break the connection three ways in turn; requests raises ConnectionError for each."""
        h.close_connection = True
        variant = attempt % 3
        if variant == 1:
            h.wfile.write(b"HTTP/1.1 2")  # half a status line -> BadStatusLine
        elif variant == 2:  # RST instead of FIN: linger 0, and really close the fd now
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.rfile.close()
            h.connection.close()
        # variant 0: just close after the request -> RemoteDisconnected

    def _forward(self, h: _Handler, head: bool, key: str, truncate: bool, counted: bool) -> None:
        method = "HEAD" if head else "GET"
        headers = {k: v for k, v in h.headers.items() if k.lower() not in DROP_REQUEST}
        headers["Host"] = self._up_netloc
        try:
            status, up_headers, body = self._upstream(method, self._up_prefix + key, headers)
        except (OSError, http.client.HTTPException) as exc:
            self._count("upstream_error")
            self._reply(h, 502, [("Content-Type", "text/plain")], f"upstream error: {exc!r}\n".encode(), head)
            return
        out: list[tuple[str, str]] = []
        declared: int | None = None
        outcome = "passed"
        for name, value in up_headers:
            low = name.lower()
            if low == "content-length" and head and value.isdigit():
                declared = int(value)  # HEAD: keep the GET size upstream announced
            if low in DROP_RESPONSE:
                continue
            if low == "location" and value.startswith(self.upstream):
                value = self.base_url + value[len(self.upstream):]
            if low == "content-type" and self._wrong_charset(key, value):
                value = value.split(";", 1)[0].strip() + "; charset=utf-8"
                outcome = "wrong_charset"
            out.append((name, value))
        if not counted:
            self._count(outcome)
        if truncate and not head:
            h.close_connection = True
            self._reply(h, status, out, body[: len(body) // 2], head, declared=max(len(body), 1))
        else:
            self._reply(h, status, out, body, head, declared=declared)

    def _wrong_charset(self, key: str, content_type: str) -> bool:
        """Mislabel this key's HTML as UTF-8 if it is not already UTF-8 (the GBK demo site sends no charset)."""
        f = self.faults
        if f.wrong_charset <= 0 or not content_type.lower().startswith("text/html"):
            return False
        params = content_type.lower().replace(" ", "").split(";")[1:]
        if any(p in ("charset=utf-8", "charset=utf8") for p in params):
            return False
        return _unit(f.seed, "charset", key) < f.wrong_charset

    def _upstream(self, method: str, target: str, headers: dict[str, str]
                  ) -> tuple[int, list[tuple[str, str]], bytes]:
        """One request on a pooled keep-alive connection; a stale pooled connection is retried once fresh."""
        for _ in range(2):
            conn, reused = self._take()
            try:
                conn.request(method, target, headers=headers)
                _quickack(conn)
                resp = conn.getresponse()
                body = resp.read()
            except (ConnectionError, http.client.BadStatusLine):
                conn.close()
                if reused:
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            if resp.will_close:
                conn.close()
            else:
                self._give(conn)
            return resp.status, resp.getheaders(), body
        raise ConnectionError("upstream closed a fresh connection")  # pragma: no cover - second try is fresh

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        with self._pool_lock:
            if self._pool:
                return self._pool.pop(), True
        return http.client.HTTPConnection(self._up_host, self._up_port, timeout=30), False

    def _give(self, conn: http.client.HTTPConnection) -> None:
        with self._pool_lock:
            if len(self._pool) < 64 and not self._stopping.is_set():
                self._pool.append(conn)
                return
        conn.close()



def _quickack(conn: http.client.HTTPConnection) -> None:
    """ACK the upstream's header segment at once (Linux): an upstream that writes headers and body
    separately without TCP_NODELAY (like the demo server) otherwise waits ~40 ms for our delayed ACK
    before sending a body smaller than one segment."""
    opt = getattr(socket, "TCP_QUICKACK", None)
    if opt is not None and conn.sock is not None:
        try:
            conn.sock.setsockopt(socket.IPPROTO_TCP, opt, 1)
        except OSError:
            pass

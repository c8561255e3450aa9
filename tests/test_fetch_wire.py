"""Both HTTP engines against a server that writes raw bytes: what a broken, slow or compressed reply
becomes must not depend on `[run] http` (the failure's kind, whether it is retried, the page's bytes)."""

from __future__ import annotations

import gzip
import socket
import socketserver
import threading
import time
import zlib
from collections.abc import Callable

import pytest

from etl.config.model import FetchSettings
from etl.fetch import Fetcher, FetchFailure
from etl.items import Page, Request

HTML = ("<html><body>" + "二手房 listing " * 4000 + "</body></html>").encode()  # ~70 KB, a real page's size


def reply(status: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    """One response, then the server closes: it says so, or a client may send the next one on it."""
    head = "".join(f"{k}: {v}\r\n" for k, v in {**headers, "Connection": "close"}.items())
    return f"HTTP/1.1 {status}\r\n{head}\r\n".encode() + body


class _Raw(socketserver.StreamRequestHandler):
    server: RawServer

    def handle(self) -> None:
        lines = []
        while (line := self.rfile.readline(65536)) not in (b"\r\n", b"\n", b""):
            lines.append(line.decode("latin-1").rstrip("\r\n"))
        if not lines:
            return
        path = lines[0].split()[1]
        with self.server.lock:
            self.server.seen.append(lines)
        answer = self.server.replies.get(path, reply("404 Not Found", {"Content-Length": "0"}))
        try:
            if callable(answer):
                answer(self)
            else:
                self.wfile.write(answer)
        except OSError:
            pass


class RawServer(socketserver.ThreadingTCPServer):
    """path → the bytes to answer (then the connection closes), or a function writing them itself."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, replies: dict[str, bytes | Callable[[_Raw], None]]) -> None:
        super().__init__(("127.0.0.1", 0), _Raw)
        self.replies, self.seen, self.lock = replies, [], threading.Lock()
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture(params=["requests", "curl"])
def http(request) -> str:
    return request.param


def fetch(http: str, url: str, request: Request | None = None, **settings) -> Page | FetchFailure:
    s = FetchSettings(**{"robots": False, "connect_timeout": 2.0, "read_timeout": 1.0, "total_timeout": 10.0,
                         "max_bytes": 1_000_000, **settings})
    host = url.split("/")[2]
    return Fetcher(s, (host,), http=http).fetch(request or Request(url, "page"))


def test_a_refused_connection_is_a_retryable_connection_error(http: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections to it are refused
        result = fetch(http, f"http://127.0.0.1:{port}/x")
    assert isinstance(result, FetchFailure) and result.retryable and result.status is None
    assert result.error.startswith("ConnectionError: ")


def test_a_silent_server_is_a_retryable_read_timeout(http: str) -> None:
    with RawServer({"/silent": lambda h: time.sleep(4)}) as server:
        t0 = time.monotonic()
        result = fetch(http, server.base + "/silent")
        took = time.monotonic() - t0
    assert isinstance(result, FetchFailure) and result.retryable
    assert result.error.startswith("ReadTimeout: ") and took < 3.5, (result.error, took)


@pytest.mark.parametrize(("path", "kind"), [
    ("/truncated", "ChunkedEncodingError"), ("/badgzip", "ContentDecodingError"),
    ("/nothing", "ConnectionError"), ("/garbage", "ConnectionError")])
def test_a_broken_reply_is_a_retryable_failure_of_the_same_kind(http: str, path: str, kind: str) -> None:
    replies = {"/truncated": reply("200 OK", {"Content-Length": "1000"}, b"x" * 10),
               "/badgzip": reply("200 OK", {"Content-Encoding": "gzip", "Content-Length": "20"}, b"not gzip at all!!!!!"),
               "/nothing": b"", "/garbage": b"HELLO THERE\r\n\r\n"}
    with RawServer(replies) as server:
        result = fetch(http, server.base + path)
    assert isinstance(result, FetchFailure) and result.retryable
    assert result.error.startswith(kind + ": "), result.error


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_compressed_page_arrives_decoded(http: str, encoding: str) -> None:
    packed = gzip.compress(HTML) if encoding == "gzip" else zlib.compress(HTML)
    with RawServer({"/p": reply("200 OK", {"Content-Encoding": encoding, "Content-Length": str(len(packed))},
                                packed)}) as server:
        page = fetch(http, server.base + "/p")
        sent = dict(line.split(": ", 1) for line in server.seen[0][1:])
    assert isinstance(page, Page) and page.body == HTML
    assert page.headers["content-encoding"] == encoding
    assert sent["Accept-Encoding"] == "gzip, deflate"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_gzip_bomb_is_cut_at_max_bytes_of_decoded_body(http: str, framing: str) -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)  # ~50 KB on the wire, 50 MB decoded
    if framing == "chunked":
        body = b"".join(f"{len(bomb[i:i + 8192]):x}\r\n".encode() + bomb[i:i + 8192] + b"\r\n"
                        for i in range(0, len(bomb), 8192)) + b"0\r\n\r\n"
        head = {"Content-Encoding": "gzip", "Transfer-Encoding": "chunked"}
    else:
        body, head = bomb, {"Content-Encoding": "gzip", "Content-Length": str(len(bomb))}
    with RawServer({"/bomb": reply("200 OK", head, body)}) as server:
        t0 = time.monotonic()
        result = fetch(http, server.base + "/bomb")
    assert isinstance(result, FetchFailure) and not result.retryable
    assert result.error == "body exceeds max_bytes=1000000"
    assert time.monotonic() - t0 < 5


def test_a_conditional_request_gets_its_304_as_a_page_without_a_body(http: str) -> None:
    etag, modified = '"v1"', "Wed, 21 Oct 2015 07:28:00 GMT"
    with RawServer({"/item": reply("304 Not Modified", {"ETag": etag})}) as server:
        url = server.base + "/item"
        page = fetch(http, url, Request(url, "detail", meta={"validators": (etag, modified)}))
        sent = dict(line.split(": ", 1) for line in server.seen[0][1:])
    assert isinstance(page, Page) and page.status == 304 and page.body == b""
    assert page.headers["etag"] == etag
    assert sent["If-None-Match"] == etag and sent["If-Modified-Since"] == modified


def test_a_redirect_hop_is_asked_unconditionally(http: str) -> None:
    with RawServer({"/old": reply("301 Moved", {"Location": "/new", "Content-Length": "0"}),
                    "/new": reply("200 OK", {"Content-Length": "2"}, b"ok")}) as server:
        url = server.base + "/old"
        page = fetch(http, url, Request(url, "detail", meta={"validators": ('"v1"', None)}))
        first, second = (dict(line.split(": ", 1) for line in lines[1:]) for lines in server.seen)
    assert isinstance(page, Page) and page.body == b"ok" and page.url == server.base + "/new"
    assert first["If-None-Match"] == '"v1"' and "If-None-Match" not in second


def test_both_engines_give_the_same_status_headers_and_body() -> None:
    headers = {"Content-Type": "text/html; charset=gbk", "X-Twice": "a", "Content-Length": str(len(HTML))}
    raw = reply("200 OK", headers, HTML).replace(b"X-Twice: a\r\n", b"X-Twice: a\r\nX-Twice: b\r\nX-Folded: one\r\n two\r\n")
    with RawServer({"/p": raw}) as server:
        pages = [fetch(http, server.base + "/p") for http in ("requests", "curl")]
    assert all(isinstance(p, Page) for p in pages)
    (a, b) = pages
    assert (a.status, a.headers, a.body) == (b.status, b.headers, b.body)
    assert a.headers["x-twice"] == "a, b" and a.headers["content-type"] == "text/html; charset=gbk"


def test_the_curl_engine_names_its_timeouts_as_requests_does() -> None:
    """curl reports every timeout as error 28; which one it was decides the text and whether it is the
    whole-response deadline (retried, worded as the requests engine words it)."""
    from etl.fetch.curl_engine import CurlEngine

    engine = CurlEngine(FetchSettings(total_timeout=5.0))
    total = engine._error(28, "Operation timed out after 5000 milliseconds with 10 bytes received", 5.0)
    assert total.too_slow and total.retryable and total.error == "response slower than total_timeout=5s"
    read = engine._error(28, "Operation too slow. Less than 1 bytes/sec transferred the last 1 seconds", 1.0)
    assert not read.too_slow and read.retryable and read.error.startswith("ReadTimeout: ")
    connect = engine._error(28, "Connection timed out after 2001 milliseconds", 2.0)
    assert connect.retryable and connect.error.startswith("ConnectTimeout: ")
    bad = engine._error(3, "URL rejected: Bad hostname", 0.0)
    assert not bad.retryable and bad.error.startswith("InvalidURL: ")
    unknown = engine._error(99, "something new", 0.0)
    assert unknown.retryable and unknown.error == "ConnectionError: something new (curl 99)"

"""A real HTTP server behind the part of the `responses` API the fetch tests use, so the same tests run
on both HTTP engines: `responses` patches requests only, while libcurl needs a socket.

    with mocked(http) as mock:              # responses for "requests", a LocalMock routed for "curl"
        mock.add(responses.GET, "http://demo.test/a", body=b"ok", headers={"X": "1"})
        ... Fetcher(..., http=http).fetch(...); mock.calls[0].request.headers ...

A body is sent chunked unless the test gives a Content-Length (so "no declared length" stays true), a
URL nobody registered gets no reply at all (as responses refuses the connection), and a body that is an
exception acts it out: a ConnectionError closes the socket unanswered, a Timeout keeps silent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.structures import CaseInsensitiveDict

SILENCE = 3.0  # how long a Timeout body keeps silent (the tests' read timeouts are 1 s)


def wire_url(url: str) -> str:
    """The URL as a client sends it: requests' quoting, no userinfo, no fragment."""
    prepared = requests.Request("GET", url).prepare().url or url
    parts = urlsplit(prepared)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path or "/", parts.query, ""))


@dataclass
class Sent:
    url: str
    method: str
    headers: CaseInsensitiveDict
    body: bytes | None = None


@dataclass
class Call:
    request: Sent


@dataclass
class Rule:
    url: str
    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _Server

    def do_GET(self) -> None:  # noqa: N802
        url = f"http://{self.headers.get('Host', '')}{self.path}"
        length = int(self.headers.get("Content-Length") or 0)
        sent = Sent(url, self.command, CaseInsensitiveDict(self.headers.items()),
                    self.rfile.read(length) if length else None)
        with self.server.lock:
            self.server.calls.append(Call(sent))
            rule = next((r for r in self.server.rules if r.url == wire_url(url)), None)
        if rule is None or isinstance(rule.body, requests.ConnectionError):
            self.close_connection = True
            return  # no reply: the client sees the connection closed
        if isinstance(rule.body, requests.Timeout):
            time.sleep(SILENCE)
            self.close_connection = True
            return
        self._answer(rule)

    def _answer(self, rule: Rule) -> None:
        body = rule.body.encode() if isinstance(rule.body, str) else bytes(rule.body or b"")
        self.send_response(rule.status)
        for name, value in rule.headers.items():
            self.send_header(name, value)
        if rule.status in (204, 304) or 100 <= rule.status < 200:
            self.end_headers()
            return
        declared = any(k.lower() == "content-length" for k in rule.headers)
        if not declared:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if declared:
            self.wfile.write(body)
            return
        for i in range(0, len(body), 65536):
            piece = body[i:i + 65536]
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.rules: list[Rule] = []
        self.calls: list[Call] = []


@contextmanager
def mocked(http: str) -> Iterator[Any]:
    """The mock a fetch test registers its responses with, for the engine `http` names."""
    if http == "requests":
        import responses

        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            yield rsps
    else:
        with LocalMock() as local, local.routing():
            yield local


class LocalMock:
    def __init__(self) -> None:
        self.server = _Server()
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def calls(self) -> list[Call]:
        with self.server.lock:
            return list(self.server.calls)

    def add(self, method: str, url: str, body: Any = b"", status: int = 200,
            headers: dict[str, str] | None = None) -> None:
        assert method == "GET", method
        with self.server.lock:
            self.server.rules.append(Rule(wire_url(url), status, body, dict(headers or {})))

    def get(self, url: str, **kw: Any) -> None:
        self.add("GET", url, **kw)

    @contextmanager
    def routing(self) -> Iterator[None]:
        """Every new curl handle connects to this server whatever host and port a URL names (CONNECT_TO),
        while sending the URL's own Host header: the fetch is as it would be on the network."""
        import pycurl

        from etl.fetch.curl_engine import CurlEngine

        saved = CurlEngine.options
        CurlEngine.options = {**saved, pycurl.CONNECT_TO: [f"::127.0.0.1:{self.port}"]}
        try:
            yield
        finally:
            CurlEngine.options = saved

    def __enter__(self) -> LocalMock:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

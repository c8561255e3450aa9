"""What both HTTP engines take from the environment, alike: the CA bundle (REQUESTS_CA_BUNDLE /
CURL_CA_BUNDLE), proxies (http_proxy, HTTP_PROXY, no_proxy) — and, seen through a proxy, which host a
tricky URL really reaches, which must be the host the allowed-domains check read."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from etl.config.model import FetchSettings
from etl.fetch import Fetcher, FetchFailure
from etl.items import Page, Request
from etl.urls import allowed, host_port

ENV = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
       "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NETRC")


class _Echo(BaseHTTPRequestHandler):
    """Answers every GET with what it was asked: the request line's target and the Host header."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        body = f"{self.server.name} {self.path} {self.headers.get('Host')}".encode()
        with self.server.lock:
            self.server.seen.append((self.path, self.headers.get("Host", "")))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def serve(name: str, context: ssl.SSLContext | None = None) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    server.name, server.seen, server.lock = name, [], threading.Lock()
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


@pytest.fixture(params=["requests", "curl"])
def http(request) -> str:
    return request.param


@pytest.fixture
def clean_env(monkeypatch) -> pytest.MonkeyPatch:
    for key in ENV:
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


@pytest.fixture
def proxy() -> Iterator[ThreadingHTTPServer]:
    server = serve("proxy")
    yield server
    server.shutdown()
    server.server_close()


def fetch(http: str, url: str, domains: tuple[str, ...]) -> Page | FetchFailure:
    return Fetcher(FetchSettings(robots=False, connect_timeout=2.0, read_timeout=2.0), domains,
                   http=http).fetch(Request(url, "page"))


# ---------------------------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def cert(tmp_path_factory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    where = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(where / "key.pem"), "-out", str(where / "cert.pem"), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], check=True, capture_output=True)
    return where


@pytest.fixture
def tls_server(cert: Path) -> Iterator[ThreadingHTTPServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert / "cert.pem", cert / "key.pem")
    server = serve("tls", context)
    yield server
    server.shutdown()
    server.server_close()


def test_a_certificate_nobody_vouches_for_is_refused(http, clean_env, tls_server) -> None:
    port = tls_server.server_address[1]
    result = fetch(http, f"https://127.0.0.1:{port}/x", (f"127.0.0.1:{port}",))
    assert isinstance(result, FetchFailure) and result.error.startswith("SSLError: ") and result.retryable
    assert tls_server.seen == []


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_the_ca_bundle_the_environment_names_is_trusted(http, clean_env, tls_server, cert, variable) -> None:
    clean_env.setenv(variable, str(cert / "cert.pem"))
    port = tls_server.server_address[1]
    page = fetch(http, f"https://127.0.0.1:{port}/x", (f"127.0.0.1:{port}",))
    assert isinstance(page, Page) and page.body == f"tls /x 127.0.0.1:{port}".encode()


# ---------------------------------------------------------------------------------------------- proxies


@pytest.mark.parametrize("variable", ["http_proxy", "HTTP_PROXY", "all_proxy"])
def test_the_proxy_the_environment_names_is_used(http, clean_env, proxy, variable) -> None:
    """HTTP_PROXY too, as requests reads it: libcurl left to itself ignores the upper-case form."""
    clean_env.setenv(variable, f"http://127.0.0.1:{proxy.server_address[1]}")
    page = fetch(http, "http://demo.test/a?b=1", ("demo.test",))  # demo.test resolves nowhere: only via proxy
    assert isinstance(page, Page) and page.body == b"proxy http://demo.test/a?b=1 demo.test"


def test_no_proxy_sends_a_host_around_the_proxy(http, clean_env, proxy) -> None:
    direct = serve("direct")
    try:
        clean_env.setenv("http_proxy", f"http://127.0.0.1:{proxy.server_address[1]}")
        clean_env.setenv("no_proxy", "127.0.0.1")
        port = direct.server_address[1]
        page = fetch(http, f"http://127.0.0.1:{port}/x", (f"127.0.0.1:{port}",))
    finally:
        direct.shutdown()
        direct.server_close()
    assert isinstance(page, Page) and page.body == f"direct /x 127.0.0.1:{port}".encode()
    assert proxy.seen == []


# ---------------------------------------------------------------------------------------------- tricky URLs

TRICKY = [
    "http://evil.test:80@demo.test/a", "http://evil.test@user@demo.test/", "http://demo.test:80@evil.test/",
    "http://demo.test\\@evil.test/", "http://evil.test\\@demo.test/", "http://evil.test#@demo.test/",
    "http://evil.test?@demo.test/", "http://a.demo.test%3f@evil.test/", "http://evil.test%2edemo.test/",
    "http://evil.test%23.demo.test/", "http://evil.test%2f.demo.test/", "http://evil.test%40.demo.test/",
    "http://%65vil.demo.test/", "http://demo.te\tst/", "http://demo.test\n/", "http://DEMO.test./x",
    "http://demo.test:0080/", "http://demo.test:/x", "HTTP://demo.test/", "http://bücher.demo.test/",
    "http://evil.test。.demo.test/", "http://demo.test:80:80/", "http://[demo.test]/", "http://demo.test:8٠/",
    "http://demo.test/a b#c d",
]


@pytest.mark.parametrize("url", TRICKY)
def test_a_tricky_url_reaches_the_host_the_domain_check_read_or_nothing(http, clean_env, proxy, url) -> None:
    """Through a proxy the request line shows where the engine would connect. Whatever the URL parsers
    make of it, the engine either asks for exactly the host and port allowed() judged, or asks nothing."""
    clean_env.setenv("http_proxy", f"http://127.0.0.1:{proxy.server_address[1]}")
    result = fetch(http, url, ("demo.test",))
    if not allowed(url, ("demo.test",)):
        assert isinstance(result, FetchFailure) and proxy.seen == []
        return
    if isinstance(result, FetchFailure):
        assert proxy.seen == [] and not result.retryable, result.error
        return
    host, port = host_port(url)
    want = host.encode("idna").decode()
    (target, host_header), = proxy.seen
    reached = target.split("/")[2]
    for name in (reached, host_header):
        name_host, _, name_port = name.lower().partition(":")
        assert name_host.rstrip(".") == want and int(name_port or 80) == port, (url, target, host_header)


def test_a_percent_escape_in_a_host_is_not_allowed() -> None:
    """libcurl decodes it (`evil.test%2edemo.test` reaches evil.test.demo.test), urllib3 sends it as is."""
    for url in ("http://evil.test%2edemo.test/", "http://evil.test%23.demo.test/", "http://%64emo.test/"):
        assert host_port(url) is None and not allowed(url, ("demo.test",))


def test_the_curl_engine_refuses_a_url_whose_host_moved_on_the_way_to_libcurl() -> None:
    from etl.fetch.curl_engine import _same_place

    assert _same_place("http://bücher.demo.test/x", "http://xn--bcher-kva.demo.test/x")  # requests' IDNA
    assert _same_place("http://DEMO.test.:0080/x", "http://demo.test:80/x")
    assert not _same_place("http://demo.test/x", "http://evil.test/x")
    assert not _same_place("http://demo.test/x", "http://demo.test:8080/x")
    assert not _same_place("http://demo.test/x", "http://evil.test%2edemo.test/x")

"""Credentials never leak: a password in a start URL is sent as Basic auth to its origin only and is never
stored (listings.url, frontier, failures, runs); database URLs are masked in every form (issue 12 item 4)."""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from etl import cli
from etl.config.model import FetchSettings
from etl.dialects.base import mask_url
from etl.fetch.fetcher import Fetcher
from etl.items import Page, Request
from etl.sources.http import start_demo
from etl.urls import split_credentials
from tests.conftest import ROOT
from tests.test_e2e_listings import table


@pytest.mark.parametrize("url", [
    "postgresql://u:secret@h/db", "postgresql://u:p@ss@secret@h/db", "postgresql://u@h/db?password=secret",
    "postgresql://h/db?sslmode=require&password=secret&x=1", "mysql://u:sec%40ret@h/db",
    "mysql://u@h/db?passwd=secret", "postgresql:///db?user=u&sslpassword=secret"])
def test_every_form_of_database_password_is_masked(url: str) -> None:
    assert "secret" not in mask_url(url) and "sec%40ret" not in mask_url(url), mask_url(url)


def test_start_url_credentials_are_split_off() -> None:
    clean, creds = split_credentials("http://user:p%40ss@Example.com/list?a=1")
    assert clean == "http://Example.com/list?a=1"
    assert creds == ("http://example.com:80", ("user", "p@ss"))
    assert split_credentials("https://example.com/") == ("https://example.com/", None)


class _NeedsAuth(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        want = "Basic " + base64.b64encode(b"user:s3cret").decode()
        ok = self.headers.get("Authorization") == want or self.path == "/robots.txt"
        body = b"<html><body>ok</body></html>" if ok else b"no"
        self.send_response(200 if ok else 401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("http", ["requests", "curl"])
def test_the_fetcher_sends_the_start_urls_credentials_to_their_origin_only(http: str) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NeedsAuth)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        origin = f"http://127.0.0.1:{port}"
        with_auth = Fetcher(FetchSettings(), (f"127.0.0.1:{port}",), credentials={f"{origin}": ("user", "s3cret")},
                            http=http)
        page = with_auth.fetch(Request(f"{origin}/x", "city", {}))
        assert isinstance(page, Page) and page.status == 200, page
        other = Fetcher(FetchSettings(), (f"127.0.0.1:{port}",), credentials={"http://127.0.0.1:1": ("user", "s3cret")},
                        http=http)
        assert not isinstance(other.fetch(Request(f"{origin}/x", "city", {})), Page)  # 401: not sent elsewhere
    finally:
        server.shutdown()


def test_a_password_in_a_start_url_is_never_stored(tmp_path: Path, capsys) -> None:
    server, base = start_demo({"listings": 200})
    try:
        text = re.sub(r"(?m)^demo = .*$", "", (ROOT / "config/demo.toml").read_text())
        path = tmp_path / "site.toml"
        path.write_text(text)
        url = f"sqlite:///{tmp_path / 'etl.db'}"
        authed = base.replace("http://", "http://crawler:hunter2@")
        code = cli.main(["run", str(path), "--db", url, "--quiet", "--set", f"source.base_url={authed}"])
        out = capsys.readouterr().out
        assert code == 0, out
        assert "hunter2" not in out
        for sql in ("SELECT url FROM listings", "SELECT url FROM frontier", "SELECT url FROM failures",
                    "SELECT params AS url FROM runs", "SELECT database AS url FROM runs"):
            leaked = [r["url"] for r in table(url, sql) if r["url"] and "hunter2" in r["url"]]
            assert not leaked, (sql, leaked[:3])
        assert table(url, "SELECT count(*) AS n FROM listings")[0]["n"] == 200
        assert json.loads(table(url, "SELECT params FROM runs")[0]["params"])["base_url"] == base
    finally:
        server.stop()

"""URL discovery is bounded: a link farm cannot grow the frontier (memory or database) without end, and a
seen-set capped far below the site's size still crawls every page exactly once.

Both servers run in a thread of the test, so the test sees every request they answer."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from etl import config
from etl.demo.server import make_server
from etl.demo.site import SiteOptions
from etl.frontier.store import Lookup
from etl.pipeline import run_job
from etl.progress import Progress
from tests.conftest import ROOT
from tests.test_e2e_listings import assert_matches_truth, table

LINKS_PER_PAGE = 50
REQUESTS: Counter[str] = Counter()  # path → times the demo server below answered it
_LOCK = threading.Lock()


def count_request(path: str) -> None:
    """An extra app of the demo server that answers nothing and counts everything."""
    with _LOCK:
        REQUESTS[path] += 1


class _Farm(BaseHTTPRequestHandler):
    """Every page links to 50 pages never seen before: /p/<n> → /p/<50n+1> … /p/<50n+50>."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet by design
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        if self.path == "/robots.txt":
            body, status = b"", 404
        else:
            tail = self.path.rsplit("/", 1)[-1]
            n = int(tail) if tail.isdigit() else 0
            links = "".join(f'<a href="/p/{n * LINKS_PER_PAGE + i}">{i}</a>' for i in range(1, LINKS_PER_PAGE + 1))
            body, status = f'<html><body><h1 data-n="{n}">page {n}</h1>{links}</body></html>'.encode(), 200
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serving(server: ThreadingHTTPServer) -> Iterator[str]:
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def farm() -> Iterator[str]:
    yield from _serving(ThreadingHTTPServer(("127.0.0.1", 0), _Farm))


FARM_CONFIG = """
job = "link-farm"

[source]
type = "http"
start_urls = ["{base}/p/0"]

[[crawl.pages]]
kind = "page"
items = true
links = [{{ css = "a", kind = "page" }}]

[items]
select = "h1"
key = {{ attr = "data-n" }}

[fields]
title = {{ regex = "page (.+)" }}
"""


def test_a_link_farm_stops_at_max_urls_and_says_how_many_links_it_dropped(farm: str, tmp_path: Path) -> None:
    """The probe: every page links to 50 new URLs. It reached 4 M URLs in 130 s whatever frontier_memory
    said; now the frontier stops at max_urls, the run ends partial (exit 1) and says what it dropped."""
    path = tmp_path / "farm.toml"
    path.write_text(FARM_CONFIG.format(base=farm))
    db = tmp_path / "etl.db"
    proc = subprocess.run(
        [sys.executable, "-m", "etl.cli", "run", str(path), "--db", f"sqlite:///{db}", "--quiet",
         "--set", "run.max_urls=2000", "--set", "run.fetch_threads=8", "--set", "run.parse_processes=1"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)  # bounded: without the limit it never ends
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    url = f"sqlite:///{db}"
    rows = table(url, "SELECT count(*) AS n, sum(state = 'pending') AS pending FROM frontier")[0]
    assert rows["n"] <= 2000 + 1 and rows["pending"] == 0, rows  # every URL it kept was fetched
    warnings = [line for line in out.splitlines() if "max_urls" in line and "WARNING" in line]
    assert len(warnings) == 1, out
    dropped = int(warnings[0].split("max_urls = 2,000")[1].split(":")[1].split()[0].replace(",", ""))
    assert dropped > 0 and dropped == rows["n"] * LINKS_PER_PAGE - (rows["n"] - 1), warnings[0]
    run = table(url, "SELECT status, message FROM runs")[0]
    assert run["status"] == "partial" and "max_urls" in run["message"]


@pytest.fixture
def counted_demo() -> Iterator[str]:
    REQUESTS.clear()
    options = SiteOptions(listings=500, encoding="gbk", pagination="links")  # every page links its neighbours
    yield from _serving(make_server(options, "127.0.0.1", 0, ("tests.test_frontier_bounds:count_request",)))


@pytest.mark.parametrize("db", ["sqlite", "sqlite-no-lookup", pytest.param("postgres", marks=pytest.mark.postgres),
                                pytest.param("mysql", marks=pytest.mark.mysql)])
def test_a_seen_set_capped_at_100_still_crawls_every_page_exactly_once(
        counted_demo: str, tmp_path: Path, db: str, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Past seen_memory the membership test is the database's: no page may be fetched twice (a link the
    small set forgot is not queued again) and none lost (the database hands back what is pending). Without
    the lookup (a database that fails it) links already stored are offered to the writer again: its
    insert-if-new must not cost the page its done mark."""
    url = (request.getfixturevalue(f"{'pg' if db == 'postgres' else db}_url") if db in ("postgres", "mysql")
           else f"sqlite:///{tmp_path / 'etl.db'}")
    if db == "sqlite-no-lookup":
        monkeypatch.setattr(Lookup, "known", lambda self, keys: set())
    text, served = re.subn(r"^demo = .*$", f'base_url = "{counted_demo}"', (ROOT / "config/demo.toml").read_text(),
                           count=1, flags=re.M)  # our counting server instead of the bundled one
    assert served == 1
    path = tmp_path / "demo.toml"
    path.write_text(text)
    cfg = config.load(path, ["run.seen_memory=100", "run.frontier_memory=50", "crawl.pagination.links=div.page-box a"],
                      database_url=url)
    state, stats = run_job(cfg, progress=Progress(enabled=False))
    assert stats.pages_failed == 0 and state.status == "succeeded", stats
    assert_matches_truth(url, listings=500)
    twice = {p: n for p, n in REQUESTS.items() if n > 1}
    assert not twice, f"{len(twice)} pages fetched more than once, e.g. {list(twice.items())[:5]}"
    # pages done, as counted from the frontier marks (the frontier rows of a succeeded run are compacted away)
    entries = table(url, "SELECT pages_ok AS n FROM runs")[0]["n"]
    assert entries > 500 and sum(n for p, n in REQUESTS.items() if p != "/robots.txt") == entries

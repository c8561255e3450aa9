"""Carried facet texts are stored once per run and value set (etl/carried.py), not once per link below the
facet: a 2 MB facet link text copied into every descendant's frontier row once made an 8 GB SQLite file.

A small local site: a city page whose two district facet links have 900-character texts, each district a
list of two pages of N items, each item a detail page. Fields read the facet text (`from = "facet:district"`),
so every detail link carries it; the database must hold each text once, and the rows must still get it —
also in a run that is interrupted or killed and resumed from the frontier.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import insert, update

from etl import config, db, schema
from etl.frontier import store
from etl.items import Request
from etl.parse.extract import Extractor
from etl.pipeline import run_job
from etl.progress import Progress
from tests.test_e2e_listings import table
from tests.test_extract import page_of

N = 30  # items per list page
PAGES = 2  # list pages per district
TEXTS = ["D0 " + "朝" * 897, "D1 " + "海" * 897]  # 900 characters each: under MAX_CARRIED, carried whole
ROOT = Path(__file__).resolve().parent.parent


def list_page(d: int, p: int) -> str:
    items = "".join(f'<li data-id="{d}-{p}-{i}"><a class="title" href="/d{d}/{p}-{i}.html">t</a>'
                    f'<span class="price">{i + 1}</span></li>' for i in range(N))
    more = f'<a class="next" href="/d{d}/pg{p + 1}/">next</a>' if p < PAGES else ""
    return f'<html><body><ul class="items">{items}</ul>{more}</body></html>'


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        parts = [p for p in self.path.split("/") if p]
        if self.path == "/robots.txt":
            self.send_error(404)
            return
        if not parts:
            facets = "".join(f'<a href="/d{d}/">{text}</a>' for d, text in enumerate(TEXTS))
            body = f'<html><body><h2 class="total"><span>999</span></h2><div class="facets">{facets}</div></body></html>'
        elif len(parts) == 1 or parts[1].startswith("pg"):
            body = list_page(int(parts[0][1:]), int(parts[1][2:]) if len(parts) > 1 else 1)
        else:
            body = f"<html><body><h1>title {parts[0]}-{parts[1].removesuffix('.html')}</h1></body></html>"
        if self.server.delay:  # type: ignore[attr-defined]
            time.sleep(self.server.delay)  # type: ignore[attr-defined]
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def site():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.delay = 0.0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


JOB = """\
job = "carried"

[source]
type = "http"
site = "carried"
city = "bj"
start_urls = ["http://127.0.0.1:{port}/"]

[crawl]
cap = 10

[[crawl.pages]]
kind = "city"
total = {{ css = "h2.total span", type = "int" }}
facets = {{ css = "div.facets a", kind = "district" }}

[[crawl.pages]]
kind = "district"
paginate = true

[crawl.pagination]
next = "a.next"
max_pages = 5

[items]
select = "ul.items > li"
key = {{ attr = "data-id" }}
detail = {{ css = "a.title", kind = "detail" }}

[fields]
district = {{ from = "facet:district", regex = '^(D\\d)' }}
area_text = {{ from = "facet:district" }}
total_price = {{ css = "span.price", type = "decimal" }}
title = {{ from = "detail", css = "h1" }}

[target]
table = "listings"

[run]
parse_processes = 1
fetch_threads = 4
"""


def job_file(tmp_path: Path, port: int) -> str:
    path = tmp_path / "carried.toml"
    path.write_text(JOB.format(port=port), encoding="utf-8")
    return str(path)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
                        pytest.param("mysql", marks=pytest.mark.mysql)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'etl.db'}"
    return request.getfixturevalue("pg_url" if request.param == "postgres" else "mysql_url")


def stored_copies(url: str) -> tuple[list[int], int, int]:
    """How often each facet text is in the database (frontier metas and carried texts), how many frontier
    rows carry facet texts at all (inline or by reference), and the longest frontier meta."""
    texts = [r["meta"] or "" for r in table(url, "SELECT meta FROM frontier")]
    try:
        texts += [r["via"] for r in table(url, "SELECT via FROM carried")]
    except Exception:  # no such table (the code before it): the frontier holds them all
        pass
    metas = [json.loads(r["meta"] or "{}") for r in table(url, "SELECT meta FROM frontier")]
    carrying = sum(1 for m in metas if "via" in m or "via@" in m)
    longest = max((len(r["meta"] or "") for r in table(url, "SELECT meta FROM frontier")), default=0)
    return [sum(t.count(text[3:]) for t in texts) for text in TEXTS], carrying, longest


def check_rows(url: str) -> None:
    rows = table(url, "SELECT listing_id, district, title, extras FROM listings")
    assert len(rows) == 2 * PAGES * N
    for r in rows:
        d = int(r["listing_id"].split("-")[0])
        extras = r["extras"] if isinstance(r["extras"], dict) else json.loads(r["extras"])
        assert (r["district"], extras["area_text"]) == (f"D{d}", TEXTS[d]), r["listing_id"]
        assert r["title"] == f"title d{d}-{r['listing_id'][2:]}"


def test_a_long_facet_text_is_stored_once_and_still_fills_the_rows_after_a_resume(
        site, tmp_path: Path, db_url: str) -> None:
    """A session cut at max_pages leaves its frontier (a partial run keeps it): each facet text is in it
    once, however many of the 120 detail links carry it. Marked interrupted (what SIGTERM leaves), the run
    resumes from those rows until it is done: every row has its facet fields, and the succeeded run's
    frontier and carried texts are compacted away."""
    cfg = config.load(job_file(tmp_path, site.server_address[1]), ["run.max_pages=40"], database_url=db_url)
    state, _ = run_job(cfg, progress=Progress(enabled=False))
    copies, carrying, longest = stored_copies(db_url)
    assert copies == [1, 1], copies
    assert carrying > N and longest < 200, (carrying, longest)
    for _ in range(10):
        engine = db.make_engine(db_url)
        with engine.begin() as conn:
            conn.execute(update(schema.runs).where(schema.runs.c.id == state.run_id).values(status="interrupted"))
        engine.dispose()
        again, _ = run_job(cfg, progress=Progress(enabled=False))
        assert again.run_id == state.run_id  # resumed, not started over
        if again.status == "succeeded":
            break
    assert table(db_url, "SELECT status FROM runs")[0]["status"] == "succeeded"
    check_rows(db_url)
    assert table(db_url, "SELECT count(*) AS n FROM carried")[0]["n"] == 0  # compacted with the frontier


def test_kill_9_then_resume_keeps_facet_texts_once_and_exact(site, tmp_path: Path) -> None:
    """SIGKILL of the whole run mid-crawl (the writer's transactions either committed a page's links with
    their carried texts or neither), then a resume: the texts are stored once and every row is exact."""
    site.delay = 0.02  # type: ignore[attr-defined]
    url = f"sqlite:///{tmp_path / 'etl.db'}"
    cmd = [sys.executable, "-m", "etl.cli", "run", job_file(tmp_path, site.server_address[1]), "--db", url,
           "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "ETL_TEST_SLOW_BATCH": "0.3"})
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, f"the run ended before the kill: {proc.stdout.read()}"
        assert time.monotonic() < deadline, "the run made no progress"
        try:
            if table(url, "SELECT count(*) AS n FROM listings")[0]["n"] >= 5:
                break
        except Exception:  # not migrated yet
            pass
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    copies, carrying, _ = stored_copies(url)
    assert all(n <= 1 for n in copies) and carrying > N, (copies, carrying)
    site.delay = 0.0  # type: ignore[attr-defined]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "(resumed)" in done.stdout + done.stderr, done.stdout + done.stderr
    check_rows(url)


def test_frontier_reads_resolve_references_and_keep_old_inline_texts(db_url: str) -> None:
    """load (run start, resume, writer recovery) and read_pending (a spilled frontier's read-back) give the
    parse process meta["via"] as before: one shared dict per referenced set; an inline "via" written by an
    older version is read as it is; a reference to a text the database lacks leaves no via."""
    from etl import carried  # here, not at the top: the other tests also run (and fail) on the code before it

    db.upgrade(db_url)
    via = {"district": TEXTS[0]}
    packer = carried.Packer()
    shared = [Request(f"http://a.test/{i}.html", "detail", {"key": str(i), "via": via}) for i in range(3)]
    rows = [{"url_key": r.key or i, "url": r.url, "kind": r.kind, "meta": packer.meta_json(r), "state": "pending"}
            for i, r in enumerate(shared)]
    rows.append({"url_key": 10, "url": "http://a.test/old", "kind": "detail", "state": "pending",
                 "meta": json.dumps({"key": "old", "via": {"district": "old text"}})})
    rows.append({"url_key": 11, "url": "http://a.test/lost", "kind": "detail", "state": "pending",
                 "meta": json.dumps({"key": "lost", carried.REF: 12345})})
    rows.append({"url_key": 12, "url": "http://a.test/done", "kind": "detail", "state": "done",
                 "meta": packer.meta_json(shared[0])})
    assert len(packer.texts) == 1 and all(TEXTS[0] not in r["meta"] for r in rows[:3])
    engine = db.make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(insert(schema.carried), [{**r, "run_id": 1} for r in packer.rows()])
            conn.execute(insert(schema.carried), [{**r, "run_id": 2, "via": '{"district":"other run"}'}
                                                  for r in packer.rows()])
            conn.execute(insert(schema.frontier), [{**r, "run_id": 1} for r in rows])
        with engine.connect() as conn:
            loaded = store.load(conn, 1).pending
            read = store.read_pending(conn, 1, 100)
    finally:
        engine.dispose()
    for pending in (loaded, read):
        by_key = {r.meta["key"]: r.meta for r in pending}
        assert set(by_key) == {"0", "1", "2", "old", "lost"}
        assert [by_key[k]["via"] for k in "012"] == [via] * 3
        assert by_key["0"]["via"] is by_key["1"]["via"] is by_key["2"]["via"]
        assert by_key["old"]["via"] == {"district": "old text"}
        assert "via" not in by_key["lost"] and carried.REF not in by_key["lost"]


def test_links_of_one_list_page_share_one_via(tmp_path: Path) -> None:
    """Each item's detail link carries the page's facet texts: one dict for all of them, so the Parsed
    pickled back from the parse process (and a batch handed to the fetch process) holds the text once."""
    cfg = config.load(job_file(tmp_path, 1), database_url="sqlite://")
    ex = Extractor(cfg, ("127.0.0.1:1",))
    request = Request("http://127.0.0.1:1/d0/", "district", {"via": {"district": TEXTS[0]}})
    parsed = ex.parse(page_of(request, list_page(0, 1)))
    details = [link for link in parsed.links if link.kind == "detail"]
    assert len(details) == N and all(link.meta["via"] == {"district": TEXTS[0]} for link in details)
    assert len({id(link.meta["via"]) for link in parsed.links}) == 1  # the next page's link too
    bare = pickle.dumps([Request(r.url, r.kind, {k: v for k, v in r.meta.items() if k != "via"})
                         for r in parsed.links])
    assert len(pickle.dumps(parsed.links)) - len(bare) < 1.5 * len(TEXTS[0].encode())  # not N times

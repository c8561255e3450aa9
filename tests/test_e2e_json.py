"""The json source end to end against a small API served here: every pagination style (page number,
offset, cursor, next URL), JSON and HTML detail pages, nested paths, awkward values — into listings,
equal to what the API holds."""

from __future__ import annotations

import base64
import html
import http.server
import json
import random
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from etl import config
from etl.pipeline import run_job
from etl.progress import Progress
from tests.test_e2e_listings import table

N = 437  # not a multiple of any page size


def make_items(n: int = N) -> list[dict]:
    rnd = random.Random(7)
    items = []
    for i in range(n):
        items.append({
            "id": f"L{100000 + i}",
            "title": rnd.choice(["望京 南北通透", 'quote " and \\ backslash', "emoji 🏠 ok", "x" * 3]) + f" #{i}",
            "price": {"total_wan": round(rnd.uniform(100, 900), 1), "unit": rnd.randint(20000, 120000)},
            "layout": {"rooms": rnd.randint(1, 5), "halls": rnd.choice([0, 1, 2, None])},
            "area_m2": round(rnd.uniform(30, 200), 2),
            "tags": ["近地铁", "满五"][: rnd.randint(0, 2)],
            "district": rnd.choice(["朝阳", "海淀", "东城"]),
            "listed": f"2024-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}",
        })
    items[5]["price"]["unit"] = None  # a null field
    return items


ITEMS = make_items()
BY_ID = {it["id"]: it for it in ITEMS}


def _list_item(it: dict) -> dict:
    """What a list response shows: no district or listed date (those are on the detail page)."""
    out = {k: v for k, v in it.items() if k not in ("district", "listed")}
    out["detail"] = f"/api/items/{it['id']}"
    out["page"] = f"/items/{it['id']}.html"
    return out


class Api(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        path = parts.path
        dump = lambda obj: json.dumps(obj, ensure_ascii=False).encode()  # noqa: E731
        if path == "/robots.txt":
            return self._send(404, b"", "text/plain")
        if path == "/api/page":
            page, size = int(q.get("page", 1)), int(q.get("size", 30))
            chunk = ITEMS[(page - 1) * size: page * size]
            pages = -(-len(ITEMS) // size)
            return self._send(200, dump({"code": 0, "data": {"pages": pages, "items": [_list_item(i) for i in chunk]}}))
        if path == "/api/offset":
            off, lim = int(q.get("offset", 0)), int(q.get("limit", 25))
            return self._send(200, dump({"total": len(ITEMS), "results": [_list_item(i) for i in ITEMS[off:off + lim]]}))
        if path == "/api/cursor":
            off = int(base64.urlsafe_b64decode(q["cursor"]).decode()) if "cursor" in q else 0
            nxt = base64.urlsafe_b64encode(str(off + 40).encode()).decode() if off + 40 < len(ITEMS) else None
            return self._send(200, dump({"items": [_list_item(i) for i in ITEMS[off:off + 40]], "next_cursor": nxt}))
        if path == "/api/next":
            page = int(q.get("p", 1))
            nxt = f"/api/next?p={page + 1}" if page * 50 < len(ITEMS) else None
            return self._send(200, dump({"count": len(ITEMS), "next": nxt,
                                         "results": [_list_item(i) for i in ITEMS[(page - 1) * 50: page * 50]]}))
        if path.startswith("/api/items/"):
            it = BY_ID.get(path.rsplit("/", 1)[1])
            if it is None:
                return self._send(404, dump({"error": "no such item"}))
            return self._send(200, dump({"item": {"district": it["district"], "listed": it["listed"]}}))
        if path.startswith("/items/") and path.endswith(".html"):
            it = BY_ID[path[len("/items/"):-len(".html")]]
            body = (f"<html><body><div class='area'>{html.escape(it['district'])}</div>"
                    f"<span class='date'>挂牌 {it['listed']}</span></body></html>")
            return self._send(200, body.encode(), "text/html; charset=utf-8")
        return self._send(404, dump({"error": "not found"}))


@pytest.fixture(scope="module")
def api() -> str:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


FIELDS = """
[fields]
title = { json = "title", required = true }
total_price = { json = "price.total_wan", type = "decimal", scale = 10000 }
unit_price = { json = "price.unit", type = "int" }
rooms = { json = "layout.rooms", type = "int" }
halls = { json = "layout.halls", type = "int" }
area_m2 = { json = "area_m2", type = "float" }
first_tag = { json = "tags.0" }
"""
DETAIL_JSON = """
district = { from = "detail", json = "item.district" }
listed_date = { from = "detail", json = "item.listed", type = "date" }
"""
DETAIL_HTML = """
district = { from = "detail", css = "div.area" }
listed_date = { from = "detail", css = "span.date", type = "date" }
"""

STYLES = {
    "page": ('/api/page?size=30', '[source.json.pagination]\npage = { param = "page", total_pages = "data.pages" }',
             "data.items"),
    "page-no-total": ('/api/page?size=30', '[source.json.pagination]\npage = { param = "page" }', "data.items"),
    "offset": ('/api/offset?limit=25', '[source.json.pagination]\noffset = { param = "offset", total = "total" }',
               "results"),
    "cursor": ('/api/cursor', '[source.json.pagination]\ncursor = { param = "cursor", path = "next_cursor" }',
               "items"),
    "next_url": ('/api/next', '[source.json.pagination]\nnext_url = "next"', "results"),
}


def write_config(tmp_path: Path, base: str, style: str, detail: str | None) -> str:
    start, pagination, items = STYLES[style]
    detail_line = "" if detail is None else f'detail = {{ url = "{"detail" if detail == "json" else "page"}" }}'
    text = f"""
job = "json-{style}-{detail}"
[source]
type = "json"
site = "api"
start_urls = ["{base}{start}"]
[source.json]
items = "{items}"
key = "id"
{detail_line}
{pagination}
{FIELDS}{"" if detail is None else DETAIL_JSON if detail == "json" else DETAIL_HTML}
[run]
parse_processes = 2
"""
    path = tmp_path / f"{style}-{detail}.toml"
    path.write_text(text)
    return str(path)


def check(db_url: str, detail: str | None) -> None:
    rows = {r["listing_id"]: r for r in table(db_url, "SELECT * FROM listings WHERE source = 'api'")}
    assert set(rows) == set(BY_ID)
    bad = []
    for key, it in BY_ID.items():
        r = rows[key]
        want = {"title": it["title"], "unit_price": it["price"]["unit"], "rooms": it["layout"]["rooms"],
                "halls": it["layout"]["halls"], "area_m2": it["area_m2"]}
        if detail is not None:
            want["district"] = it["district"]
        for name, value in want.items():
            if r[name] != value:
                bad.append((key, name, value, r[name]))
        if float(r["total_price"]) != round(it["price"]["total_wan"] * 10000, 2):
            bad.append((key, "total_price", it["price"]["total_wan"], r["total_price"]))
        extras = r["extras"] if isinstance(r["extras"], dict) else json.loads(r["extras"])
        if extras.get("first_tag") != (it["tags"][0] if it["tags"] else None):
            bad.append((key, "first_tag", it["tags"], extras))
        if detail is not None and str(r["listed_date"])[:10] != it["listed"]:
            bad.append((key, "listed_date", it["listed"], r["listed_date"]))
    assert not bad, f"{len(bad)} mismatches, e.g. {bad[:4]}"


@pytest.mark.parametrize("style", list(STYLES))
def test_every_pagination_style(api: str, tmp_path: Path, sqlite_url: str, style: str) -> None:
    cfg = config.load(write_config(tmp_path, api, style, None), database_url=sqlite_url)
    state, stats = run_job(cfg, progress=Progress(enabled=False))
    assert state.status == "succeeded" and stats.pages_failed == 0
    check(sqlite_url, None)


@pytest.mark.parametrize("detail", ["json", "html"])
def test_detail_pages_json_or_html(api: str, tmp_path: Path, sqlite_url: str, detail: str) -> None:
    cfg = config.load(write_config(tmp_path, api, "cursor", detail), database_url=sqlite_url)
    state, stats = run_job(cfg, progress=Progress(enabled=False))
    assert state.status == "succeeded" and stats.pages_ok == -(-N // 40) + N
    check(sqlite_url, detail)


@pytest.mark.parametrize("backend", [pytest.param("pg_url", marks=pytest.mark.postgres),
                                     pytest.param("mysql_url", marks=pytest.mark.mysql)])
def test_json_source_server_databases(api: str, tmp_path: Path, backend: str, request) -> None:
    url = request.getfixturevalue(backend)
    cfg = config.load(write_config(tmp_path, api, "offset", "json"), database_url=url)
    run_job(cfg, progress=Progress(enabled=False))
    check(url, "json")


def test_max_pages_bounds_a_pagination_loop(api: str, tmp_path: Path, sqlite_url: str) -> None:
    path = write_config(tmp_path, api, "next_url", None)
    cfg = config.load(path, ["source.json.max_pages=3"], database_url=sqlite_url)
    state, stats = run_job(cfg, progress=Progress(enabled=False))
    assert stats.pages_ok == 3 and any("max_pages" in w for w in stats.warnings)
    assert table(sqlite_url, "SELECT count(*) AS n FROM listings")[0]["n"] == 150


def test_a_non_json_page_is_that_pages_failure(api: str, tmp_path: Path, sqlite_url: str) -> None:
    path = Path(write_config(tmp_path, api, "page", None))
    path.write_text(path.read_text().replace("/api/page?size=30", "/items/L100000.html"))
    state, stats = run_job(config.load(str(path), database_url=sqlite_url), progress=Progress(enabled=False))
    errors = [f["error"] for f in table(sqlite_url, "SELECT error FROM failures")]
    assert state.status == "failed" and len(errors) == 1 and "not a JSON response" in errors[0]


@pytest.mark.parametrize("pagination, fragment", [
    ('[source.json.pagination]\npage = { param = "p" }\ncursor = { param = "c", path = "n" }', "choose one"),
    ('[source.json.pagination]\ncursor = { param = "c" }', "path"),
    ('[source.json.pagination]\noffset = { param = "o", size = 0 }', "size"),
])
def test_bad_json_section_is_refused_on_load(tmp_path: Path, pagination: str, fragment: str) -> None:
    path = Path(write_config(tmp_path, "http://x.test", "page", None))
    path.write_text(path.read_text().replace(STYLES["page"][1], pagination))
    with pytest.raises(config.ConfigError, match=fragment):
        config.load(str(path))


def test_css_on_a_json_item_is_refused(tmp_path: Path) -> None:
    path = Path(write_config(tmp_path, "http://x.test", "page", None))
    path.write_text(path.read_text().replace('title = { json = "title", required = true }', 'title = "h1"'))
    with pytest.raises(config.ConfigError, match="json"):
        config.load(str(path))


def test_a_json_response_nested_too_deeply_is_that_pages_failure(tmp_path: Path) -> None:
    """12.16 on the json source: a response nested past the parser's limit fails that page with one line
    (the parse process does not die); an item whose value is too deep to turn into text fails that item."""
    from etl.items import Page, Request
    from etl.sources import source_for

    cfg = config.load(write_config(tmp_path, "http://127.0.0.1:1", "page", None))
    reader = source_for(cfg).reader(("127.0.0.1:1",))
    url = "http://127.0.0.1:1/api/page?size=30&p=1"
    deep = b'{"items": [' + b"[" * 200_000 + b"]" * 200_000 + b"]}"
    parsed = reader.read(Page(Request(url, "list", {}), url, 200, {"content-type": "application/json"}, deep))
    assert parsed.error and "nested too deeply" in parsed.error and not parsed.rows

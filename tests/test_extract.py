"""The config-driven Extractor (etl/parse/extract.py), on both HTML engines.

The key tests crawl the bundled demo portal in-process: every page is rendered by DemoSite.render (no HTTP),
parsed by the Extractor, and its links are followed breadth-first with the coordinator's URL dedupe. The rows
must equal DemoSite.truth() field by field, and selectolax and bs4 must give identical rows.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from etl import config
from etl.demo.site import DemoSite, SiteOptions
from etl.items import Page, Parsed, Request
from etl.parse.engines import ENGINES
from etl.parse.extract import Extractor

ROOT = Path(__file__).resolve().parent.parent
DEMO = str(ROOT / "config" / "demo.toml")
BASE = "http://demo.test"
START = f"{BASE}/bj/ershoufang/"
DOMAINS = ("demo.test",)
LINKS_PAGINATION = "crawl.pagination.links=div.page-box a"

ENCODINGS = ("utf-8", "gbk")
PAGINATIONS = ("json", "links", "next")

# The full-size crawl (listings=400) runs on selectolax; bs4 (about ten times slower per page) crawls a small
# site completely and re-parses a sample of the 400-listing crawl's pages, which must give the same Parsed.
FULL = dict(listings=400)
SMALL = dict(listings=36, page_size=4)  # 9 list pages: the numbered-links window has gaps on both sides


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    return request.param


# ---------------------------------------------------------------------------------------------- helpers


@functools.cache
def site(options: SiteOptions) -> DemoSite:
    return DemoSite(options)


@functools.cache
def demo_extractor(engine: str, overrides: tuple[str, ...] = ()) -> Extractor:
    cfg = config.load(DEMO, [f"run.engine={engine}", *overrides], database_url="sqlite://")
    assert cfg.run.engine == engine
    return Extractor(cfg, domains=DOMAINS)


def overrides_for(pagination: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    return ((LINKS_PAGINATION,) if pagination == "links" else ()) + extra


def render(s: DemoSite, request: Request) -> Page:
    status, headers, body = s.render(urlsplit(request.url).path)
    return Page(request, request.url, status, {k.lower(): v for k, v in headers.items()}, body)


@dataclass
class Crawl:
    rows: list[dict] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    skipped: int = 0
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@functools.cache
def crawl(engine: str, options: SiteOptions, overrides: tuple[str, ...] = ()) -> Crawl:
    """Breadth-first in-process crawl from the city page, deduping URLs like the coordinator does."""
    ex, s, out = demo_extractor(engine, overrides), site(options), Crawl()
    queue, seen = deque([Request(START, next(iter(ex.cfg.pages)))]), {START}
    while queue:
        req = queue.popleft()
        out.requests.append(req)
        page = render(s, req)
        if page.status != 200:
            out.errors.append(f"{req.url}: HTTP {page.status}")
            continue
        parsed = ex.parse(page)
        if parsed.error:
            out.errors.append(f"{req.url}: {parsed.error}")
            continue
        out.rows += parsed.rows
        out.skipped += parsed.skipped
        out.warnings += parsed.warnings
        for link in parsed.links:
            if link.url not in seen:
                seen.add(link.url)
                queue.append(link)
    return out


def assert_rows_match_truth(rows: list[dict], truth: list[dict]) -> None:
    ids = [r["listing_id"] for r in rows]
    assert len(ids) == len(set(ids)), "duplicate rows"
    by_id = {r["listing_id"]: r for r in rows}
    want_ids = {t["listing_id"] for t in truth}
    assert set(by_id) == want_ids, f"missing {len(want_ids - set(by_id))}, extra {len(set(by_id) - want_ids)}"
    mismatches = []
    for t in truth:
        row = by_id[t["listing_id"]]
        assert set(row) == set(t) | {"source"}, set(row) ^ (set(t) | {"source"})
        assert row["source"] == "demo"
        for name, want in t.items():
            got = row[name]
            if name == "url":
                assert got.startswith(BASE)
                got = urlsplit(got).path
            if got != want or type(got) is not type(want):
                mismatches.append((t["listing_id"], name, want, got))
    assert not mismatches, f"{len(mismatches)} field mismatches, e.g. {mismatches[:5]}"


def assert_bs4_agrees(result: Crawl, options: SiteOptions, overrides: tuple[str, ...], every: int = 50) -> None:
    """bs4 on every list page and a sample of detail pages of a selectolax crawl: the very same Parsed."""
    s, sx, soup = site(options), demo_extractor("selectolax", overrides), demo_extractor("bs4", overrides)
    details = [r for r in result.requests if r.kind == "detail"]
    for req in [r for r in result.requests if r.kind != "detail"] + details[::every]:
        page = render(s, req)
        assert soup.parse(page) == sx.parse(page), req.url


def page_of(request: Request, body: str | bytes, content_type: str = "text/html; charset=utf-8",
            status: int = 200) -> Page:
    raw = body.encode("utf-8") if isinstance(body, str) else body
    return Page(request, request.url, status, {"content-type": content_type}, raw)


# ---------------------------------------------------------------------------------------------- demo crawls


@pytest.mark.parametrize("pagination", PAGINATIONS)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_crawl_small_site_matches_truth(engine, encoding, pagination):
    options = SiteOptions(**SMALL, encoding=encoding, pagination=pagination)
    result = crawl(engine, options, overrides_for(pagination))
    assert result.errors == [] and result.warnings == []
    assert_rows_match_truth(result.rows, site(options).truth("bj"))
    # 9 list pages (+ page 1 again as pg1/ in links mode) and one detail page per listing
    kinds = [r.kind for r in result.requests]
    assert kinds.count("detail") == 36
    assert kinds.count("city") == (10 if pagination == "links" else 9)


@pytest.mark.parametrize("pagination", PAGINATIONS)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_engines_give_identical_rows(encoding, pagination):
    options = SiteOptions(**SMALL, encoding=encoding, pagination=pagination)
    a = crawl("selectolax", options, overrides_for(pagination))
    b = crawl("bs4", options, overrides_for(pagination))
    assert a.rows == b.rows  # same rows, same order, same types
    assert [(r.url, r.kind, r.meta) for r in a.requests] == [(r.url, r.kind, r.meta) for r in b.requests]
    assert a.skipped == b.skipped


@pytest.mark.parametrize("pagination", PAGINATIONS)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_crawl_400_listings_matches_truth_on_both_engines(encoding, pagination):
    options = SiteOptions(**FULL, encoding=encoding, pagination=pagination)
    overrides = overrides_for(pagination)
    result = crawl("selectolax", options, overrides)
    assert result.errors == [] and result.warnings == []
    assert_rows_match_truth(result.rows, site(options).truth("bj"))
    # 400 is under the cap of 3000: the city page paginates itself, no facet is followed
    assert {r.kind for r in result.requests} == {"city", "detail"}
    # 14 pages × (3 app banners + 2 ads) minus the banner/ad positions missing on the short last page (10 items);
    # in links mode page 1 is listed twice (as /bj/ershoufang/ and as its own pg1/ link)
    assert result.skipped == 13 * 5 + 2 + (5 if pagination == "links" else 0)
    assert_bs4_agrees(result, options, overrides)


def test_links_pagination_override_gives_numbered_page_links(engine):
    options = SiteOptions(**FULL, pagination="links")
    ex = demo_extractor(engine, (LINKS_PAGINATION,))
    assert ex.cfg.pagination.links == "div.page-box a"
    parsed = ex.parse(render(site(options), Request(START, "city")))
    pages = [link.url for link in parsed.links if link.kind == "city"]
    # window on page 1: 1 2 3 … 14, plus 下一页 → pg2. The link numbered 1 (pg1/) is this very page under
    # another URL: not followed, or page 1 would be fetched twice. Duplicates within one page's links are
    # harmless, the coordinator dedupes.
    assert set(pages) == {f"{START}pg{n}/" for n in (2, 3, 14)}
    # the page number is the link's own number
    assert {link.url: link.meta["page"] for link in parsed.links if link.kind == "city"} == {
        f"{START}pg{n}/": n for n in (2, 3, 14)}
    # without the override only the "next" link is followed
    plain = demo_extractor(engine).parse(render(site(options), Request(START, "city")))
    assert [link.url for link in plain.links if link.kind == "city"] == [f"{START}pg2/"]


def test_json_pagination_from_page_1_only(engine):
    options = SiteOptions(**FULL, pagination="json")
    ex = demo_extractor(engine)
    first = ex.parse(render(site(options), Request(START, "city")))
    pages = [(link.url, link.meta) for link in first.links if link.kind == "city"]
    assert pages == [(f"{START}pg{n}/", {"page": n}) for n in range(2, 15)]
    second = ex.parse(render(site(options), Request(f"{START}pg2/", "city", {"page": 2})))
    assert [link for link in second.links if link.kind == "city"] == []  # page 1 already listed them all


def test_max_pages_limits_pagination(engine):
    options = SiteOptions(**FULL, pagination="json")
    ex = demo_extractor(engine, ("crawl.pagination.max_pages=3",))
    first = ex.parse(render(site(options), Request(START, "city")))
    assert [link.url for link in first.links if link.kind == "city"] == [f"{START}pg2/", f"{START}pg3/"]
    assert any("max_pages = 3" in w for w in first.warnings)  # rows left behind are never silent
    nxt = SiteOptions(**FULL, pagination="next")
    third = ex.parse(render(site(nxt), Request(f"{START}pg3/", "city", {"page": 3})))
    assert [link for link in third.links if link.kind == "city"] == []
    assert any("max_pages = 3" in w for w in third.warnings)
    second = ex.parse(render(site(nxt), Request(f"{START}pg2/", "city", {"page": 2})))
    assert not any("max_pages" in w for w in second.warnings)  # said once per list, by its last page
    whole = demo_extractor(engine).parse(render(site(options), Request(START, "city")))
    assert not any("max_pages" in w for w in whole.warnings)  # 14 pages ≤ 100: nothing to say


@pytest.mark.parametrize("pagination", ["json", "next", "links"])
def test_max_pages_bounds_the_crawl(engine, pagination):
    options = SiteOptions(**SMALL, pagination=pagination)
    result = crawl(engine, options, overrides_for(pagination, ("crawl.pagination.max_pages=3",)))
    assert result.errors == []
    numbers = {int(m.group(1)) if (m := re.search(r"pg(\d+)/$", r.url)) else 1
               for r in result.requests if r.kind == "city"}
    assert numbers == {1, 2, 3}
    assert len(result.rows) == 12  # 3 pages × 4 listings


def test_next_pagination_carries_page_number(engine):
    options = SiteOptions(**FULL, pagination="next")
    ex = demo_extractor(engine)
    parsed = ex.parse(render(site(options), Request(f"{START}pg5/", "city", {"page": 5})))
    assert [(link.url, link.meta) for link in parsed.links if link.kind == "city"] == [(f"{START}pg6/", {"page": 6})]
    last = ex.parse(render(site(options), Request(f"{START}pg14/", "city", {"page": 14})))
    assert [link for link in last.links if link.kind == "city"] == []
    assert len([link for link in last.links if link.kind == "detail"]) == 10


# ---------------------------------------------------------------------------------------------- facets


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_city_over_cap_follows_district_facets_instead_of_paginating(engine, encoding):
    options = SiteOptions(listings=4000, encoding=encoding)
    s, ex = site(options), demo_extractor(engine)
    m = s.model("bj")
    parsed = ex.parse(render(s, Request(START, "city")))
    assert parsed.error is None and parsed.warnings == [] and parsed.rows == []
    assert [link.kind for link in parsed.links] == ["district"] * len(m.districts)
    assert [link.url for link in parsed.links] == [f"{START}{slug}/" for _, slug in m.districts]
    assert parsed.skipped == 0  # the items of an over-cap page are not looked at
    # a district under the cap (every one here, the largest has 2,800) paginates and lists its items
    big = max(range(len(m.districts)), key=lambda d: len(m.by_district[d]))
    assert 1000 < len(m.by_district[big]) <= ex.cfg.cap
    req = parsed.links[big]
    dparsed = ex.parse(render(s, req))
    kinds = [link.kind for link in dparsed.links]
    assert "subdistrict" not in kinds
    assert kinds.count("district") == -(-len(m.by_district[big]) // 30) - 1
    assert kinds.count("detail") == 30


def test_crawl_through_facets_matches_truth_400():
    cap = 20  # districts of 14, 41, 280, 25 and 40 listings: one paginates, four split into sub-districts
    options = SiteOptions(**FULL, encoding="gbk")
    result = crawl("selectolax", options, (f"crawl.cap={cap}",))
    assert result.errors == [] and result.warnings == []
    assert_rows_match_truth(result.rows, site(options).truth("bj"))
    kinds = {r.kind for r in result.requests}
    assert {"district", "subdistrict"} <= kinds
    assert_bs4_agrees(result, options, (f"crawl.cap={cap}",), every=100)


def test_crawl_through_facets_matches_truth_small(engine):
    options = SiteOptions(listings=60, page_size=4, pagination="next")
    result = crawl(engine, options, ("crawl.cap=10",))
    assert result.errors == [] and result.warnings == []
    assert_rows_match_truth(result.rows, site(options).truth("bj"))
    kinds = [r.kind for r in result.requests]
    assert "district" in kinds and "subdistrict" in kinds
    other = crawl("bs4" if engine == "selectolax" else "selectolax", options, ("crawl.cap=10",))
    assert result.rows == other.rows


# ---------------------------------------------------------------------------------------------- demo list page


def test_ads_and_app_banners_are_skipped_and_counted(engine):
    options = SiteOptions(**FULL)
    parsed = demo_extractor(engine).parse(render(site(options), Request(START, "city")))
    details = [link for link in parsed.links if link.kind == "detail"]
    assert len(details) == 30
    assert parsed.skipped == 5  # 3 li.list_app_daoliu + 2 li.ad-item on a full page
    assert all(link.url.startswith(f"{START}") and link.url.endswith(".html") for link in details)
    assert not any("adserver" in link.url or "download" in link.url for link in parsed.links)


def test_detail_request_carries_list_fields(engine):
    options = SiteOptions(**FULL)
    parsed = demo_extractor(engine).parse(render(site(options), Request(START, "city")))
    first = next(link for link in parsed.links if link.kind == "detail")
    truth = site(options).truth("bj")[0]  # the list is newest first, as is truth
    assert first.url == BASE + truth["url"]
    assert first.meta["key"] == truth["listing_id"]
    raw = first.meta["raw"]
    assert set(raw) == {"subdistrict", "community", "title", "rooms", "halls", "area_m2", "orientation",
                        "decoration", "floor_level", "total_floors", "year_built", "total_price", "unit_price"}
    assert all(v is None or isinstance(v, str) for v in raw.values())  # typed only when the row is assembled
    assert raw["title"] == truth["title"] and raw["unit_price"] == str(truth["unit_price"])


def test_detail_page_merges_carried_fields(engine):
    options = SiteOptions(**FULL)
    truth = site(options).truth("bj")[0]
    ex = demo_extractor(engine)
    listing = ex.parse(render(site(options), Request(START, "city")))
    req = next(link for link in listing.links if link.kind == "detail")
    parsed = ex.parse(render(site(options), req))
    assert parsed.error is None and parsed.links == [] and len(parsed.rows) == 1
    row = parsed.rows[0]
    assert row["listing_id"] == truth["listing_id"] and row["title"] == truth["title"]  # from the list item
    assert row["district"] == truth["district"] and row["listed_date"] == truth["listed_date"]  # from the detail
    assert row["extras"] == truth["extras"]
    assert row["url"] == req.url


def test_detail_page_without_carried_key_is_an_error(engine):
    options = SiteOptions(**FULL)
    url = BASE + site(options).truth("bj")[0]["url"]
    parsed = demo_extractor(engine).parse(render(site(options), Request(url, "detail")))
    assert parsed.error == "detail page without a key" and parsed.rows == []


def test_empty_list_page_beyond_the_last(engine):
    options = SiteOptions(**FULL)
    parsed = demo_extractor(engine).parse(render(site(options), Request(f"{START}pg20/", "city", {"page": 20})))
    assert parsed.error is None and parsed.rows == [] and parsed.links == [] and parsed.skipped == 0


# ---------------------------------------------------------------------------------------------- handcrafted pages

UNIT_CONFIG = """\
job = "unit"

[source]
type = "http"
site = "unit"
city = "bj"
start_urls = ["http://demo.test/list/"]

[crawl]
cap = 50

[[crawl.pages]]
kind = "list"
total = { css = "h2.total span", type = "int" }
facets = { css = "div.facets a", kind = "sub" }
paginate = true
links = [{ css = "a.related", kind = "list", match = "/list/" }]

[[crawl.pages]]
kind = "sub"
items = true
links = [{ css = "a", kind = "sub" }]

[crawl.pagination]
next = "a.next"
max_pages = 5

[items]
select = "ul.items > li"
skip = "li.ad"
key = { attr = "data-id" }

[fields]
city = { value = "{city}" }
title = { css = "a.title" }
total_price = { css = "span.price", type = "decimal", scale = 10000 }
area_m2 = { css = "span.info", regex = '([\\d.]+)平米', type = "float" }
rooms = { css = "span.info", regex = '(\\d+)室', type = "int" }
listed_date = { css = "span.date", type = "date" }
unit_price = { css = "span.unit", attr = "data-price", type = "int" }
tags = { css = "span.tag", all = true }
tag_ids = { css = "span.tag", attr = "data-k", all = true }
visits = { css = "script.stats", json = "stats.visits", type = "int" }
photo = { css = "div.photos", attr = "data-list", json = "1.src" }
photo_missing = { css = "div.photos", attr = "data-list", json = "7.src" }
code = { regex = 'CODE-\\d+' }
heading = { from = "page", css = "h1" }
"""

ITEMS = """\
<html><head><title>t</title></head><body><h1> 北京 二手房 </h1>
<h2 class="total">共<span> 3 </span>套</h2>
<ul class="items">
<li data-id="101"><a class="title" href="/d/101.html">  Sunny   flat </a><span class="price">523.5</span>
  <span class="info">2室1厅 | 89.5平米</span><span class="date">2024年03月05日</span>
  <span class="unit" data-price="58101">58,101元/平</span>
  <span class="tag" data-k="1">近地铁</span><span class="tag" data-k="2">满五年</span>
  <script class="stats" type="application/json">{"stats": {"visits": 12}}</script>
  <div class="photos" data-list='[{"src": "a.jpg"}, {"src": "b.jpg"}]'></div> CODE-77</li>
<li class="ad" data-id="999"><a class="title" href="http://ad.example/x">ad</a></li>
<li data-id="102"><a class="title" href="/d/102.html">Bare</a></li>
<li><a class="title" href="/d/103.html">no key</a></li>
</ul></body></html>
"""


@pytest.fixture
def unit_cfg_path(tmp_path) -> str:
    path = tmp_path / "unit.toml"
    path.write_text(UNIT_CONFIG, encoding="utf-8")
    return str(path)


def unit_extractor(path: str, engine: str, *overrides: str) -> Extractor:
    return Extractor(config.load(path, [f"run.engine={engine}", *overrides], database_url="sqlite://"), DOMAINS)


def parse_sub(path: str, engine: str, body: str, url: str = f"{BASE}/list/a/") -> Parsed:
    return unit_extractor(path, engine).parse(page_of(Request(url, "sub"), body))


def test_item_fields_all_options(engine, unit_cfg_path):
    parsed = parse_sub(unit_cfg_path, engine, ITEMS)
    assert parsed.error is None
    assert parsed.skipped == 1 and parsed.keyless == 1  # the ad (a rule), the item without a key (not one)
    assert [r["listing_id"] for r in parsed.rows] == ["101", "102"]
    full, bare = parsed.rows
    assert full["source"] == "unit" and full["city"] == "bj"
    assert full["title"] == "Sunny flat"
    assert full["total_price"] == Decimal(5_235_000) and isinstance(full["total_price"], Decimal)
    assert full["area_m2"] == 89.5 and full["rooms"] == 2
    assert full["listed_date"] == dt.date(2024, 3, 5)
    assert full["unit_price"] == 58101
    assert full["url"] == f"{BASE}/list/a/"  # no url field: the page's URL
    assert full["extras"] == {"tags": "近地铁 满五年", "tag_ids": "1 2", "visits": 12, "photo": "b.jpg",
                              "photo_missing": None, "code": "CODE-77", "heading": "北京 二手房"}


def test_missing_fields_are_none_not_errors(engine, unit_cfg_path):
    bare = parse_sub(unit_cfg_path, engine, ITEMS).rows[1]
    for name in ("total_price", "area_m2", "rooms", "listed_date", "unit_price"):
        assert bare[name] is None, name
    assert bare["extras"] == {"tags": None, "tag_ids": None, "visits": None, "photo": None, "photo_missing": None,
                              "code": None, "heading": "北京 二手房"}


def test_bad_json_and_unmatched_regex_give_none(engine, unit_cfg_path):
    body = ('<html><body><ul class="items"><li data-id="5"><span class="info">three rooms</span>'
            '<script class="stats">{not json</script><div class="photos" data-list="[]"></div>'
            '<span class="price">暂无数据</span><span class="date">2024-02-30</span></li></ul></body></html>')
    row = parse_sub(unit_cfg_path, engine, body).rows[0]
    assert row["rooms"] is None and row["area_m2"] is None
    assert row["total_price"] is None and row["listed_date"] is None
    assert row["extras"]["visits"] is None and row["extras"]["photo"] is None


def test_regex_without_group_keeps_whole_match_and_all_joins(engine, unit_cfg_path):
    row = parse_sub(unit_cfg_path, engine, ITEMS).rows[0]
    assert row["extras"]["code"] == "CODE-77"
    assert row["extras"]["tags"] == "近地铁 满五年"


LINKS_PAGE = """\
<html><body><ul class="items"></ul>
<a href="/list/b/">relative</a>
<a href="c/#section">relative with fragment</a>
<a href="http://demo.test/list/a/#top">self with fragment</a>
<a href="//www.demo.test/list/d/">protocol-relative subdomain</a>
<a href="HTTP://DEMO.TEST/list/e/">upper case</a>
<a href="http://demo.test/list/b/">duplicate</a>
<a href="http://evil.test/list/x/">other site</a>
<a href="http://demo.test.evil.test/list/y/">suffix trick</a>
<a href="https://notdemo.test/list/z/">look-alike</a>
<a href="javascript:void(0)">js</a>
<a href=" javascript:alert(1)">js with space</a>
<a href="JavaScript:alert(1)">js upper</a>
<a href="mailto:agent@demo.test">mail</a>
<a href="tel:10086">phone</a>
<a href="data:text/html,hi">data</a>
<a href="ftp://demo.test/list/f/">ftp</a>
<a href="file:///etc/passwd">file</a>
<a href="">empty</a>
<a>no href</a>
</body></html>
"""


def test_link_filtering(engine, unit_cfg_path):
    parsed = parse_sub(unit_cfg_path, engine, LINKS_PAGE)
    assert parsed.error is None
    assert [link.url for link in parsed.links] == [
        f"{BASE}/list/b/",
        f"{BASE}/list/a/c/",
        f"{BASE}/list/a/",
        "http://www.demo.test/list/d/",
        "http://DEMO.TEST/list/e/",
    ]
    assert all(link.kind == "sub" and set(link.meta) <= {"via"} for link in parsed.links)
    assert all("#" not in link.url for link in parsed.links)


def test_link_rule_match_regex(engine, unit_cfg_path):
    body = ('<html><body><h2 class="total"><span>3</span></h2><div class="facets"><a href="/sub/1/">s</a></div>'
            '<a class="related" href="/list/2/">yes</a><a class="related" href="/other/3/">no</a></body></html>')
    ex = unit_extractor(unit_cfg_path, engine)
    parsed = ex.parse(page_of(Request(f"{BASE}/list/", "list"), body))
    assert [(link.url, link.kind) for link in parsed.links] == [(f"{BASE}/list/2/", "list")]


def list_page(total: int | None, facets: str = "", extra: str = "") -> str:
    t = "" if total is None else f'<h2 class="total">共<span> {total} </span>套</h2>'
    return (f'<html><body>{t}<div class="facets">{facets}</div><ul class="items">'
            f'<li data-id="1"><a class="title">one</a></li></ul>{extra}</body></html>')


def test_under_cap_paginates_and_lists_items(engine, unit_cfg_path):
    ex = unit_extractor(unit_cfg_path, engine)
    body = list_page(30, '<a href="/list/s1/">s1</a>', '<a class="next" href="?page=2">next</a>')
    parsed = ex.parse(page_of(Request(f"{BASE}/list/", "list"), body))
    assert [(link.url, link.kind, link.meta) for link in parsed.links] == [(f"{BASE}/list/?page=2", "list", {"page": 2})]
    assert [r["listing_id"] for r in parsed.rows] == ["1"] and parsed.warnings == []


def test_over_cap_follows_facets_only(engine, unit_cfg_path):
    ex = unit_extractor(unit_cfg_path, engine)
    body = list_page(80, '<a href="/list/s1/">s1</a><a href="/list/s2/">s2</a>', '<a class="next" href="?page=2">n</a>')
    parsed = ex.parse(page_of(Request(f"{BASE}/list/", "list"), body))
    assert [(link.url, link.kind) for link in parsed.links] == [(f"{BASE}/list/s1/", "sub"), (f"{BASE}/list/s2/", "sub")]
    assert parsed.rows == [] and parsed.warnings == []


def test_unknown_total_follows_facets(engine, unit_cfg_path):
    ex = unit_extractor(unit_cfg_path, engine)
    parsed = ex.parse(page_of(Request(f"{BASE}/list/", "list"), list_page(None, '<a href="/list/s1/">s1</a>')))
    assert [link.kind for link in parsed.links] == ["sub"]


def test_over_cap_without_facet_links_warns_and_still_lists(engine, unit_cfg_path):
    ex = unit_extractor(unit_cfg_path, engine)
    body = list_page(80, "", '<a class="next" href="/list/pg2/">n</a>')
    parsed = ex.parse(page_of(Request(f"{BASE}/list/", "list"), body))
    assert len(parsed.warnings) == 1
    warning = parsed.warnings[0]
    assert f"{BASE}/list/" in warning and "80" in warning and "cap of 50" in warning
    assert [link.url for link in parsed.links] == [f"{BASE}/list/pg2/"]
    assert [r["listing_id"] for r in parsed.rows] == ["1"]


def test_facets_are_only_considered_on_page_1(engine, unit_cfg_path):
    ex = unit_extractor(unit_cfg_path, engine)
    body = list_page(80, '<a href="/list/s1/">s1</a>', '<a class="next" href="/list/pg3/">n</a>')
    parsed = ex.parse(page_of(Request(f"{BASE}/list/pg2/", "list", {"page": 2}), body))
    assert [(link.url, link.meta) for link in parsed.links] == [(f"{BASE}/list/pg3/", {"page": 3})]
    assert parsed.warnings == [] and len(parsed.rows) == 1


def test_next_link_stops_at_max_pages(engine, unit_cfg_path):
    ex = unit_extractor(unit_cfg_path, engine)
    body = list_page(30, "", '<a class="next" href="/list/pg6/">n</a>')
    parsed = ex.parse(page_of(Request(f"{BASE}/list/pg5/", "list", {"page": 5}), body))
    assert parsed.links == []


def test_total_pages_with_fixed_template(engine, tmp_path):
    text = UNIT_CONFIG.replace('next = "a.next"',
                               'total_pages = { css = "div.pager", attr = "data-total" }\ntemplate = "{url}?p={page}"')
    path = tmp_path / "tpl.toml"
    path.write_text(text, encoding="utf-8")
    ex = unit_extractor(str(path), engine)
    body = list_page(30, "", '<div class="pager" data-total="共 9 页"></div>')
    parsed = ex.parse(page_of(Request(f"{BASE}/list/", "list"), body))
    assert [link.url for link in parsed.links] == [f"{BASE}/list/?p={n}" for n in range(2, 6)]  # max_pages = 5


@pytest.mark.parametrize("content_type", ["application/json", "image/png", "application/pdf; charset=binary",
                                          "text/css"])
def test_non_html_content_type_is_an_error(engine, unit_cfg_path, content_type):
    page = page_of(Request(f"{BASE}/list/a/", "sub"), ITEMS, content_type)
    parsed = unit_extractor(unit_cfg_path, engine).parse(page)
    assert parsed.error and "not an HTML page" in parsed.error and content_type.split(";")[0] in parsed.error
    assert parsed.rows == [] and parsed.links == []


@pytest.mark.parametrize("content_type", ["text/html", "Text/HTML; charset=UTF-8", "application/xhtml+xml", "",
                                          "text/plain"])
def test_html_content_types_are_parsed(engine, unit_cfg_path, content_type):
    page = page_of(Request(f"{BASE}/list/a/", "sub"), ITEMS, content_type)
    parsed = unit_extractor(unit_cfg_path, engine).parse(page)
    assert parsed.error is None and len(parsed.rows) == 2


def test_original_case_content_type_header_is_read(engine, unit_cfg_path):
    page = Page(Request(f"{BASE}/list/a/", "sub"), f"{BASE}/list/a/", 200, {"Content-Type": "image/png"}, b"\x89PNG")
    assert "not an HTML page" in unit_extractor(unit_cfg_path, engine).parse(page).error


def test_undecodable_body_is_an_error(engine, unit_cfg_path):
    import random

    rnd = random.Random(7)
    body = bytes(rnd.randrange(256) for _ in range(4000))
    page = page_of(Request(f"{BASE}/list/a/", "sub"), body, "text/html; charset=utf-8")
    parsed = unit_extractor(unit_cfg_path, engine).parse(page)
    assert parsed.error and "decode" in parsed.error


def test_gbk_page_with_meta_charset(engine, unit_cfg_path):
    body = ITEMS.replace("<head>", '<head><meta charset="gbk">').encode("gbk")
    parsed = unit_extractor(unit_cfg_path, engine).parse(page_of(Request(f"{BASE}/list/a/", "sub"), body, "text/html"))
    assert parsed.rows[0]["extras"]["tags"] == "近地铁 满五年"


def test_unknown_page_kind_is_an_error(engine, unit_cfg_path):
    parsed = unit_extractor(unit_cfg_path, engine).parse(page_of(Request(f"{BASE}/x/", "nope"), ITEMS))
    assert parsed.error and "nope" in parsed.error


def test_empty_document(engine, unit_cfg_path):
    parsed = unit_extractor(unit_cfg_path, engine).parse(page_of(Request(f"{BASE}/list/a/", "sub"), b""))
    assert parsed.error is None and parsed.rows == [] and parsed.links == []


# ---------------------------------------------------------------------------------------------- detail merge

DETAIL_CONFIG = """\
job = "unit-detail"

[source]
type = "http"
site = "unit"
start_urls = ["http://demo.test/list/"]

[[crawl.pages]]
kind = "list"
items = true

[items]
select = "li.item"
key = { attr = "data-id" }
detail = { css = "a.go", match = '/d/\\d+\\.html$' }

[fields]
title = { css = "a.go" }
total_price = { css = "span.price", type = "decimal", scale = 10000 }
district = { from = "detail", css = "div.area a" }
listed_date = { from = "detail", css = "span.listed", type = "date" }
ownership = { from = "detail", css = "span.own" }
heading = { from = "page", css = "h1" }
"""


@pytest.fixture
def detail_extractor(tmp_path, engine) -> Extractor:
    path = tmp_path / "detail.toml"
    path.write_text(DETAIL_CONFIG, encoding="utf-8")
    return unit_extractor(str(path), engine)


def test_detail_merge_carries_list_fields_through_meta(detail_extractor):
    ex = detail_extractor
    listing = ('<html><body><h1>list heading</h1><ul>'
               '<li class="item" data-id="7"><a class="go" href="/d/7.html#photos">Flat 7</a><span class="price">1.5</span></li>'
               '<li class="item" data-id="8"><a class="go" href="/elsewhere/8">no detail</a></li>'
               '<li class="item" data-id="9"><span class="price">2</span></li>'
               '</ul></body></html>')
    parsed = ex.parse(page_of(Request(f"{BASE}/list/", "list"), listing))
    assert parsed.rows == []
    assert parsed.keyless == 2 and parsed.skipped == 0  # items without a (matching) detail link
    assert len(parsed.links) == 1
    req = parsed.links[0]
    assert req.url == f"{BASE}/d/7.html" and req.kind == "detail"
    # from = "page": the list page the item is on (read once per page), carried along like item fields
    assert {k: v for k, v in req.meta.items() if k != "list_hash"} == \
        {"key": "7", "raw": {"title": "Flat 7", "total_price": "1.5", "heading": "list heading"}}
    assert len(req.meta["list_hash"]) == 16  # what a re-run compares to skip the detail page (etl/incremental.py)
    detail = ('<html><body><h1>Flat 7 detail</h1><div class="area"><a>朝阳</a></div>'
              '<span class="listed">2024/3/5</span><span class="own">商品房</span></body></html>')
    result = ex.parse(page_of(req, detail))
    assert result.error is None and result.links == []
    assert result.rows == [{
        "source": "unit", "listing_id": "7", "title": "Flat 7", "total_price": Decimal(15000), "district": "朝阳",
        "listed_date": dt.date(2024, 3, 5), "url": f"{BASE}/d/7.html",
        "extras": {"ownership": "商品房", "heading": "list heading"},
    }]


def test_page_field_of_a_detail_page_reached_without_a_list_is_read_there(detail_extractor):
    req = Request(f"{BASE}/d/7.html", "detail", {"key": "7", "raw": {"title": "Flat 7"}})
    result = detail_extractor.parse(page_of(req, "<html><body><h1>Flat 7 detail</h1></body></html>"))
    assert result.rows[0]["extras"]["heading"] == "Flat 7 detail"


def test_detail_page_missing_detail_fields_gives_none(detail_extractor):
    req = Request(f"{BASE}/d/7.html", "detail", {"key": "7", "raw": {"title": "Flat 7", "total_price": None}})
    result = detail_extractor.parse(page_of(req, "<html><body><p>gone</p></body></html>"))
    row = result.rows[0]
    assert row["title"] == "Flat 7" and row["total_price"] is None and row["district"] is None
    assert row["listed_date"] is None and row["extras"] == {"ownership": None, "heading": None}


# ---------------------------------------------------------------------------------------------- engine parity


def visible_text(engine: str, html: str) -> str:
    from etl.parse.engines import parse_html

    return parse_html(html, engine).css_first("div.x").text()


def test_text_is_whitespace_collapsed_identically(engine):
    html = '<div class="x">\n  a&nbsp;&nbsp;b\t<b>c</b><br>d <!-- note --> e\u3000f </div>'
    assert visible_text(engine, html) == "a b cd e f"


@pytest.mark.parametrize("html", [
    '<div class="x">  one\n text\u3000child  </div>',  # one text child: lexbor's quick path
    '<div class="x"><!-- c -->after a comment</div>',
    '<div class="x">text<!-- c --></div>',
    '<div class="x"></div>',
    '<div class="x"><span>only an element</span></div>',
    '<div class="x">a&amp;b&nbsp;c</div>',
])
def test_an_element_with_one_text_child_reads_the_same_on_both_engines(html):
    assert visible_text("selectolax", html) == visible_text("bs4", html)


@pytest.mark.parametrize("engine_", ["selectolax", "bs4"])
def test_text_excludes_script_and_style_on_both_engines(engine_):
    html = '<div class="x">523<script>var p = 1;</script><style>.a{}</style>万</div>'
    assert visible_text(engine_, html) == "523万"


def test_blank_key_is_skipped(engine, unit_cfg_path):
    body = ('<html><body><ul class="items"><li data-id="">a</li><li data-id="  ">b</li>'
            '<li data-id="3">c</li></ul></body></html>')
    parsed = parse_sub(unit_cfg_path, engine, body)
    assert [r["listing_id"] for r in parsed.rows] == ["3"]
    assert parsed.keyless == 2 and parsed.skipped == 0


def test_unjoinable_or_overlong_links_are_skipped_not_fatal():
    from etl.parse.extract import MAX_URL, absolute

    assert absolute(f"{BASE}/list/", "http://[::1/x") is None
    assert absolute(f"{BASE}/list/", "/d/" + "x" * MAX_URL) is None
    assert absolute(f"{BASE}/list/", "../d/7.html#photos") == f"{BASE}/d/7.html"


def test_a_body_still_compressed_says_so():
    import os

    ex = demo_extractor("selectolax")
    page = Page(Request(f"{BASE}/x", "detail", {"key": "1"}), f"{BASE}/x", 200,
                {"content-type": "text/html", "content-encoding": "br"}, os.urandom(3000))
    assert "Content-Encoding: br" in ex.parse(page).error


def test_url_fields_are_made_absolute_against_the_page_they_were_read_on(detail_extractor):
    ex = Extractor(config.load(detail_extractor.cfg.path, ["run.engine=selectolax", 'fields.agent.css=a.agent',
                                                           'fields.agent.attr=href', 'fields.agent.type=url',
                                                           'fields.photo.css=img', 'fields.photo.attr=src',
                                                           'fields.photo.type=url', 'fields.photo.from=detail'],
                               database_url="sqlite://"), DOMAINS)
    listing = ('<html><body><ul><li class="item" data-id="7"><a class="go" href="/d/7.html">Flat 7</a>'
               '<a class="agent" href="../agents/3.html">agent</a></li></ul></body></html>')
    req = ex.parse(page_of(Request(f"{BASE}/list/a/", "list"), listing)).links[0]
    assert req.meta["raw"]["agent"] == f"{BASE}/list/agents/3.html"  # against the list page, not the detail
    row = ex.parse(page_of(req, '<html><body><img src="img/7.jpg"></body></html>')).rows[0]
    assert row["extras"]["agent"] == f"{BASE}/list/agents/3.html"
    assert row["extras"]["photo"] == f"{BASE}/d/img/7.jpg"

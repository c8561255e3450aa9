"""Fast unit tests of the bundled demo listings site: determinism, markup contract, facets, server."""

from __future__ import annotations

import datetime as dt
import json
import re
import urllib.error
import urllib.request
from collections import Counter
from decimal import Decimal
from functools import cache

import pytest

from etl.demo.server import DemoServer
from etl.demo.site import DemoSite, SiteOptions

HID = re.compile(r'data-lj_action_housedel_id="(\d{12})"')
KEYS = {"listing_id", "city", "district", "subdistrict", "community", "title", "rooms", "halls", "area_m2",
        "orientation", "decoration", "floor_level", "total_floors", "year_built", "total_price", "unit_price",
        "listed_date", "url", "extras"}


@cache
def site(**kw) -> DemoSite:
    return DemoSite(SiteOptions(**kw))


def get(s: DemoSite, path: str, status: int = 200) -> bytes:
    code, _, body = s.render(path)
    assert code == status, path
    return body


def sample_paths(s: DemoSite, city: str = "bj") -> list[str]:
    m = s.model(city)
    big = max(range(len(m.districts)), key=lambda d: len(m.district_subs[d]))
    sub = m.district_subs[big][0]
    last = -(-len(m.by_sub[sub]) // 30)
    return [f"/{city}/ershoufang/", f"/{city}/ershoufang/pg100/", f"/{city}/ershoufang/{m.districts[big][1]}/",
            f"/{city}/ershoufang/{m.subs[sub][1]}/", f"/{city}/ershoufang/{m.subs[sub][1]}/pg{last}/",
            f"/{city}/ershoufang/{m.subs[sub][1]}/pg{last + 1}/",
            *(f"/{city}/ershoufang/{m.listings[i].id}.html" for i in (0, 7, len(m.listings) - 1))]


def test_deterministic_and_cities_differ() -> None:
    a, b = DemoSite(SiteOptions(listings=300)), DemoSite(SiteOptions(listings=300))
    assert a.truth("bj") == b.truth("bj")
    for p in sample_paths(a):
        assert a.render(p) == b.render(p)
    bj, sh = a.truth("bj"), a.truth("sh")
    assert not {r["listing_id"] for r in bj} & {r["listing_id"] for r in sh}
    assert {r["district"] for r in bj} != {r["district"] for r in sh}
    assert DemoSite(SiteOptions(listings=300, seed=1)).truth("bj") != bj


@pytest.mark.parametrize("enc", ["utf-8", "gbk"])
@pytest.mark.parametrize("city", ["bj", "anything"])
def test_page_weight_and_encoding(enc: str, city: str) -> None:
    s = site(encoding=enc, pagination="links")
    for p in sample_paths(s, city):
        code, headers, body = s.render(p)
        assert code == 200
        assert 40_000 <= len(body) <= 80_000, (p, len(body))
        text = body.decode(enc)
        text.encode("gbk")  # every page must be GBK-encodable
        assert f'<meta http-equiv="Content-Type" content="text/html; charset={enc}">' in text
        if enc == "gbk":
            assert headers["Content-Type"] == "text/html"
        else:
            assert headers["Content-Type"] == "text/html; charset=utf-8"


def test_facets_are_required_at_5000() -> None:
    s = site()
    rows = s.truth("bj")
    assert len(rows) == 5000 > 3000
    per_sub = Counter((r["district"], r["subdistrict"]) for r in rows)
    per_district = Counter(r["district"] for r in rows)
    assert max(per_sub.values()) <= 3000
    assert max(per_district.values()) > 3000
    assert 5 <= len(per_district) <= 12
    m = s.model("bj")
    assert all(2 <= len(subs) <= 8 for subs in m.district_subs)
    slugs = [sl for _, sl in m.districts] + [sl for _, sl, _ in m.subs]
    assert len(slugs) == len(set(slugs)) and all(re.fullmatch(r"[a-z]+[0-9]*", x) for x in slugs)


@pytest.mark.parametrize("n", [200, 1000, 20000])
def test_subdistricts_fit_cap_at_other_sizes(n: int) -> None:
    m = site(listings=n).model("gz")
    assert sum(map(len, m.by_sub)) == n
    assert max(map(len, m.by_sub)) <= 3000


def test_truth_shape_and_summary() -> None:
    s = site()
    rows = s.truth("sh")
    assert len(rows) == 5000 and len({r["listing_id"] for r in rows}) == 5000
    for r in rows:
        assert set(r) == KEYS and r["city"] == "sh"
        assert re.fullmatch(r"\d{12}", r["listing_id"]) and r["url"] == f"/sh/ershoufang/{r['listing_id']}.html"
        assert isinstance(r["total_price"], Decimal) and isinstance(r["listed_date"], dt.date)
        assert isinstance(r["area_m2"], float) and isinstance(r["unit_price"], int)
        assert 1 <= r["rooms"] <= 6 and 0 <= r["halls"] <= 3
        assert r["floor_level"] in (None, "高", "中", "低") and set(r["extras"]) == {"elevator", "ownership"}
    assert any(r["year_built"] is None for r in rows) and any(r["orientation"] is None for r in rows)
    assert any(r["decoration"] is None for r in rows) and any(r["decoration"] == "其他" for r in rows)
    assert any(r["total_price"] % 10000 for r in rows)  # some "523.5"万 prices
    assert any("DROP TABLE" in r["title"] for r in rows) and any("<" in r["title"] for r in rows)
    summary = s.district_summary("sh")
    assert sum(d["count"] for d in summary) == 5000
    for d in summary:
        prices = [r["unit_price"] for r in rows if r["district"] == d["district"]]
        assert d["count"] == len(prices)
        assert d["avg_unit_price"] == pytest.approx(sum(prices) / len(prices), abs=0.01)


def test_walking_subdistricts_reaches_every_listing() -> None:
    s = site()
    m = s.model("bj")
    seen: list[str] = []
    city_page = get(s, "/bj/ershoufang/").decode()
    for d_slug in re.findall(r'<a href="/bj/ershoufang/([a-z0-9]+)/" title="北京', city_page):
        d_page = get(s, f"/bj/ershoufang/{d_slug}/").decode()
        facet = re.search(r'<div data-role="ershoufang"><div>.*?</div><div>(.*?)</div></div>', d_page).group(1)
        for sub_slug in re.findall(r'href="/bj/ershoufang/([a-z0-9]+)/"', facet):
            page = 1
            while True:
                html = get(s, f"/bj/ershoufang/{sub_slug}/pg{page}/").decode()
                ids = HID.findall(html)
                if not ids:
                    break
                seen.extend(ids)
                page += 1
    assert len(seen) == len(set(seen)) == 5000
    assert set(seen) == {r["listing_id"] for r in s.truth("bj")}
    city_ids = {i for p in range(1, 101) for i in HID.findall(get(s, f"/bj/ershoufang/pg{p}/").decode())}
    assert len(city_ids) == 3000  # the city list alone is capped
    assert len(m.listings) == 5000


def test_ads_and_promos_have_no_housedel_id() -> None:
    html = get(site(), "/bj/ershoufang/pg2/").decode()
    items = re.findall(r"<li class=\"([^\"]*)\"([^>]*)>", html[html.index("sellListContent"):])
    ads = [attrs for cls, attrs in items if "ad-item" in cls]
    promos = [attrs for cls, attrs in items if "list_app_daoliu" in cls]
    assert ads and promos
    assert all("housedel" not in a for a in ads + promos)
    assert len(HID.findall(html)) == 30


def test_routing_and_pagination_modes() -> None:
    s = site()
    m = s.model("bj")
    sub = m.subs[m.district_subs[0][0]][1]
    assert get(s, "/robots.txt").decode().startswith("User-agent: *")
    for bad in ("/bj/ershoufang/pg101/", "/bj/ershoufang/pg0/", "/bj/ershoufang/nosuchplace/", "/nope",
                "/bj/ershoufang/000000000000.html", f"/bj/ershoufang/{sub}/pg101/"):
        get(s, bad, 404)
    html = get(s, "/bj/ershoufang/pg3/?x=1").decode()
    data = json.loads(re.search(r"page-data='([^']+)'", html).group(1))
    assert data == {"totalPage": 100, "curPage": 3} and 'page-url="/bj/ershoufang/pg{page}/"' in html
    assert "下一页" not in html
    links = get(site(pagination="links"), "/bj/ershoufang/pg3/").decode()
    assert '<a class="next" href="/bj/ershoufang/pg4/">' in links and 'href="/bj/ershoufang/pg100/">100<' in links
    assert 'href="/bj/ershoufang/pg50/"' not in links
    nxt = site(pagination="next")
    assert '<a class="next" href="/bj/ershoufang/pg100/">' in get(nxt, "/bj/ershoufang/pg99/").decode()
    assert 'class="next"' not in get(nxt, "/bj/ershoufang/pg100/").decode()
    assert DemoSite(SiteOptions(listings=200, detail_pages=False)).render("/bj/ershoufang/pg1/")[0] == 200
    lid = site(listings=200).truth("bj")[0]["listing_id"]
    assert DemoSite(SiteOptions(listings=200, detail_pages=False)).render(f"/bj/ershoufang/{lid}.html")[0] == 404


def _parse_house_info(text: str) -> dict:
    parts = [p.strip() for p in text.split("|")]
    rooms, halls = map(int, re.fullmatch(r"(\d)室(\d)厅", parts[0]).groups())
    out = {"rooms": rooms, "halls": halls, "area_m2": float(parts[1].removesuffix("平米")),
           "orientation": None if parts[2] == "暂无数据" else parts[2], "decoration": None, "year_built": None}
    for p in parts[3:]:
        if p in ("精装", "简装", "毛坯", "其他"):
            out["decoration"] = p
        elif fm := re.search(r"共(\d+)层", p):
            lvl = re.match(r"([高中低])楼层", p)
            out["floor_level"], out["total_floors"] = (lvl.group(1) if lvl else None), int(fm.group(1))
        elif ym := re.fullmatch(r"(\d{4})年建", p):
            out["year_built"] = int(ym.group(1))
    return out


def test_documented_selectors_match_truth() -> None:
    lexbor = pytest.importorskip("selectolax.lexbor")
    s = site(encoding="gbk")
    truth = {r["listing_id"]: r for r in s.truth("bj")}
    m = s.model("bj")
    checked = 0
    for sub in range(len(m.subs)):
        tree = lexbor.LexborHTMLParser(get(s, f"/bj/ershoufang/{m.subs[sub][1]}/").decode("gbk"))
        district = tree.css_first('div[data-role="ershoufang"] > div:nth-of-type(1) a.selected').text()
        for li in tree.css("ul.sellListContent > li[data-lj_action_housedel_id]"):
            t = truth[li.attributes["data-lj_action_housedel_id"]]
            got = {"district": district, "title": li.css_first("div.title a").text(),
                   "url": li.css_first("div.title a").attributes["href"],
                   "community": li.css_first("div.positionInfo a:nth-of-type(1)").text().strip(),
                   "subdistrict": li.css_first("div.positionInfo a:nth-of-type(2)").text(),
                   "total_price": Decimal(li.css_first("div.totalPrice span").text()) * 10000,
                   "unit_price": int(li.css_first("div.unitPrice").attributes["data-price"]),
                   **_parse_house_info(li.css_first("div.houseInfo").text())}
            assert got == {k: t[k] for k in got}
            checked += 1
    assert checked > 100
    for r in list(truth.values())[:40]:
        tree = lexbor.LexborHTMLParser(get(s, r["url"]).decode("gbk"))
        base = {li.attributes["data-field"]: li for li in tree.css("div.base li[data-field]")}
        trans = {li.attributes["data-field"]: li.css_first("span:nth-of-type(2)").text()
                 for li in tree.css("div.transaction li[data-field]")}
        elevator = re.fullmatch(r"配备电梯(.*)", base["elevator"].text()).group(1)
        assert dt.date.fromisoformat(trans["listed"]) == r["listed_date"]
        assert {"elevator": None if elevator == "暂无数据" else elevator, "ownership": trans["ownership"]} == r["extras"]
        assert tree.css_first("h1.main").text() == r["title"]
        assert Decimal(tree.css_first("div.price span.total").text()) * 10000 == r["total_price"]
        assert int(re.match(r"\d+", tree.css_first("span.unitPriceValue").text()).group()) == r["unit_price"]
        assert re.match(r"\d{12}", tree.css_first("div.houseRecord span.info").text()).group() == r["listing_id"]
        names = [a.text() for a in tree.css("div.areaName span.info a")]
        assert names == [r["district"], r["subdistrict"]]
        assert tree.css_first("div.communityName a.info").text() == r["community"]

def extra_app(path: str) -> tuple[int, dict[str, str], bytes] | None:
    """Stand-in for another section plugged in via extra_apps."""
    return (200, {"Content-Type": "text/plain"}, b"extra") if path.startswith("/news/") else None


def test_server_serves_pages_over_http() -> None:
    lid = site(listings=300, encoding="gbk").truth("bj")[3]["listing_id"]
    with DemoServer(SiteOptions(listings=300, encoding="gbk"), extra_apps=(f"{__name__}:extra_app",)) as srv:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", srv.base_url)
        with urllib.request.urlopen(f"{srv.base_url}/bj/ershoufang/{lid}.html", timeout=10) as resp:
            body = resp.read()
            assert resp.status == 200 and resp.headers["Content-Type"] == "text/html"
            assert int(resp.headers["Content-Length"]) == len(body)
        assert lid in body.decode("gbk")
        head = urllib.request.Request(f"{srv.base_url}/robots.txt", method="HEAD")
        with urllib.request.urlopen(head, timeout=10) as resp:
            assert resp.status == 200 and resp.read() == b""
        with urllib.request.urlopen(f"{srv.base_url}/news/1", timeout=10) as resp:
            assert resp.read() == b"extra"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{srv.base_url}/missing", timeout=10)
        assert err.value.code == 404
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{srv.base_url}/robots.txt", timeout=2)

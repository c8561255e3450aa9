"""The demo server's validators and conditional GETs (etl/demo/conditional.py): every page has an ETag (a
hash of its body) and a Last-Modified (the day, or the listing's last change); a client's current copy is
answered 304 with no body — HTML pages, the JSON API and the extra apps alike."""

from __future__ import annotations

import datetime as dt
import http.client
import urllib.parse
from email.utils import parsedate_to_datetime

import pytest

from etl.demo import conditional, days
from etl.demo.server import DemoServer
from etl.demo.site import DemoSite, SiteOptions

OPTIONS = SiteOptions(listings=400, encoding="gbk", day=2)


def extra_app(path: str) -> tuple[int, dict[str, str], bytes] | None:
    return (200, {"Content-Type": "text/plain"}, b"extra") if path.startswith("/extra/") else None


def fetch(base: str, path: str, method: str = "GET", **headers: str) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection: status, headers and the raw body as sent."""
    conn = http.client.HTTPConnection(urllib.parse.urlsplit(base).netloc, timeout=10)
    try:
        conn.request(method, path, headers={k.replace("_", "-"): v for k, v in headers.items()})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def server():
    with DemoServer(OPTIONS, extra_apps=(f"{__name__}:extra_app",)) as srv:
        yield srv.base_url


def paths() -> list[str]:
    s = DemoSite(OPTIONS)
    m = s.model("bj")
    lid = m.listings[5].id
    return ["/bj/ershoufang/", f"/bj/ershoufang/{m.subs[0][1]}/pg2/", f"/bj/ershoufang/{lid}.html",
            "/api/bj/listings?page=2", f"/api/bj/listings/{lid}", "/robots.txt", "/extra/x"]


@pytest.mark.parametrize("path", paths())
def test_every_page_has_validators_and_answers_304_when_current(server: str, path: str) -> None:
    status, headers, body = fetch(server, path)
    assert status == 200 and body
    assert headers["ETag"] == conditional.etag(body)
    assert headers["Last-Modified"].endswith(" 00:00:00 GMT")
    tag, modified = headers["ETag"], headers["Last-Modified"]
    for method in ("GET", "HEAD"):
        for cond in ({"If-None-Match": tag}, {"If-None-Match": f'"other", W/{tag}'}, {"If-None-Match": "*"},
                     {"If-Modified-Since": modified}):
            got, h, raw = fetch(server, path, method, **cond)
            assert (got, raw) == (304, b""), (method, cond)
            assert h["ETag"] == tag and h["Last-Modified"] == modified and "Content-Length" not in h
    day_before = conditional.http_date(parsedate_to_datetime(modified).date() - dt.timedelta(days=1))
    for cond in ({"If-None-Match": '"other"'}, {"If-Modified-Since": day_before},
                 {"If-Modified-Since": "not a date"},
                 {"If-None-Match": '"other"', "If-Modified-Since": modified}):  # the tag decides when present
        got, h, raw = fetch(server, path, **cond)
        assert (got, raw) == (200, body), cond


def test_errors_are_never_conditional(server: str) -> None:
    status, headers, _ = fetch(server, "/bj/ershoufang/000000000000.html", **{"If-None-Match": "*"})
    assert status == 404 and "ETag" not in headers


def test_last_modified_is_the_day_or_the_listings_last_change(server: str) -> None:
    s = DemoSite(OPTIONS)
    changed = {c["listing_id"] for c in days.site_changes(OPTIONS, "bj", 1, 2)}
    m = s.model("bj")
    day = conditional.http_date(days.day_date(2))
    assert fetch(server, "/bj/ershoufang/")[1]["Last-Modified"] == day
    assert fetch(server, "/api/bj/listings")[1]["Last-Modified"] == day
    for li in m.listings:
        path = f"/bj/ershoufang/{li.id}.html"
        if str(li.id) in changed:
            assert fetch(server, path)[1]["Last-Modified"] == day
        elif li.changed == 0:  # never changed: the day it was listed
            assert s.render(path)[1]["Last-Modified"] == conditional.http_date(dt.date.fromordinal(li.listed))
    unchanged = next(li for li in m.listings if li.changed == 0 and li.listed < m.today)
    got = fetch(server, f"/api/bj/listings/{unchanged.id}")[1]["Last-Modified"]
    assert got == s.render(f"/bj/ershoufang/{unchanged.id}.html")[1]["Last-Modified"] != day


def test_a_page_unchanged_between_days_keeps_its_etag_and_a_changed_one_does_not() -> None:
    before, after = DemoSite(SiteOptions(listings=400, day=1)), DemoSite(SiteOptions(listings=400, day=2))
    kinds = {c["listing_id"]: c["change"] for c in days.site_changes(OPTIONS, "bj", 1, 2)}
    same = next(li for li in after.model("bj").listings if str(li.id) not in kinds)
    moved = next(lid for lid, k in kinds.items() if k == "price")
    page = f"/bj/ershoufang/{same.id}.html"
    assert conditional.etag(before.render(page)[2]) == conditional.etag(after.render(page)[2])
    page = f"/bj/ershoufang/{moved}.html"
    assert conditional.etag(before.render(page)[2]) != conditional.etag(after.render(page)[2])

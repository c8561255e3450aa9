"""The demo portal's JSON API: every pagination style walks exactly the listings the HTML site serves,
the detail object carries the rest of the truth, bad parameters are 400 — and the `json` source crawls it
into listings equal to the truth (config/demo-api.toml)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from etl import config
from etl.demo.site import DemoSite, SiteOptions
from etl.pipeline import run_job
from etl.progress import Progress
from tests.conftest import ROOT
from tests.test_e2e_listings import assert_matches_truth

SITE = DemoSite(SiteOptions(listings=1000))


def get(path: str) -> tuple[int, dict]:
    status, headers, body = SITE.render(path)
    assert headers["Content-Type"].startswith("application/json")
    return status, json.loads(body)


def walk(style: str) -> list[dict]:
    items: list[dict] = []
    if style == "page":
        for page in range(1, 100):
            _, doc = get(f"/api/bj/listings?page={page}&size=37")
            items += doc["data"]["items"]
            if page >= doc["data"]["pages"]:
                break
    elif style == "offset":
        offset = 0
        while True:
            _, doc = get(f"/api/bj/listings/offset?offset={offset}&limit=100")
            if not doc["results"]:
                break
            items += doc["results"]
            offset += len(doc["results"])
    elif style == "cursor":
        path = "/api/bj/listings/cursor"
        while path:
            _, doc = get(path)
            items += doc["items"]
            path = f"/api/bj/listings/cursor?cursor={doc['next_cursor']}" if doc["next_cursor"] else None
    else:
        path = "/api/bj/listings/next?size=64"
        while path:
            _, doc = get(path)
            items += doc["results"]
            path = doc["next"]
    return items


@pytest.mark.parametrize("style", ["page", "offset", "cursor", "next"])
def test_every_style_walks_exactly_the_truth(style: str) -> None:
    truth = SITE.truth("bj")
    items = walk(style)
    assert [i["id"] for i in items] == [t["listing_id"] for t in truth]  # each once, in the site's order
    for item, t in zip(items, truth, strict=True):
        assert item["title"] == t["title"] and item["location"]["community"] == t["community"]
        assert Decimal(str(item["price"]["total_wan"])) * 10000 == t["total_price"]
        assert (item["layout"]["rooms"], item["floor"]["total"], item["year_built"]) == (
            t["rooms"], t["total_floors"], t["year_built"])
        assert item["detail_url"] == t["url"]


def test_the_detail_object_carries_the_rest_of_the_truth() -> None:
    for t in SITE.truth("bj")[::97]:
        status, doc = get(f"/api/bj/listings/{t['listing_id']}")
        assert status == 200
        assert doc["district"] == t["district"] and doc["listed_date"] == t["listed_date"].isoformat()
        assert {"elevator": doc["elevator"], "ownership": doc["ownership"]} == t["extras"]
    assert b"\\u" in SITE.render(f"/api/bj/listings/{t['listing_id']}")[2]  # escaped, unlike the lists


@pytest.mark.parametrize("path, status", [
    ("/api/bj/listings?page=0", 400), ("/api/bj/listings?page=x", 400), ("/api/bj/listings/offset?limit=-1", 400),
    ("/api/bj/listings/cursor?cursor=%%%", 400), ("/api/bj/listings/cursor?cursor=bm9wZQ", 400),
    ("/api/bj/listings/999999999999", 404), ("/api/bj/houses", 404),
])
def test_bad_requests(path: str, status: int) -> None:
    got, doc = get(path)
    assert got == status and "error" in doc


def test_past_the_end_is_an_empty_page_and_size_is_capped() -> None:
    assert get("/api/bj/listings?page=999")[1]["data"]["items"] == []
    assert len(get("/api/bj/listings?size=1000")[1]["data"]["items"]) == 100


@pytest.mark.parametrize("backend", ["sqlite_url", pytest.param("pg_url", marks=pytest.mark.postgres),
                                     pytest.param("mysql_url", marks=pytest.mark.mysql)])
def test_json_source_crawls_the_api_into_the_truth(backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(backend)
    cfg = config.load(ROOT / "config/demo-api.toml", ["source.demo.listings=2000"], database_url=url)
    state, stats = run_job(cfg, progress=Progress(enabled=False))
    assert state.status == "succeeded" and stats.pages_failed == 0
    assert_matches_truth(url, listings=2000)

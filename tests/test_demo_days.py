"""The demo site from day to day (etl/demo/days.py): day 0 is the generated site; day N's pages, truth and
`etl demo changes` agree; the rates are those documented; removed listings 404 and some come back; a run
with `--set day=N` crawls day N."""

from __future__ import annotations

import json
import re
import tomllib
from collections import Counter
from decimal import Decimal
from functools import cache

import pytest

from etl import cli, config
from etl.demo import days
from etl.demo.names import build_city
from etl.demo.site import DemoSite, SiteOptions
from tests.conftest import ROOT
from tests.test_e2e_listings import table

HID = re.compile(r'data-lj_action_housedel_id="(\d{12})"')


@cache
def site(**kw) -> DemoSite:
    return DemoSite(SiteOptions(**{"encoding": "gbk", **kw}))


@cache
def truth(day: int = 0, listings: int = 5000, city: str = "bj") -> dict[str, dict]:
    return {t["listing_id"]: t for t in site(listings=listings, day=day).truth(city)}


def diff(a: dict[str, dict], b: dict[str, dict]) -> dict[str, tuple[str, dict | None, dict | None]]:
    """The changes between two truths, computed from the truths alone."""
    out = {}
    for lid in a.keys() | b.keys():
        old, new = a.get(lid), b.get(lid)
        if old is None or new is None:
            out[lid] = ("new/relisted" if old is None else "removed", old, new)
        elif old != new:
            out[lid] = ("price", old, new)
    return out


def changes_cli(capsys, *args: str) -> list[dict]:
    assert cli.main(["demo", "changes", *args]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_day_zero_is_the_generated_site() -> None:
    plain, day0 = DemoSite(SiteOptions(listings=400)), DemoSite(SiteOptions(listings=400, day=0))
    assert plain.truth("bj") == day0.truth("bj") == DemoSite(SiteOptions(listings=400)).truth("bj")
    assert day0.model("bj").listings == build_city(SiteOptions(listings=400), "bj").listings
    m = plain.model("bj")
    for path in ("/bj/ershoufang/", f"/bj/ershoufang/{m.subs[0][1]}/", f"/bj/ershoufang/{m.listings[3].id}.html",
                 "/api/bj/listings?page=2"):
        assert plain.render(path) == day0.render(path)


def test_changes_equal_the_difference_of_the_truths(capsys) -> None:
    rows = changes_cli(capsys, "--from", "0", "--to", "1")
    got = {r["listing_id"]: r for r in rows}
    want = diff(truth(0), truth(1))
    assert set(got) == set(want) and len(rows) == len(got)
    assert [r["listing_id"] for r in rows] == sorted(got, reverse=True)  # the lists' order
    for lid, (kind, old, new) in want.items():
        r = got[lid]
        assert r["change"] in kind.split("/")
        if kind == "price":  # nothing but the two prices moved
            assert {k: v for k, v in old.items() if "price" not in k} == {k: v for k, v in new.items()
                                                                         if "price" not in k}
            assert old["total_price"] != new["total_price"] and old["unit_price"] != new["unit_price"]
        for side, t in (("old", old), ("new", new)):
            assert r[f"{side}_total_price"] == (None if t is None else str(t["total_price"]))
            assert r[f"{side}_unit_price"] == (None if t is None else t["unit_price"])
    area = {lid: t["area_m2"] for lid, t in truth(1).items()}
    for r in rows:  # the unit price is the total over the area, rounded as the site rounds
        if r["new_total_price"] is not None:
            assert r["new_unit_price"] == round(int(r["new_total_price"]) / area[r["listing_id"]])


def test_rates_on_the_default_site() -> None:
    counts: Counter[str] = Counter()
    for day in range(1, 11):
        kinds = Counter(c["change"] for c in days.site_changes(SiteOptions(), "bj", day - 1, day))
        assert 0.007 * 5000 <= kinds["price"] <= 0.013 * 5000
        assert 0.003 * 5000 <= kinds["new"] <= 0.007 * 5000
        assert 0.003 * 5000 <= kinds["removed"] <= 0.008 * 5000
        assert kinds["relisted"] <= 10  # a few
        counts += kinds
    assert counts["relisted"] > 0
    assert abs(len(truth(10)) - 5000) < 50  # the site keeps its size


def test_a_listing_that_disappears_and_comes_back() -> None:
    back = next((day, c) for day in range(2, 15) for c in days.site_changes(SiteOptions(), "bj", day - 1, day)
                if c["change"] == "relisted")
    day, row = back
    lid = row["listing_id"]
    assert lid not in truth(day - 1) and lid in truth(day)
    removed_on = next(d for d in range(day - 1, 0, -1) if lid in truth(d - 1) and lid not in truth(d))
    assert site(day=removed_on).render(f"/bj/ershoufang/{lid}.html")[0] == 404
    assert site(day=removed_on).render(f"/api/bj/listings/{lid}")[0] == 404
    assert site(day=day).render(f"/bj/ershoufang/{lid}.html")[0] == 200
    assert {r["listing_id"]: r["change"] for r in days.site_changes(SiteOptions(), "bj", removed_on, day)}[lid] \
        == "relisted"
    before, after = truth(removed_on - 1)[lid], truth(day)[lid]
    assert {k: v for k, v in before.items() if "price" not in k} == {k: v for k, v in after.items()
                                                                     if "price" not in k}  # the same listing
    assert after["total_price"] <= before["total_price"]  # back at the old price or a cut one


def test_new_listings_are_newest_and_listed_on_the_day() -> None:
    new = [r for r in days.site_changes(SiteOptions(), "bj", 0, 3) if r["change"] == "new"]
    assert new and max(map(int, truth(0))) < min(int(r["listing_id"]) for r in new)
    for r in new:
        assert days.day_date(1) <= truth(3)[r["listing_id"]]["listed_date"] <= days.day_date(3)
    first = HID.findall(site(day=3).render("/bj/ershoufang/")[2].decode("gbk"))
    assert len(new) > 30 and first == sorted((r["listing_id"] for r in new), reverse=True)[:30]  # page 1: the newest


def test_pages_facets_and_api_serve_the_day() -> None:
    s, want = site(day=3), truth(3)
    seen: list[str] = []
    m = s.model("bj")
    for sub in range(len(m.subs)):
        page, ids = 1, [""]
        while ids:
            html = s.render(f"/bj/ershoufang/{m.subs[sub][1]}/pg{page}/")[2].decode("gbk")
            if page == 1:  # the facet's total is the day's count
                assert int(re.search(r"<span> (\d+) </span>", html).group(1)) == sum(
                    1 for t in want.values() if t["subdistrict"] == m.subs[sub][0])
            ids = HID.findall(html)
            seen += ids
            page += 1
    assert sorted(seen) == sorted(want)
    for name, slug in m.districts:  # district facet totals
        html = s.render(f"/bj/ershoufang/{slug}/")[2].decode("gbk")
        assert int(re.search(r"<span> (\d+) </span>", html).group(1)) == sum(
            1 for t in want.values() if t["district"] == name)
    api = json.loads(s.render("/api/bj/listings?size=100")[2])["data"]
    assert api["total"] == len(want) and [i["id"] for i in api["items"]] == list(want)[:100]
    for lid, (kind, _, new) in diff(truth(2), want).items():
        if kind != "price":
            continue
        detail = s.render(new["url"])[2].decode("gbk")
        assert f'<span class="total">{Decimal(new["total_price"]) / 10000:f}'.rstrip("0").rstrip(".") in detail
        assert f'<span class="unitPriceValue">{new["unit_price"]}<i>' in detail
        doc = json.loads(s.render(f"/api/bj/listings/{lid}")[2])
        assert doc["price"]["unit"] == new["unit_price"]


def test_a_day_depends_on_the_seed_and_the_day_only() -> None:
    a = DemoSite(SiteOptions(listings=800, day=7)).truth("sh")
    assert a == DemoSite(SiteOptions(listings=800, day=7, encoding="gbk", pagination="links")).truth("sh")
    assert a != DemoSite(SiteOptions(listings=800, day=7, seed=1)).truth("sh")
    assert a != DemoSite(SiteOptions(listings=800, day=6)).truth("sh")
    models = days.day_models(build_city(SiteOptions(listings=800), "sh"), 0, 3000, {3, 7})
    assert [li.id for li in models[7].listings] == [int(t["listing_id"]) for t in a]


def test_truth_cli_takes_a_day(capsys) -> None:
    assert cli.main(["demo", "truth", "--listings", "300", "--day", "4"]) == 0
    rows = [json.loads(line)["listing_id"] for line in capsys.readouterr().out.splitlines()]
    assert rows == list(truth(4, 300)) != list(truth(0, 300))


@pytest.mark.parametrize("args", [["truth", "--day", "-1"], ["truth", "--day", "x"], ["serve", "--day", "99999"],
                                  ["changes", "--to", "-3"]])
def test_bad_days_are_usage_errors(args: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", *args])
    assert exc.value.code == 2


def test_changes_refuses_backwards_days(capsys) -> None:
    assert cli.main(["demo", "changes", "--from", "3", "--to", "1"]) == 2
    assert "before" in capsys.readouterr().err


def test_changes_default_to_the_demo_configs_site() -> None:
    demo = tomllib.loads((ROOT / "config/demo.toml").read_text())["source"]["demo"]
    args = cli.build_parser().parse_args(["demo", "changes"])
    assert (args.listings, args.seed, args.from_day, args.to_day) == (demo["listings"], demo.get("seed", 0), 0, None)
    assert demo["day"] == 0


@pytest.mark.parametrize("value, ok", [("1", True), ("0", True), ("abc", False), ("-1", False), ("true", False),
                                       ("1.5", False)])
def test_set_day_is_checked(value: str, ok: bool) -> None:
    if ok:
        assert config.load(ROOT / "config/demo.toml", [f"day={value}"]).demo["day"] == int(value)
    else:
        with pytest.raises(config.ConfigError, match=r"\[source.demo\].day"):
            config.load(ROOT / "config/demo.toml", [f"day={value}"])


def test_run_with_set_day_crawls_that_day(sqlite_url: str, capsys) -> None:
    assert truth(1, 300) != truth(0, 300)  # the small site does change overnight
    code = cli.main(["run", str(ROOT / "config/demo.toml"), "--db", sqlite_url, "--quiet",
                     "--set", "listings=300", "--set", "day=1"])
    assert code == 0, capsys.readouterr()
    rows = {r["listing_id"]: r for r in table(sqlite_url, "SELECT listing_id, total_price, unit_price FROM listings")}
    want = truth(1, 300)
    assert set(rows) == set(want)
    assert all((Decimal(str(r["total_price"])), r["unit_price"]) == (want[lid]["total_price"], want[lid]["unit_price"])
               for lid, r in rows.items())

"""`etl report`: the page opens in headless Chromium with no network, every chart renders, and the figures it
shows equal SQL of our own and the demo site's truth (etl/demo/days.py) — on SQLite, PostgreSQL and MySQL,
after real runs on days 0, 1 and 2 (history, run counts and delistings as the tool records them). On a
database from before history (no listing_history, no run counts) the report says so instead of failing."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from sqlalchemy import bindparam, text

from etl import cli
from etl.db import make_engine
from etl.demo.days import site_changes
from etl.demo.site import DemoSite, SiteOptions
from etl.report.page import _json_in_script
from etl.report.queries import NO_DISTRICT, histogram
from tests.conftest import ROOT
from tests.test_e2e_listings import table
from tests.test_e2e_stocks import run_sql_job

LISTINGS, DAYS, JOB = 400, (0, 1, 2), "demo-listings"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def chromium() -> str:
    """The browser, or a skip that says why (a failure when ETL_REQUIRE_CHROMIUM=1, as in CI)."""
    if CHROMIUM is None:
        why = "no chromium on PATH (Debian: apt-get install chromium), needed to open the report"
        if os.environ.get("ETL_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"ETL_REQUIRE_CHROMIUM=1 but {why}")
        pytest.skip(why)
    return CHROMIUM


needs_chromium = pytest.mark.usefixtures("chromium")
COUNTS = ("new", "changed", "unchanged", "delisted", "relisted")


def crawl_days(url: str, days=DAYS) -> list[int]:
    run_ids = []
    for day in days:
        code = cli.main(["run", str(ROOT / "config/demo.toml"), "--db", url, "--quiet", "--set",
                         f"listings={LISTINGS}", "--set", f"day={day}"])
        assert code == 0
        run_ids.append(table(url, "SELECT max(id) AS i FROM runs")[0]["i"])
    return run_ids


def render(page: Path, tmp: Path) -> BeautifulSoup:
    """The DOM after the page's scripts ran, in a browser whose every network request fails."""
    out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp / 'chr'}",
                          "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                          "--virtual-time-budget=30000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=240, check=True)
    return BeautifulSoup(out.stdout, "lxml")


def report(url: str, tmp: Path, *args: str) -> BeautifulSoup:
    page = tmp / "report.html"
    assert cli.main(["report", "--db", url, "-o", str(page), *args]) == 0
    assert "<script src" not in page.read_text() and "<link" not in page.read_text()  # all inline
    dom = render(page, tmp)
    body = dom.body
    assert body.get("data-rendered") == "ok", body.get("data-error")
    charts = dom.select("div.chart")
    assert len(charts) == int(body["data-charts"]) > 0
    for chart in charts:  # every chart drew marks
        assert chart.get("data-rendered") == "ok" and chart.find("svg") is not None, chart["id"]
        assert chart.select("g.role-mark path"), chart["id"]
    return dom


def figures(dom: BeautifulSoup, key: str) -> list[dict[str, str]]:
    return [{k.removeprefix("data-").replace("-", "_"): v for k, v in tr.attrs.items()}
            for tr in dom.select(f'table[data-figures="{key}"] tbody tr')]


def marks(dom: BeautifulSoup, key: str, kind: str = "rect") -> int:
    return len(dom.select(f"#chart-{key} g.mark-{kind}.role-mark path"))


# ------------------------------------------------------------------ our own SQL for what the page shows
def sql_medians(url: str) -> dict[str, float]:
    if url.startswith("postgresql"):
        sql = ("SELECT district, percentile_cont(0.5) WITHIN GROUP (ORDER BY unit_price) AS m FROM listings "
               "WHERE delisted_at IS NULL AND unit_price IS NOT NULL GROUP BY district")
    else:  # the middle one or two of each district's sorted prices
        half = "DIV 2" if url.startswith("mysql") else "/ 2"  # whole-number division
        sql = ("SELECT district, avg(unit_price) AS m FROM (SELECT district, unit_price, row_number() OVER "
               "(PARTITION BY district ORDER BY unit_price) AS rn, count(*) OVER (PARTITION BY district) AS c "
               "FROM listings WHERE delisted_at IS NULL AND unit_price IS NOT NULL) AS t "
               f"WHERE rn IN ((c + 1) {half}, (c + 2) {half}) GROUP BY district")
    return {r["district"]: float(r["m"]) for r in table(url, sql)}


def sql_price_moves(url: str) -> dict[str, list[Decimal]]:
    """Per day: each version's price change against the same listing's previous version, in percent."""
    rows = table(url, "SELECT v.valid_from AS day, p.total_price AS old, v.total_price AS new "
                      "FROM listing_history v JOIN listing_history p ON p.source = v.source "
                      "AND p.listing_id = v.listing_id AND p.valid_from = (SELECT max(x.valid_from) "
                      "FROM listing_history x WHERE x.source = v.source AND x.listing_id = v.listing_id "
                      "AND x.valid_from < v.valid_from) WHERE v.total_price <> p.total_price")
    out: dict[str, list[Decimal]] = {}
    for r in rows:
        old, new = Decimal(str(r["old"])), Decimal(str(r["new"]))
        out.setdefault(str(r["day"])[:10], []).append((new - old) / old * 100)
    return out


def check_listings_report(url: str, dom: BeautifulSoup) -> None:
    served = {d["district"]: d["count"] for d in DemoSite(
        SiteOptions(listings=LISTINGS, encoding="gbk", day=DAYS[-1])).district_summary("bj")}
    shown = figures(dom, "districts")
    assert {r["district"]: int(r["listings"]) for r in shown} == served  # the site's own count per district
    medians = sql_medians(url)
    assert {r["district"]: float(r["median_unit_price"]) for r in shown} == medians
    assert marks(dom, "districts") == 2 * len(served)
    svg_text = {t.get_text() for t in dom.select("#chart-districts text")}
    assert set(served) <= svg_text

    bins = figures(dom, "prices")
    assert marks(dom, "prices") == len(bins)
    for b in bins:
        n = table(url, "SELECT count(*) AS n FROM listings WHERE delisted_at IS NULL AND unit_price >= :lo "
                       "AND unit_price < :hi", lo=int(b["lo"]), hi=int(b["hi"]))[0]["n"]
        assert int(b["listings"]) == n, b
    assert sum(int(b["listings"]) for b in bins) == sum(served.values())  # no outliers in the demo

    moves = sql_price_moves(url)
    days = {r["day"]: r for r in figures(dom, "history")}
    assert set(days) == set(moves) and moves  # the runs' own dates (all of them today, in a test)
    for day, ms in moves.items():
        assert int(days[day]["cuts"]) == sum(m < 0 for m in ms) and int(days[day]["raises"]) == sum(m > 0 for m in ms)
        assert float(days[day]["median_change_pct"]) == pytest.approx(float(statistics.median(ms)), abs=1e-4)
    price_changes = sum(c["change"] == "price" for b, a in zip(DAYS, DAYS[1:], strict=False)
                        for c in site_changes(SiteOptions(listings=LISTINGS), "bj", b, a))
    assert sum(int(r["cuts"]) + int(r["raises"]) for r in days.values()) == price_changes  # the site's own

    runs = {r["run_id"]: r for r in figures(dom, "runs")}
    want = table(url, "SELECT * FROM runs WHERE job = :j ORDER BY id", j=JOB)
    assert set(runs) == {str(w["id"]) for w in want}
    for w in want:
        assert {k: int(runs[str(w["id"])][k]) for k in COUNTS} == {k: w[f"rows_{k}"] or 0 for k in COUNTS}
    assert marks(dom, "runs") == len(want) * 4  # new, changed, delisted, relisted


@needs_chromium
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
                                     pytest.param("mysql", marks=pytest.mark.mysql)])
def test_listings_report_renders_and_equals_the_sql(backend: str, request, tmp_path: Path) -> None:
    url = request.getfixturevalue({"sqlite": "sqlite_url", "postgres": "pg_url", "mysql": "mysql_url"}[backend])
    crawl_days(url)  # days 0, 1, 2 of the demo site: the history, run counts and delistings are the tool's own
    dom = report(url, tmp_path, "--job", JOB)
    assert [s["id"] for s in dom.select("section")] == ["districts", "prices", "history", "runs"]
    check_listings_report(url, dom)


@needs_chromium
def test_without_history_it_says_so_and_hostile_names_stay_text(sqlite_url: str, tmp_path: Path) -> None:
    crawl_days(sqlite_url, days=(0,))
    with make_engine(sqlite_url).begin() as conn:  # a database from before history: no table, no run counts
        conn.execute(text("DROP TABLE listing_history"))
        for name in COUNTS:
            conn.execute(text(f"ALTER TABLE runs DROP COLUMN rows_{name}"))
    hostile = "</script><script>document.body.dataset.rendered='pwned'</script>"
    with make_engine(sqlite_url).begin() as conn:
        conn.execute(text("UPDATE listings SET district = :d WHERE listing_id IN (SELECT listing_id FROM listings "
                          "ORDER BY listing_id LIMIT 3)"), {"d": hostile})
        conn.execute(text("UPDATE listings SET district = NULL WHERE listing_id IN (SELECT listing_id FROM listings "
                          "ORDER BY listing_id DESC LIMIT 2)"))
    dom = report(sqlite_url, tmp_path)
    assert "no history yet" in dom.select_one('[data-empty="history"]').get_text()
    assert "does not count new and delisted" in dom.select_one('[data-empty="runs"]').get_text()
    assert len(dom.select("div.chart")) == 2
    shown = {r["district"]: int(r["listings"]) for r in figures(dom, "districts")}
    assert shown[hostile] == 3 and shown[NO_DISTRICT] == 2
    assert sum(shown.values()) == LISTINGS


@needs_chromium
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_news_report_most_mentioned_and_daily_sentiment(backend: str, request, tmp_path: Path) -> None:
    from etl.sources.news_seed import seed_news

    url = request.getfixturevalue({"sqlite": "sqlite_url", "postgres": "pg_url"}[backend])
    seed_news(url, 600, processes=1)
    run_sql_job(url)
    dom = report(url, tmp_path, "--job", "news-stocks")
    assert [s["id"] for s in dom.select("section")] == ["stocks", "sentiment"]
    want = table(url, "SELECT stock_code, count(*) AS n, sum(mention_count) AS m, avg(score) AS s "
                             "FROM stock_mentions WHERE source = 'news-stocks' GROUP BY stock_code")
    top = sorted(want, key=lambda r: (-r["n"], r["stock_code"]))[:20]
    shown = figures(dom, "stocks")
    assert [(r["code"], int(r["articles"]), int(r["mentions"])) for r in shown] == [
        (r["stock_code"], r["n"], r["m"]) for r in top]
    assert [float(r["avg_score"]) for r in shown] == pytest.approx([r["s"] for r in top], abs=1e-12)
    assert marks(dom, "stocks") == len(top)
    with make_engine(url).connect() as conn:
        daily = [dict(r._mapping) for r in conn.execute(text(
            "SELECT stock_code, news_date, articles, avg_score FROM stock_daily_sentiment "
            "WHERE stock_code IN :c AND news_date IS NOT NULL").bindparams(bindparam("c", expanding=True)),
            {"c": [r["stock_code"] for r in top[:5]]})]
    got = {(r["code"], r["day"]): (int(r["articles"]), float(r["avg_score"])) for r in figures(dom, "sentiment")}
    assert got.keys() == {(d["stock_code"], str(d["news_date"])[:10]) for d in daily}
    for d in daily:
        n, s = got[(d["stock_code"], str(d["news_date"])[:10])]
        assert n == d["articles"] and s == pytest.approx(d["avg_score"], abs=1e-12)
    assert marks(dom, "sentiment", "symbol") == len(daily)


def test_report_refuses_a_missing_database_or_an_unknown_job(tmp_path: Path, sqlite_url: str, capsys) -> None:
    missing = tmp_path / "nothing.db"
    assert cli.main(["report", "--db", f"sqlite:///{missing}", "-o", str(tmp_path / "r.html")]) == 2
    assert not missing.exists() and not (tmp_path / "r.html").exists()
    assert "no database at" in capsys.readouterr().err
    crawl_days(sqlite_url, days=(0,))
    assert cli.main(["report", "--db", sqlite_url, "--job", "nope", "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "job 'nope' has no listings and no stock mentions" in err and JOB in err and err.count("\n") == 1


def test_histogram_keeps_outliers_out_of_the_range_but_counts_them() -> None:
    """One absurd price (a bad page) must not squash every bar into one; nothing is dropped silently."""
    prices = sorted([30_000 + 37 * i % 20_000 for i in range(1000)] + [9_000_000])
    h = histogram(prices)
    assert h.bins[-1].hi <= 60_000 and (h.below, h.above) == (0, 1)
    assert sum(b.listings for b in h.bins) + h.below + h.above == len(prices)
    plain = histogram(prices[:-1])  # without the outlier: the whole range, nothing left out
    assert (plain.below, plain.above) == (0, 0) and plain.bins[0].lo <= prices[0] < plain.bins[-1].hi
    assert histogram([41_000] * 5).bins == [type(h.bins[0])(41_000, 41_001, 5)]


def test_json_in_the_page_cannot_close_its_script() -> None:
    out = _json_in_script({"district": "</script><!-- x"})
    assert "</" not in out and "<!--" not in out and json.loads(out) == {"district": "</script><!-- x"}


def test_the_javascript_bundle_is_built_once_and_then_read_from_the_cache(tmp_path: Path, monkeypatch) -> None:
    from etl.report.page import vega_bundle

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    vega_bundle.cache_clear()
    try:
        built = vega_bundle()
        assert "vegaEmbed" in built and len(built) > 100_000
        (cached,) = (tmp_path / "etl-crawl").glob("vega-embed-*.js")
        assert cached.read_text(encoding="utf-8") == built
        cached.write_text("window.vegaEmbed = 'from the cache';", encoding="utf-8")
        vega_bundle.cache_clear()
        assert vega_bundle() == "window.vegaEmbed = 'from the cache';"
    finally:
        vega_bundle.cache_clear()  # the other tests' pages get the real bundle

"""Pages that would stall or break a parse process: nesting too deep for the tree builder, a parse that
never ends (the worker is killed and replaced, the page becomes a failure), JSON nested too deep in one item."""

from __future__ import annotations

import multiprocessing
import pickle
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl import config
from etl.items import Page, Parsed, Request
from etl.parse.engines import ENGINES
from etl.parse.extract import Extractor
from etl.parse.limits import MAX_DEPTH, _start_tags_at_most, nesting_depth, too_deep
from etl.parse.pool import CRASHED, Job, ParsePool
from etl.parse.whatwg import CODECS
from tests.test_extract import BASE, DOMAINS, UNIT_CONFIG, page_of


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    return request.param


@pytest.fixture
def cfg_path(tmp_path) -> str:
    path = tmp_path / "unit.toml"
    path.write_text(UNIT_CONFIG, encoding="utf-8")
    return str(path)


def extractor(path: str, engine: str, *overrides: str) -> Extractor:
    return Extractor(config.load(path, [f"run.engine={engine}", *overrides], database_url="sqlite://"), DOMAINS)


# ---------------------------------------------------------------------------------------------- nesting depth


def test_deeply_nested_page_is_refused_before_the_tree_is_built(engine, cfg_path):
    """lexbor's tree builder is quadratic in depth (160,000 nested divs: about a minute); refused at once."""
    body = "<html><body>" + "<ul><li>" * 20_000 + "x" + "</li></ul>" * 20_000 + "</body></html>"
    started = time.monotonic()
    parsed = extractor(cfg_path, engine).parse(page_of(Request(f"{BASE}/list/a/", "sub"), body))
    assert parsed.error is not None and "nested" in parsed.error and str(MAX_DEPTH) in parsed.error.replace(",", "")
    assert "\n" not in parsed.error
    assert time.monotonic() - started < 30  # generous: refusing takes milliseconds, building took minutes


@pytest.mark.parametrize("html", [
    "<ul>" + "<li>item" * 30_000 + "</ul>",  # list items without end tags close each other
    "<div>" + "<p>para" * 30_000 + "</div>",
    "<table>" + "<tr><td>a<td>b" * 20_000 + "</table>",
    "<select>" + "<option>o" * 30_000 + "</select>",
    "<div>" + "<br><img src=x><input>" * 20_000 + "</div>",
    "<svg>" + "<path d='M0'/>" * 30_000 + "</svg>",  # self-closed in foreign content
    "<div>" + "<b>x</b><i>y</i>" * 20_000 + "</div>",
    "<div>" + "<span>a</span>" * 30_000 + "</div>",
    "<script>" + "'<div>' + " * 30_000 + "''</script><!--" + "<div>" * 30_000 + "-->",
    "<div>" * 200 + "</span>" * 30_000 + "</div>" * 200,  # stray end tags
])
def test_wide_or_sloppy_pages_are_not_mistaken_for_deep_ones(html):
    assert nesting_depth(html, MAX_DEPTH) < 300


def test_nesting_depth_counts_unclosed_and_closed_nesting():
    assert nesting_depth("<div>" * 50) == 50
    assert nesting_depth("<div><span><b>x</b></span></div>" * 1000) == 3
    assert nesting_depth("<div>" * 40 + "</div>" * 40 + "<i>") == 40  # the deepest point, not the end
    assert nesting_depth("<DIV><span></DIV>" * 10) == 2  # the end tag closes the span inside it too
    assert nesting_depth("<ul><li>" * 100) == 100  # li is not counted: a lower bound of the real depth
    assert nesting_depth("<div>" * 100_000, limit=500) > 500  # stops early once over the limit


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(["<div>", "</div>", "<a href=x>", "</a>", "<br>", "</", "<", "/"]),
                          st.text(min_size=1, max_size=3)), max_size=40),
       st.sampled_from(sorted(CODECS)))
def test_the_quick_bound_over_the_raw_bytes_never_counts_fewer_start_tags_than_the_text_has(parts, codec):
    """The depth check counts "<" and "</" in the undecoded bytes: in every encoding a page is decoded
    from, that must bound the start tags of the text from above, whatever characters stand around them
    (CJK double bytes, UTF-16's zero bytes, ISO-2022-JP's escapes)."""
    raw = "".join(parts).encode(codec, "xmlcharrefreplace")
    text = raw.decode(codec, "replace")
    assert _start_tags_at_most(text, raw) >= len(re.findall(r"<[A-Za-z]", text))


@pytest.mark.parametrize("codec", ["utf-8", "gb18030", "big5", "shift_jis", "euc-kr", "iso2022_jp",
                                   "utf-16-le", "utf-16-be", "windows-1252"])
def test_a_deep_page_is_refused_in_any_encoding(codec):
    text = "<html><body>" + "<div>深い" * (MAX_DEPTH + 10) + "</body></html>"
    raw = text.encode(codec, "xmlcharrefreplace")
    assert too_deep(raw.decode(codec), raw) is not None


# ---------------------------------------------------------------------------------------------- deep JSON


def test_deeply_nested_json_fails_its_item_only(engine, tmp_path):
    path = tmp_path / "json.toml"
    path.write_text(UNIT_CONFIG.split("[fields]")[0] + '[fields]\nphoto = { css = "div.photos", attr = "data-list", '
                    'json = "0.src" }\n', encoding="utf-8")
    deep = "[" * 100_000 + "]" * 100_000
    body = ('<html><body><ul class="items">'
            f'<li data-id="1"><div class="photos" data-list=\'{deep}\'></div></li>'
            '<li data-id="2"><div class="photos" data-list=\'[{"src": "b.jpg"}]\'></div></li>'
            '</ul></body></html>')
    parsed = extractor(str(path), engine).parse(page_of(Request(f"{BASE}/list/a/", "sub"), body))
    assert parsed.error is None
    assert [(r["listing_id"], r["extras"]["photo"]) for r in parsed.rows] == [("2", "b.jpg")]
    assert len(parsed.item_errors) == 1 and parsed.item_errors[0].startswith("item 1:")
    assert "photo" in parsed.item_errors[0] and "nested" in parsed.item_errors[0]


# ---------------------------------------------------------------------------------------------- parse deadline


def test_a_parse_past_its_deadline_kills_the_worker_and_fails_that_page_only(cfg_path, monkeypatch):
    monkeypatch.setenv("ETL_TEST_PARSE_CRASH", "hang:/list/slow/")  # the worker sleeps on this URL
    cfg = config.load(cfg_path, ["run.parse_timeout=2"], database_url="sqlite://")
    assert cfg.run.parse_timeout == 2.0
    body = b'<html><body><ul class="items"><li data-id="1"><a class="title">one</a></li></ul></body></html>'
    jobs = []
    for name in ("slow", "a", "b"):
        req = Request(f"{BASE}/list/{name}/", "sub")
        page = Page(req, req.url, 200, {"content-type": "text/html; charset=utf-8"}, body)
        jobs.append(Job.fetched(req, 200, pickle.dumps(page)))
    pool = ParsePool(multiprocessing.get_context("spawn"), 1, cfg, DOMAINS)
    try:
        first = pool.workers[0].process.pid
        for job in jobs:
            pool.submit(job)
        got: dict[str, Parsed] = {}
        deadline = time.monotonic() + 90  # generous: a spawn, a 2 s deadline, a second spawn
        while len(got) < 3 and time.monotonic() < deadline:
            results, _ = pool.poll(0.2)
            for job, result in results:
                assert result is not CRASHED
                got[job.request.url.split("/")[-2]] = result
        assert set(got) == {"slow", "a", "b"}
        assert got["slow"].error is not None and "2 s" in got["slow"].error and "parse_timeout" in got["slow"].error
        assert got["a"].error is None and got["b"].error is None and got["a"].row_count == 1
        assert pool.workers[0].process.pid != first and pool.workers[0].process.is_alive()
        assert pool.inflight() == 0
    finally:
        pool.close()


def test_parse_timeout_must_be_positive(cfg_path):
    with pytest.raises(config.ConfigError, match="parse_timeout"):
        config.load(cfg_path, ["run.parse_timeout=0"], database_url="sqlite://")

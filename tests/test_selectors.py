"""Selectors as the config checker reads them (one line, per engine) and fields picked by their label text
(`[fields.X] label = "挂牌时间"`), which must give the same values on both engines."""

from __future__ import annotations

import pytest

from etl import config
from etl.items import Request
from etl.parse.engines import ENGINES
from etl.parse.extract import Extractor
from tests.test_extract import BASE, DOMAINS, page_of


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    return request.param


CONFIG = """\
job = "labels"

[source]
type = "http"
site = "unit"
start_urls = ["http://demo.test/list/"]

[[crawl.pages]]
kind = "list"
items = true

[items]
select = "div.item"
key = {{ attr = "data-id" }}

[fields]
{fields}
"""


def load(tmp_path, engine: str, fields: str) -> config.Config:
    path = tmp_path / "labels.toml"
    path.write_text(CONFIG.format(fields=fields), encoding="utf-8")
    return config.load(str(path), [f"run.engine={engine}"], database_url="sqlite://")


# ---------------------------------------------------------------------------------------------- the checker


@pytest.mark.parametrize("selector", ["p[", "div >> p", "p:nth-child(", "a:bogus-pseudo"])
def test_an_invalid_selector_is_reported_in_one_line(tmp_path, engine, selector):
    with pytest.raises(config.ConfigError) as err:
        load(tmp_path, engine, f"title = {{ css = '{selector}' }}")
    message = str(err.value)
    assert "\n" not in message, message
    assert "[fields.title].css" in message and selector in message and engine in message


@pytest.mark.parametrize("selector", ['li:lexbor-contains("挂牌时间")', 'span:LEXBOR-CONTAINS(x)'])
def test_lexbor_contains_is_refused_on_selectolax(tmp_path, selector):
    """It matches only an element's own first text: `li:lexbor-contains("挂牌时间")` finds nothing in
    `<li><span>挂牌时间</span>…</li>`, silently. Refused, pointing at `label`."""
    with pytest.raises(config.ConfigError, match="label") as err:
        load(tmp_path, "selectolax", f"title = {{ css = '{selector}' }}")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("spec", "problem"), [
    ('{ label = "" }', "label"), ('{ label = " ： " }', "label"), ('{ label = "价格", attr = "href" }', "attr"),
    ('{ label = 3 }', "expected str"),
])
def test_bad_label_fields_are_refused(tmp_path, engine, spec, problem):
    with pytest.raises(config.ConfigError, match=problem):
        load(tmp_path, engine, f"price = {spec}")


# ---------------------------------------------------------------------------------------------- label fields

LABEL_FIELDS = """\
listed = { label = "挂牌时间", type = "date" }
use = { label = "房屋用途" }
floor = { label = "所在楼层：" }
area = { label = "建筑面积", type = "float" }
heating = { label = "供暖方式" }
lift = { label = "配备电梯" }
missing = { label = "抵押信息" }
empty = { label = "房本备件" }
"""

LAYOUTS = {
    "span-then-text": """<ul><li><span class="label">挂牌时间</span>2024-01-02</li>
        <li><span class="label">房屋用途</span> 普通住宅 </li><li><span>所在楼层</span>：中楼层</li>
        <li><span>建筑面积</span>89.5㎡</li><li><span><i>供暖方式</i></span>集中供暖</li>
        <li>配备电梯：有</li><li><span>房本备件</span></li></ul>""",
    "span-then-span": """<ul><li><span class="label">挂牌时间</span><span>2024-01-02</span></li>
        <li><span>房屋用途</span> <!-- x --> <span>普通住宅</span></li><li><span>所在楼层:</span><span>中楼层</span></li>
        <li><span>建筑面积</span><span>89.5㎡</span></li><li><b><i>供暖方式</i></b><span>集中供暖</span></li>
        <li>配备电梯 ：有</li><li><span>房本备件</span><span> </span></li></ul>""",
    "dl": """<dl><dt>挂牌时间</dt><dd>2024-01-02</dd><dt>房屋用途</dt>
        <dd>普通住宅</dd><dt>所在楼层：</dt><dd>中楼层</dd><dt>建筑面积</dt><dd>89.5㎡</dd>
        <dt><strong>供暖方式</strong></dt><dd>集中供暖</dd><dt>配备电梯：有</dt><dt>房本备件</dt></dl>""",
    "table": """<table><tr><th>挂牌时间</th><td>2024-01-02</td><th>房屋用途</th><td>普通住宅</td></tr>
        <tr><th>所在楼层：</th><td>中楼层</td><th>建筑面积</th><td>89.5㎡</td></tr>
        <tr><td><b>供暖方式</b></td><td>集中供暖</td><td>配备电梯：有</td><td>房本备件</td></tr></table>""",
}
WANT = {"listed": "2024-01-02", "use": "普通住宅", "floor": "中楼层", "area": 89.5, "heating": "集中供暖",
        "lift": "有", "missing": None, "empty": None}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_label_fields_read_the_text_next_to_the_label(tmp_path, engine, layout):
    ex = Extractor(load(tmp_path, engine, LABEL_FIELDS), DOMAINS)
    body = f'<html><body><div class="item" data-id="1"><h2>挂牌时间</h2>{LAYOUTS[layout]}</div></body></html>'
    parsed = ex.parse(page_of(Request(f"{BASE}/list/", "list"), body))
    assert parsed.error is None and len(parsed.rows) == 1
    row = parsed.rows[0]
    got = {name: row.get(name, row["extras"].get(name)) for name in WANT}
    got["listed"] = None if got["listed"] is None else str(got["listed"])
    assert got == WANT


def test_label_fields_agree_on_both_engines(tmp_path):
    body = ('<html><body>' + "".join(f'<div class="item" data-id="{i}">{html}</div>'
                                    for i, html in enumerate(LAYOUTS.values())) + '</body></html>')
    rows = [Extractor(load(tmp_path, engine, LABEL_FIELDS), DOMAINS).parse(
        page_of(Request(f"{BASE}/list/", "list"), body)).rows for engine in ENGINES]
    assert rows[0] == rows[1] and len(rows[0]) == len(LAYOUTS)


def test_a_label_is_looked_for_only_inside_its_scope(tmp_path, engine):
    """Per item, the item's own label; with css, inside what css selects; `all` joins every match."""
    fields = ('price = { label = "总价" }\nmain = { css = "div.main", label = "总价" }\n'
              'every = { label = "总价", all = true }\n')
    ex = Extractor(load(tmp_path, engine, fields), DOMAINS)
    body = ('<html><body><div class="item" data-id="1"><p><span>总价</span>500万</p>'
            '<div class="main"><p><span>总价</span>480万</p></div></div>'
            '<div class="item" data-id="2"><p><span>单价</span>5万</p></div>'
            '<p><span>总价</span>outside</p></body></html>')
    rows = Extractor.parse(ex, page_of(Request(f"{BASE}/list/", "list"), body)).rows
    assert [(r["extras"]["price"], r["extras"]["main"], r["extras"]["every"]) for r in rows] == [
        ("500万", "480万", "500万 480万"), (None, None, None)]


def test_label_text_inside_script_or_a_comment_is_not_a_label(tmp_path, engine):
    ex = Extractor(load(tmp_path, engine, 'use = { label = "房屋用途" }'), DOMAINS)
    body = ('<html><body><div class="item" data-id="1"><script>var a = "房屋用途";</script><b>x</b>'
            '<!-- 房屋用途 --><i>y</i><p><span>房屋用途</span>商业</p></div></body></html>')
    rows = ex.parse(page_of(Request(f"{BASE}/list/", "list"), body)).rows
    assert rows[0]["extras"]["use"] == "商业"


def test_label_is_refused_on_json_items():
    from pathlib import Path

    demo_api = str(Path(__file__).resolve().parent.parent / "config" / "demo-api.toml")
    with pytest.raises(config.ConfigError, match="label"):
        config.load(demo_api, ["fields.price_by_label.label=总价"], database_url="sqlite://")

"""Fields taken from the facet links that led to a page (`from = "facet:<kind>"`): a site whose list
items and detail pages do not name their district can still fill the column from the district link."""

from __future__ import annotations

import pytest

from etl import config
from etl.demo.site import SiteOptions
from etl.items import Request
from etl.parse.engines import ENGINES
from etl.parse.extract import MAX_CARRIED, Extractor
from tests.test_extract import BASE, DOMAINS, UNIT_CONFIG, crawl, page_of, site


@pytest.mark.parametrize("engine", ENGINES)
def test_facet_fields_carry_the_link_text_down_to_rows(engine: str) -> None:
    options = SiteOptions(listings=400)
    overrides = ("crawl.cap=20",  # small cap: every list is split by district, then by sub-district
                 "fields.via_district.from=facet:district",
                 "fields.via_sub.from=facet:subdistrict")
    result = crawl(engine, options, overrides)
    truth = {t["listing_id"]: t for t in site(options).truth("bj")}
    assert result.errors == [] and len(result.rows) == len(truth)
    for row in result.rows:
        t = truth[row["listing_id"]]
        assert row["extras"]["via_district"] == t["district"]
        assert row["extras"]["via_sub"] in (t["subdistrict"], None)  # None: district small enough to list whole
    assert any(row["extras"]["via_sub"] for row in result.rows)


def facet_extractor(tmp_path, engine: str, *fields: str) -> Extractor:
    path = tmp_path / "facets.toml"
    path.write_text(UNIT_CONFIG.replace("[fields]\n", "[fields]\n" + "".join(f + "\n" for f in fields)),
                    encoding="utf-8")
    return Extractor(config.load(str(path), [f"run.engine={engine}"], database_url="sqlite://"), DOMAINS)


def facet_page(text: str) -> str:
    return (f'<html><body><div class="facets"><a href="/list/s1/">{text}</a><a href="/list/s2/">s2</a></div>'
            '<ul class="items"></ul></body></html>')


@pytest.mark.parametrize("engine", ENGINES)
def test_a_huge_facet_link_text_is_cut_where_it_is_carried(engine: str, tmp_path) -> None:
    """A 2 MB link text once went into the meta of every request below it (8 GB of frontier); carried
    values are cut to MAX_CARRIED characters, with one warning."""
    ex = facet_extractor(tmp_path, engine, 'via_sub = { from = "facet:sub" }')
    huge = "朝阳 " * 100_000
    parsed = ex.parse(page_of(Request(f"{BASE}/list/", "list"), facet_page(huge)))
    assert [link.meta["via"]["sub"] for link in parsed.links] == ["朝阳 " * (MAX_CARRIED // 3) + "朝", "s2"]
    assert len(parsed.warnings) == 1 and f"{MAX_CARRIED:,}" in parsed.warnings[0] and "sub" in parsed.warnings[0]
    assert len(parsed.links[0].meta_json()) < MAX_CARRIED * 4  # the next page carries it on, cut
    below = ex.parse(page_of(parsed.links[0], '<html><body><ul class="items"><li data-id="1"></li></ul>'
                                              '<a href="/list/s1/x/">x</a></body></html>'))
    assert below.rows[0]["extras"]["via_sub"] == parsed.links[0].meta["via"]["sub"]


@pytest.mark.parametrize("engine", ENGINES)
def test_facet_link_text_is_carried_only_when_a_field_reads_it(engine: str, tmp_path) -> None:
    ex = facet_extractor(tmp_path, engine)
    parsed = ex.parse(page_of(Request(f"{BASE}/list/", "list"), facet_page("s1")))
    assert [link.meta for link in parsed.links] == [{}, {}]
    assert parsed.warnings == []

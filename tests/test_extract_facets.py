"""Fields taken from the facet links that led to a page (`from = "facet:<kind>"`): a site whose list
items and detail pages do not name their district can still fill the column from the district link."""

from __future__ import annotations

import pytest

from etl.demo.site import SiteOptions
from etl.parse.engines import ENGINES
from tests.test_extract import crawl, site


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

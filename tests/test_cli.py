"""Small CLI commands: the demo site's truth as JSON lines."""

from __future__ import annotations

import json

from etl.cli import main
from etl.demo.site import DemoSite, SiteOptions


def test_demo_truth_prints_what_the_site_serves(capsys) -> None:
    assert main(["demo", "truth", "--listings", "300", "--city", "gz"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    truth = DemoSite(SiteOptions(listings=300, encoding="gbk")).truth("gz")
    assert [r["listing_id"] for r in rows] == [t["listing_id"] for t in truth]
    assert main(["demo", "truth", "--listings", "300", "--summary"]) == 0
    summary = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sum(d["count"] for d in summary) == 300

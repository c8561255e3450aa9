"""Config files run no code — except a plugin function the config names explicitly."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl import config
from etl.demo.site import DemoSite, SiteOptions
from etl.pipeline import run_job
from etl.progress import Progress
from tests.test_e2e_listings import table

ROOT = Path(__file__).resolve().parent.parent


def test_plugin_transform_runs_on_the_parse_processes(sqlite_url: str) -> None:
    cfg = config.load(ROOT / "config/demo.toml", ["source.demo.listings=600", "transform.type=plugin",
                                                  "transform.plugin=tests.plugin_example:tag_big_flats"], sqlite_url)
    run_job(cfg, progress=Progress(enabled=False))
    truth = {t["listing_id"]: t for t in DemoSite(SiteOptions(listings=600)).truth("bj")}
    rows = table(sqlite_url, "SELECT listing_id, extras FROM listings")
    assert {r["listing_id"] for r in rows} == {k for k, t in truth.items() if t["rooms"] > 1}
    import json

    for r in rows:
        assert json.loads(r["extras"])["big"] == (truth[r["listing_id"]]["area_m2"] >= 100)


@pytest.mark.parametrize("name, message", [
    ("not a name", "package.module:function"),
    ("tests.plugin_example:missing", "cannot import"),
    ("no_such_module_xyz:f", "cannot import"),
])
def test_bad_plugin_names_are_config_errors(name: str, message: str) -> None:
    with pytest.raises(config.ConfigError) as err:
        config.load(ROOT / "config/demo.toml", ["transform.type=plugin", f"transform.plugin={name}"])
    assert message in str(err.value) and "\n" not in str(err.value)

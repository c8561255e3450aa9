"""Config files run no code — except a plugin function the config names explicitly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from etl import cli, config
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


@pytest.mark.parametrize("name", ["not a name", "a.b", "mod:", ":f", "a..b:f", "a.b:f.g"])
def test_malformed_plugin_names_are_config_errors(name: str) -> None:
    with pytest.raises(config.ConfigError) as err:
        config.load(ROOT / "config/demo.toml", ["transform.type=plugin", f"transform.plugin={name}"])
    assert "package.module:function" in str(err.value) and "\n" not in str(err.value)


def test_loading_a_config_imports_no_plugin(tmp_path, monkeypatch) -> None:
    """12.18: import side effects never run while a config is loaded or checked (`antigravity` opened a
    browser): the module is imported only when the run starts."""
    mark = tmp_path / "imported"
    monkeypatch.setenv("ETL_PLUGIN_MARK", str(mark))
    sys.modules.pop("tests.plugin_side_effect", None)
    config.load(ROOT / "config/demo.toml", ["transform.type=plugin", "transform.plugin=tests.plugin_side_effect:keep"])
    assert not mark.exists()
    sys.modules.pop("tests.plugin_side_effect", None)


@pytest.mark.parametrize("name, message", [
    ("tests.plugin_example:missing", "cannot import"),
    ("no_such_module_xyz:f", "cannot import"),
    ("tests.plugin_side_effect:NOT_A_FUNCTION", "is not a function"),
])
def test_a_plugin_that_cannot_be_used_stops_the_run_before_anything_is_written(
        name: str, message: str, tmp_path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'etl.db'}"
    code = cli.main(["run", str(ROOT / "config/demo.toml"), "--db", url, "--quiet",
                     "--set", "transform.type=plugin", "--set", f"transform.plugin={name}"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "etl.db").exists()

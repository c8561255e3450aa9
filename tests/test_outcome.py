"""How a run ends tells cron the truth: any failure of any stage, or work left at the page limit, is
`partial` with exit 1 — never `succeeded` with exit 0 (issue 11 items 9 and 13)."""

from __future__ import annotations

from etl import cli
from tests.conftest import ROOT
from tests.test_e2e_listings import table


def test_rows_the_database_refuses_make_the_run_partial(sqlite_url: str, capsys) -> None:
    code = cli.main(["run", str(ROOT / "config/demo.toml"), "--db", sqlite_url, "--quiet",
                     "--set", "source.demo.listings=500", "--set", "transform.type=plugin",
                     "--set", "transform.plugin=tests.plugin_example:unstorable_now_and_then"])
    out = capsys.readouterr().out
    refused = table(sqlite_url, "SELECT count(*) AS n FROM failures WHERE stage = 'write'")[0]["n"]
    assert refused > 0 and code == 1, out
    assert "partial" in out and f"{refused:,} failures" in out
    assert table(sqlite_url, "SELECT status FROM runs")[0]["status"] == "partial"


def test_a_run_cut_short_by_max_pages_is_partial_and_says_why(sqlite_url: str, capsys) -> None:
    code = cli.main(["run", str(ROOT / "config/demo.toml"), "--db", sqlite_url, "--quiet",
                     "--set", "source.demo.listings=500", "--set", "run.max_pages=40"])
    out = capsys.readouterr().out
    assert code == 1 and "max_pages = 40" in out, out
    run = table(sqlite_url, "SELECT status, message FROM runs")[0]
    assert run["status"] == "partial" and "max_pages" in run["message"]


def test_a_complete_run_still_succeeds(sqlite_url: str, capsys) -> None:
    assert cli.main(["run", str(ROOT / "config/demo.toml"), "--db", sqlite_url, "--quiet",
                     "--set", "source.demo.listings=300"]) == 0
    assert "succeeded" in capsys.readouterr().out

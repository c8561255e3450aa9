"""Crawl the demo portal through a fault-injecting proxy: 500/503, 429 with Retry-After (both forms),
connection resets, responses slower than the read timeout, truncated bodies, wrong charset headers,
and a few detail pages that fail for good (HTTP 500 or a redirect loop).

Every listing must still arrive exactly once with every field right, except those whose detail page
truly could not be fetched — and those, and only those, must be in the failures table.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from urllib.parse import urlsplit

from etl.config.build import build
from etl.demo.server import DemoServer
from etl.demo.site import DemoSite, SiteOptions
from etl.pipeline import run_job
from etl.progress import Progress
from tests.faultserver import FaultProxy, Faults
from tests.test_e2e_listings import assert_matches_truth, table

ROOT = Path(__file__).resolve().parent.parent
LISTINGS = 3500  # still above the 3,000 cap: facets are needed


def test_crawl_through_faults(sqlite_url: str) -> None:
    faults = Faults(error_500=0.05, error_503=0.03, throttle_429=0.03, reset=0.03, slow=0.01, slow_seconds=3.0,
                    truncate=0.03, wrong_charset=0.1, permanent=0.004, redirect_loop=0.5,
                    permanent_only=r"\.html$", max_faults_per_url=2, seed=3)
    site = DemoSite(SiteOptions(listings=LISTINGS, encoding="gbk"))
    truth = site.truth("bj")
    with DemoServer(SiteOptions(listings=LISTINGS, encoding="gbk")) as server, \
            FaultProxy(server.start(), faults) as proxy:
        base = proxy.start()  # start() is idempotent: it returns the running server's URL
        raw = tomllib.loads((ROOT / "config/demo.toml").read_text())
        del raw["source"]["demo"]
        raw["source"]["base_url"] = base
        # 6 attempts (5 retries): 2 injected faults per URL at most, and slack for a loaded machine's own slowness
        raw["politeness"] |= {"retries": 5, "backoff": 0.05, "read_timeout": 1.0, "connect_timeout": 1.0}
        raw["database"]["url"] = sqlite_url
        cfg = build(raw, "faults.toml")
        state, stats = run_job(cfg, progress=Progress(enabled=False))
        lost = proxy.permanent_failures(t["url"] for t in truth)
        injected = proxy.stats
    assert lost, "the seed should make some detail pages fail for good"
    for kind in ("error_500", "error_503", "throttle_429", "reset", "slow", "truncate", "wrong_charset",
                 "redirect_loop", "permanent_500"):
        assert injected.get(kind, 0) > 0, f"no {kind} fault was injected: {injected}"
    missing = frozenset(t["listing_id"] for t in truth if t["url"] in lost)
    assert_matches_truth(sqlite_url, listings=LISTINGS, missing=missing)
    failures = table(sqlite_url, "SELECT url, stage, status, error, attempts FROM failures")
    assert {urlsplit(f["url"]).path for f in failures} == lost  # only what truly could not be fetched
    for f in failures:
        assert f["stage"] == "fetch"
        assert ("HTTP 500" in f["error"] and f["attempts"] == 6) or "redirect loop" in f["error"], f
    run = table(sqlite_url, "SELECT status, pages_failed FROM runs WHERE id = :i", i=state.run_id)[0]
    assert run["status"] == "partial" and run["pages_failed"] == len(lost) == stats.pages_failed

"""`[politeness] retries` counts retries after the first attempt, as Scrapy's RETRY_TIMES does:
`retries = 1` is two attempts in all (it used to be one), `retries = 0` is a single attempt."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from etl.config import ConfigError, load
from etl.fetch import FetchFailure
from etl.items import Request
from etl.pipeline import Coordinator
from tests.test_config import MINIMAL


def attempts_made(retries: int) -> tuple[int, int]:
    """Feed a URL that always fails retryably through the coordinator's decision: (attempts, the attempt
    count its failure row records)."""
    cfg = SimpleNamespace(fetch=SimpleNamespace(retries=retries, backoff=0.0))
    outcome: list[int] = []
    again: list[Request] = []
    fake = SimpleNamespace(cfg=cfg, frontier=SimpleNamespace(retry=lambda req, due: again.append(req)),
                           _failed=lambda req, stage, error, status=None: outcome.append(req.attempt + 1))
    req, made = Request("http://a.test/busy", "page"), 0
    while not outcome and made < 100:
        made += 1
        Coordinator._fetch_failed(fake, req, FetchFailure(req, "HTTP 503", 503, True))
        if again:
            req = again.pop()
    return made, outcome[0]


@pytest.mark.parametrize("retries", [0, 1, 2, 5])
def test_retries_are_retries_after_the_first_attempt(retries: int) -> None:
    assert attempts_made(retries) == (retries + 1, retries + 1)


def test_a_permanent_failure_is_not_retried_whatever_retries_says() -> None:
    failed: list[str] = []
    fake = SimpleNamespace(cfg=SimpleNamespace(fetch=SimpleNamespace(retries=5, backoff=0.0)),
                           frontier=SimpleNamespace(retry=lambda req, due: pytest.fail("retried a 404")),
                           _failed=lambda req, stage, error, status=None: failed.append(error))
    req = Request("http://a.test/gone", "page")
    Coordinator._fetch_failed(fake, req, FetchFailure(req, "HTTP 404", 404, False))
    assert failed == ["HTTP 404"]


def config(tmp_path: Path, politeness: str = "") -> Path:
    path = tmp_path / "mini.toml"
    path.write_text(MINIMAL + (f"\n[politeness]\n{politeness}\n" if politeness else ""))
    return path


def test_the_default_is_three_attempts_in_all_and_zero_means_one(tmp_path: Path) -> None:
    assert load(config(tmp_path)).fetch.retries == 2
    assert load(config(tmp_path, "retries = 0")).fetch.retries == 0


def test_negative_retries_are_refused_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(config(tmp_path, "retries = -1"))
    message = str(info.value)
    assert "\n" not in message and "[politeness].retries" in message and "after the first attempt" in message

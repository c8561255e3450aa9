"""docker-compose.yml is checked by reading (no Docker engine here): the parts that decide whether a
scheduled `docker compose up` ends with the job's own exit code (issue 11 item 20)."""

from __future__ import annotations

import re

import pytest
import yaml

from etl import config
from tests.conftest import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
APPS = [name for name, svc in COMPOSE["services"].items() if svc.get("build") and svc["command"][0] in ("run", "worker")]


def _seconds(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smh])", str(text)))


def test_the_postgres_healthcheck_goes_over_tcp() -> None:
    test = " ".join(COMPOSE["services"]["postgres"]["healthcheck"]["test"])
    assert "pg_isready" in test and "-h 127.0.0.1" in test  # not the Unix socket the init server answers on


@pytest.mark.parametrize("name", APPS)
def test_app_services_stop_gracefully_and_wait_for_their_database(name: str) -> None:
    svc = COMPOSE["services"][name]
    assert svc.get("init") is True  # etl is not PID 1
    assert _seconds(svc["stop_grace_period"]) >= 120  # the flush time the README documents
    assert all(dep["condition"] == "service_healthy" for dep in svc["depends_on"].values())
    command = svc["command"]
    assert command[0] in ("run", "worker")
    sets = [command[i + 1] for i, arg in enumerate(command) if arg == "--set"]
    cfg = config.load(ROOT / command[1], sets, svc["environment"]["ETL_DATABASE_URL"])
    assert cfg.database.connect_wait >= 30


def test_the_worker_service_shares_one_site_and_can_be_scaled() -> None:
    from etl.sources import source_for

    svc = COMPOSE["services"]["worker"]
    assert "container_name" not in svc and "ports" not in svc  # both would stop --scale worker=3
    sets = [svc["command"][i + 1] for i, arg in enumerate(svc["command"]) if arg == "--set"]
    cfg = config.load(ROOT / svc["command"][1], sets, svc["environment"]["ETL_DATABASE_URL"])
    assert cfg.database_url.startswith("postgresql://")  # etl worker needs PostgreSQL
    assert source_for(cfg).unshareable() is None  # no per-process demo site: the demo-site service
    assert "demo-site:8000" in cfg.vars["base_url"] and "demo-site" in svc["depends_on"]
    site = COMPOSE["services"]["demo-site"]
    assert site["command"][:2] == ["demo", "serve"] and "0.0.0.0" in site["command"]

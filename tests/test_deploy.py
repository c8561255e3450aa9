"""deploy/k8s is checked offline against Kubernetes' own schemas (kubernetes-validate, strict): no cluster
here, so this is what can be said of it without one."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
import yaml

from etl import config
from tests.conftest import ROOT

MANIFESTS = sorted((ROOT / "deploy/k8s").glob("*.yaml"))


def documents():
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            yield path.name, doc


@pytest.mark.parametrize(("name", "doc"), list(documents()), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_manifests_are_valid_kubernetes(name: str, doc: dict) -> None:
    kubernetes_validate.validate(doc, "1.30.0", strict=True)


def test_the_validation_can_fail() -> None:
    _, doc = next(documents())
    broken = copy.deepcopy(doc)
    broken["spec"]["parallelism"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.30.0", strict=True)


def _pod_specs():
    for _, doc in documents():
        spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
        yield doc, spec


def test_the_workers_run_as_a_parallel_job_that_never_overlaps_itself() -> None:
    for doc, spec in _pod_specs():
        assert spec["parallelism"] >= 2 and spec["completionMode"] == "Indexed"
        pod = spec["template"]["spec"]
        assert pod["restartPolicy"] == "Never" and pod["terminationGracePeriodSeconds"] >= 120
        args = pod["containers"][0]["args"]
        assert args[0] == "worker"
        sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
        cfg = config.load(ROOT / args[1], sets, "postgresql://u@db/etl")
        assert cfg.database.connect_wait >= 30
        env = {e["name"] for e in pod["containers"][0]["env"]}
        assert "ETL_DATABASE_URL" in env  # from a Secret, not on the command line
        codes = [r["onExitCodes"]["values"] for r in spec["podFailurePolicy"]["rules"] if r["action"] == "FailJob"]
        assert codes == [[1, 2, 3]]  # a closed run's outcome is final: no pod restarted into a new run
        if doc["kind"] == "CronJob":
            assert doc["spec"]["concurrencyPolicy"] == "Forbid"

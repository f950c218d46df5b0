"""Crash safety of drift -> retraining: the operator is SIGKILLed right after a DriftMonitor created its retraining
TrainingRun (`RECOPS_CRASH_AT=object-created:1`, the point in `kube.create_if_absent`, recops.faults), before the
monitor's status recorded it; restarted without the fault, it must leave exactly one retraining TrainingRun for
that drifted check, recorded once in the monitor's status, and both objects must converge.

Real here: the lab's kube-apiserver (kwok runs the target RecommenderDeployment's pods, so it serves version 1 and
the retraining run's training Job completes), the lab's MLflow behind the TrainingRun, the operator a real
subprocess watching the test's namespace only (so the crash point counts this test's objects). Not run: the drift
check program's I/O. The check runs on the `local` backend, whose job result is a file in the run's directory; the
test writes that check's directory as the finished `recops-drift` process would have left it (exit code 0 and its
result document), the document built by the drift program's own code (`recops_drift.stats.compare` on a reference
and a shifted window, `recops_drift.cli.result_document`), because reading payload logs from S3 and a reference
profile from an MLflow model version is not what this test is about. The operator finds the finished check and
does everything after that itself.

Uses the lab (fixed ports): `flock /tmp/recops-lab.lock .venv/bin/pytest tests/reliability/test_crash_retrain.py`.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from fixtures.kube import Kubectl, conditions, temp_namespace
from fixtures.operator import wait_for
from recops.controllers import driftmonitor as dm
from recops.controllers.common import Owner
from recops.controllers.schedule import due_run_name
from reliability.test_crash_safety import _operator, _wait_killed

pytestmark = [pytest.mark.integration, pytest.mark.lab("k8s", "mlflow")]

SCHEDULE = "0 0 1 1 *"  # once a year: the check at creation is the only one in a test
KINDS = "trainingruns.recops.dev,driftmonitors.recops.dev,recommenderdeployments.recops.dev"


@pytest.fixture
def namespace(cluster: Any) -> Iterator[Kubectl]:
    with temp_namespace(cluster, "retrain") as k:
        yield k
        for obj in k.get_json(KINDS)["items"]:  # no operator watches this namespace any more
            k.run("patch", obj["kind"].lower(), obj["metadata"]["name"], "--type=merge", "-p",
                  '{"metadata":{"finalizers":null}}', check=False)


def _manifests(ns: str, mlflow: str) -> list[dict[str, Any]]:
    rd = {"apiVersion": "recops.dev/v1alpha1", "kind": "RecommenderDeployment",
          "metadata": {"name": "rd", "namespace": ns},
          "spec": {"model": {"name": "m", "version": "1", "trackingUri": mlflow},
                   "payloadLogging": {"uri": "s3://payload/logs"}}}
    retrain = {"snapshot": {"uri": "s3://features/snapshots/v2"}, "algorithm": {"name": "ease"},
               "mlflow": {"trackingUri": mlflow, "experiment": "retrain", "modelName": "m"}}
    monitor = {"apiVersion": "recops.dev/v1alpha1", "kind": "DriftMonitor",
               "metadata": {"name": "dm", "namespace": ns},
               "spec": {"backend": "local", "target": {"deploymentRef": {"name": "rd"}}, "sources": ["PayloadLogs"],
                        "schedule": SCHEDULE,
                        "onDrift": {"action": "Retrain", "trainingRunTemplate": {"spec": retrain}}}}
    return [rd, monitor]


def _drifted_result() -> dict[str, Any]:
    """What recops-drift reports for a window whose tenure shifted: its own statistics and result document."""
    from recops_drift.cli import result_document
    from recops_drift.stats import DriftSpec, compare, prepare_profile

    rng = np.random.default_rng(9)
    reference = prepare_profile({"users.tenure_days": rng.gamma(4.0, 60.0, 5000)}, model_version="1")
    result = compare(reference, {"users.tenure_days": rng.gamma(1.2, 20.0, 2000)}, DriftSpec())
    assert result.drifted, result
    return result_document(result, checked_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))


def _finished_check(runs: Path, monitor: dict[str, Any]) -> str:
    """Leave the monitor's first check as a finished local run (LocalBackend's files); returns its name."""
    owner = Owner.from_body("DriftMonitor", monitor)
    created = dt.datetime.fromisoformat(monitor["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    name = due_run_name(dm.check_base_name(owner), SCHEDULE, created, created, None, False)
    assert name is not None
    run_dir = runs / owner.namespace / owner.uid / name
    run_dir.mkdir(parents=True)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    (run_dir / "result.json").write_text(json.dumps(_drifted_result()))
    (run_dir / "started.json").write_text(json.dumps({"startedAt": now, "pid": 0}))
    (run_dir / "exit.json").write_text(json.dumps({"exitCode": 0, "finishedAt": now}))
    (run_dir / "pid").write_text("0")  # written last: the backend's "already submitted" mark
    return name


def test_killed_after_creating_the_retraining_run_leaves_exactly_one(
        cluster: Any, namespace: Kubectl, tmp_path: Path) -> None:
    k = namespace
    for doc in _manifests(k.namespace, cluster.mlflow_uri):
        k.run("create", "-f", "-", stdin=yaml.safe_dump(doc))
    check = _finished_check(tmp_path / "runs", k.get_json("dm", "dm"))

    def retraining_runs() -> list[dict[str, Any]]:
        return list(k.get_json("trainingruns", "-l", "recops.dev/driftmonitor=dm")["items"])

    started = time.monotonic()
    op = _operator(cluster, tmp_path, k.namespace, "object-created:1", RECOPS_BACKENDS="kubernetes,local")
    _wait_killed(op, 120)
    killed_after = time.monotonic() - started
    (run,) = retraining_runs()  # the side effect happened ...
    assert run["metadata"]["annotations"]["recops.dev/triggered-by-check"] == check
    monitor = k.get_json("dm", "dm")
    assert not (monitor.get("status") or {}).get("retrainingRuns"), monitor["status"]  # ... and was not recorded

    restarted = time.monotonic()
    op = _operator(cluster, tmp_path, k.namespace, None, RECOPS_BACKENDS="kubernetes,local")
    try:
        def converged() -> bool:
            monitor, runs = k.get_json("dm", "dm"), retraining_runs()
            status = monitor.get("status") or {}
            records = status.get("retrainingRuns") or []
            assert len(runs) == 1, f"{len(runs)} retraining runs: {[r['metadata']['name'] for r in runs]}"
            run_status = runs[0].get("status") or {}
            jobs = [j for j in k.get_json("jobs")["items"] if runs[0]["metadata"]["uid"] in
                    {r["uid"] for r in j["metadata"].get("ownerReferences") or []}]
            return (len(records) == 1 and records[0]["name"] == runs[0]["metadata"]["name"]
                    and records[0]["check"] == check and status.get("lastCheck") == check
                    and conditions(monitor).get("DriftDetected", {}).get("status") == "True"
                    and conditions(monitor).get("Ready", {}).get("status") == "True"
                    and run_status.get("observedGeneration") == runs[0]["metadata"]["generation"]
                    and conditions(runs[0]).get("Succeeded", {}).get("status") in ("True", "False")
                    and len(jobs) == 1)

        last: dict[str, Any] = {}

        def snapshot() -> bool:
            last["dm"], last["tr"] = k.get_json("dm", "dm").get("status"), [r.get("status") for r in retraining_runs()]
            return converged()

        try:
            wait_for(snapshot, 120, "the monitor and its one retraining run to converge", interval=0.5)
        except AssertionError:
            raise AssertionError(f"not converged: {last}: {op.logs()[-3000:]}") from None
        seconds = time.monotonic() - restarted
        time.sleep(6)  # three more resyncs: still one run, recorded once
        assert converged()
    finally:
        op.stop()
    (run,) = retraining_runs()
    events = [e for e in k.get_json("events")["items"] if e.get("reason") == "RetrainingStarted"]
    succeeded = conditions(run)["Succeeded"]
    print(f"\nkilled right after creating {run['metadata']['name']} ({killed_after:.1f}s after the first start); "
          f"after the restart: 1 retraining run for check {check}, recorded once, converged in {seconds:.1f}s "
          f"(TrainingRun Succeeded={succeeded['status']} {succeeded['reason']}, "
          f"{len(events)} RetrainingStarted Event)")
    assert len(events) == 1, [e["message"] for e in events]

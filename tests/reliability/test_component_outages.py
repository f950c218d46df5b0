"""Component outages during jobs: the lab's real PostgreSQL and MLflow servers and its S3 endpoint (moto in server
mode: an EMULATOR of S3, in memory) are stopped while a FeaturePipeline or TrainingRun job runs on the local backend
(the same job programs as processes), with the operator a real subprocess against the lab's real kube-apiserver.
Each component is stopped and started again with the lab's own per-component `down`/`up`, on the same port.

Each job must fail with a condition naming the component, nothing may be half-published (no snapshot manifest
without all its data files, no `latest.json` naming a missing manifest, no MLflow model version without its
artifacts), and once the component is back a new run (a run request, or a new TrainingRun) must succeed. The
operator is never restarted. The pipelines here set `backoffLimit: 0` so the outage fails the run at once; retries
across an outage are tested in test_job_retries.py.

What the lab's restart does not keep: the S3 emulator keeps objects in memory, so they are gone after its restart
and the test re-seeds them, as an operator of a real store would not need to. PostgreSQL restarted through `down`/
`up` keeps its password and data directory, so its DSN Secret and profiles stay as they were.

Uses the lab (fixed ports): `flock /tmp/recops-lab.lock .venv/bin/pytest tests/reliability/test_component_outages.py`.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.kube import Kubectl, conditions
from fixtures.operator import wait_for
from fixtures.outages import (
    World,
    create,
    job_run_dir,
    lab_info,
    lab_pipeline,
    outage_world,
    published,
    seed,
    start,
    stop,
)

pytestmark = [pytest.mark.integration, pytest.mark.lab("k8s", "mlflow", "postgres", "s3"), pytest.mark.timeout(900)]

BUCKET = "recops-outage"
S3_ENDPOINT = "http://127.0.0.1:15001"
RESULTS: list[str] = []


@pytest.fixture(scope="module")
def world(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with outage_world(cluster, tmp_path_factory.mktemp("outages"), "outage", BUCKET, 7) as w:
        yield w
    if RESULTS:
        print("\n" + "\n".join(RESULTS))


# -- objects and what they published ---------------------------------------------------------------------------------

def _job_log_tail(run_dir: Path, lines: int = 3) -> str:
    text = (run_dir / "log.txt").read_text(errors="replace") if (run_dir / "log.txt").exists() else ""
    msgs = []
    for line in text.splitlines():
        try:
            msgs.append(json.loads(line).get("msg", ""))
        except ValueError:
            continue
    return " > ".join(msgs[-lines:])


def _failed_run(k: Kubectl, kind: str, name: str, summary: str) -> dict[str, Any]:
    def failed() -> dict[str, Any] | None:
        obj = k.get_json(kind, name)
        cond = conditions(obj).get(summary, {})
        return obj if cond.get("status") == "False" and cond.get("reason") not in ("ChildrenPending",) else None

    return dict(wait_for(failed, 180, f"{kind} {name}: {summary}=False after the outage", interval=0.5))


# -- FeaturePipeline: S3 and PostgreSQL -------------------------------------------------------------------------------

@pytest.mark.parametrize(("component", "reason"), [("s3", "S3Unavailable"), ("postgres", "PostgresUnavailable")])
def test_feature_job_fails_clearly_when_a_store_goes_away_and_recovers(world: World, component: str,
                                                                       reason: str) -> None:
    k, name = world.k, f"fp-{component}"
    output = world.tmp / f"snapshots-{component}"
    uid = create(k, lab_pipeline(name, BUCKET, output, S3_ENDPOINT, backoff_limit=0))["metadata"]["uid"]
    run_dir = job_run_dir(world, uid)
    stopped = time.monotonic()
    port = stop(world.lab, component)
    stop_seconds = time.monotonic() - stopped
    try:
        obj = _failed_run(k, "fp", name, "Ready")
        failed_after = time.monotonic() - stopped
    finally:
        start_seconds = start(world.lab, component, port)
    back = time.monotonic()
    if component == "s3":  # the emulator lost its objects (see the module docstring): put them back
        seed(world.lab, world.data, BUCKET, ("s3",))
    cond = conditions(obj)["Ready"]
    assert obj["status"]["lastRun"]["result"] == "Failed", obj["status"]["lastRun"]
    assert cond["reason"] == reason, cond
    assert {"s3": "S3", "postgres": "PostgreSQL"}[component] in cond["message"], cond
    assert "latestSnapshot" not in obj["status"]
    assert published(output) == [], "the failed run published a snapshot"
    events = k.run("get", "events", "--field-selector", f"involvedObject.name={name}").stdout
    assert reason in events and "Warning" in events, events

    k.run("annotate", "fp", name, "recops.dev/run-requested=after-outage")
    done = wait_for(lambda: (o := k.get_json("fp", name)).get("status", {}).get("latestSnapshot") and
                    conditions(o)["Ready"]["status"] == "True" and o, 180,
                    "a requested run to publish a snapshot after the outage", interval=0.5)
    recovery = time.monotonic() - back
    (version,) = published(output)
    assert done["status"]["latestSnapshot"]["version"] == version
    assert world.op.proc is not None and world.op.proc.poll() is None, "the operator exited"
    assert world.op.logs().count("Started the Recops operator") == 1
    RESULTS.append(f"{component}: stopped in {stop_seconds:.1f}s while the feature job ran (its log then: "
                   f"{_job_log_tail(run_dir)}); Ready=False {cond['reason']} {failed_after:.1f}s after the stop: "
                   f"{cond['message']!r}; back in {start_seconds:.1f}s; a requested run published snapshot "
                   f"{version[:12]} {recovery:.1f}s after it was back; nothing half-published")


# -- TrainingRun: MLflow --------------------------------------------------------------------------------------------

def _model_versions(uri: str, model: str, workdir: Path) -> dict[str, list[str]]:
    """Every registered version of `model` with the files its artifacts hold (downloaded through the server)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # removed below: operators started later inherit
    found = {}
    for mv in MlflowClient(uri).search_model_versions(f"name='{model}'"):
        dst = workdir / f"v{mv.version}"
        dst.mkdir(parents=True, exist_ok=True)
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model}/{mv.version}",
                                                             dst_path=str(dst)))
            found[str(mv.version)] = sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file())
        except Exception as exc:  # a version whose artifacts cannot be fetched is what this test looks for
            found[str(mv.version)] = [f"<unavailable: {exc}>"]
    os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
    return found


def _training(name: str, pipeline: str, uri: str, model: str) -> dict[str, Any]:
    return {"apiVersion": "recops.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": name},
            "spec": {"backend": "local", "snapshot": {"featurePipelineRef": {"name": pipeline}},
                     "algorithm": {"name": "ease", "params": [{"name": "l2", "value": "200"}]},
                     "evaluation": {"holdoutDays": 7, "k": [10]},
                     "mlflow": {"trackingUri": uri, "experiment": "outage", "modelName": model},
                     "promotion": {"alias": "champion", "metric": "ndcg_at_10", "minImprovement": "0"}}}


def test_training_job_fails_clearly_when_mlflow_goes_away_and_publishes_nothing_half(world: World) -> None:
    k, uri = world.k, lab_info(world.lab).mlflow_uri
    model = f"outage-{uuid.uuid4().hex[:6]}"
    create(k, lab_pipeline("fp-mlflow", BUCKET, world.tmp / "snapshots-mlflow", S3_ENDPOINT, backoff_limit=0))
    wait_for(lambda: k.get_json("fp", "fp-mlflow").get("status", {}).get("latestSnapshot"), 180, "a snapshot")
    uid = create(k, _training("tr-cut", "fp-mlflow", uri, model))["metadata"]["uid"]
    run_dir = job_run_dir(world, uid)
    # Cut MLflow once the job has created its MLflow run: mid-job, before the model is logged and registered.
    wait_for(lambda: "Started the MLflow run" in _job_log_tail(run_dir, 50) or (run_dir / "exit.json").exists(),
             120, "the training job to start its MLflow run", interval=0.05)
    stopped = time.monotonic()
    port = stop(world.lab, "mlflow", freeze=True)
    try:
        cut_at = _job_log_tail(run_dir)
        # While MLflow is down the operator's own check of spec.mlflow.trackingUri names it ...
        waiting = wait_for(lambda: (c := conditions(k.get_json("tr", "tr-cut")).get("Succeeded", {})) and
                           c.get("reason") == "MLflowUnavailable" and c, 60,
                           "Succeeded=Unknown MLflowUnavailable while MLflow is down", interval=0.5)
        seen_after = time.monotonic() - stopped
        # ... and the job itself gives up (it does not wait for MLflow) with a result naming it.
        wait_for(lambda: (run_dir / "exit.json").exists(), 180, "the training job to end while MLflow is down")
        job_ended_after = time.monotonic() - stopped
        job_result = json.loads((run_dir / "result.json").read_text())
    finally:
        start_seconds = start(world.lab, "mlflow", port)
    back = time.monotonic()
    obj = _failed_run(k, "tr", "tr-cut", "Succeeded")
    failed_after_back = time.monotonic() - back
    cond = conditions(obj)["Succeeded"]
    assert waiting["status"] == "Unknown" and "spec.mlflow.trackingUri" in waiting["message"], waiting
    assert job_result["reason"] == "MLflowUnavailable" and not job_result.get("ok", False), job_result
    assert cond["reason"] == "MLflowUnavailable", cond
    assert "MLflow" in cond["message"], cond
    assert "modelVersion" not in obj["status"], obj["status"]
    versions = _model_versions(uri, model, world.tmp / "cut")
    assert all("MLmodel" in files for files in versions.values()), f"a model version without artifacts: {versions}"

    # MLflow is back: a new TrainingRun trains, registers one version, with its artifacts.
    create(k, _training("tr-after", "fp-mlflow", uri, model))
    done = wait_for(lambda: (o := k.get_json("tr", "tr-after")) and
                    conditions(o).get("Succeeded", {}).get("status") in ("True", "False") and o, 300,
                    "the TrainingRun after MLflow came back", interval=0.5)
    recovery = time.monotonic() - back
    assert conditions(done)["Succeeded"]["status"] == "True", conditions(done)
    versions_after = _model_versions(uri, model, world.tmp / "after")
    assert len(versions_after) == len(versions) + 1, versions_after
    assert all("MLmodel" in files for files in versions_after.values()), versions_after
    assert done["status"]["modelVersion"] in versions_after
    assert world.op.proc is not None and world.op.proc.poll() is None, "the operator exited"
    RESULTS.append(f"mlflow: frozen and stopped when the training job had logged '{cut_at}'; the operator said "
                   f"Succeeded=Unknown {waiting['reason']} {seen_after:.1f}s after the stop: {waiting['message']!r}; "
                   f"the job ended {job_ended_after:.1f}s after the stop; Succeeded=False {cond['reason']} "
                   f"{failed_after_back:.1f}s after MLflow was back: {cond['message']!r}; "
                   f"{len(versions)} model version(s) left by the cut run; MLflow back in {start_seconds:.1f}s; "
                   f"a new TrainingRun registered version {done['status']['modelVersion']} (with MLmodel) "
                   f"{recovery:.1f}s after it was back")

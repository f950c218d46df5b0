"""``recops-drift run`` as a process against a real MLflow server and an S3 emulator (moto server).

The reference profile is the artifact of the model version's MLflow run; payload logs are JSON lines
under an S3 prefix (moto: an emulator); the report is logged back to MLflow or written to S3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
NOW = datetime.now(UTC).replace(microsecond=0)
CANARY_KEY = "AKIACANARYDRIFT0001"
CANARY_SECRET = "canary-secret-drift-7f3c9a"
ITEMS = [f"i{i}" for i in range(300)]
POPULARITY = (1000.0 / (1 + np.arange(300))).astype(np.float32)
CATEGORIES = [("books", "toys", "garden")[i % 3] for i in range(300)]


def _env(mlflow_uri: str, s3_endpoint: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "drift"), os.environ.get("PYTHONPATH", "")]),
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "AWS_ACCESS_KEY_ID": CANARY_KEY,
        "AWS_SECRET_ACCESS_KEY": CANARY_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    }


def _s3(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=CANARY_KEY,
        aws_secret_access_key=CANARY_SECRET,
        region_name="us-east-1",
    )


@pytest.fixture(scope="module")
def registered(drift_mlflow: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A run holding reference_profile.json, registered as model ``recs`` version 1, alias champion."""
    import mlflow
    from recops_drift.profile import build_reference_profile

    rng = np.random.default_rng(5)
    recommended = rng.choice(ITEMS, p=POPULARITY / POPULARITY.sum(), size=20_000)
    profile = build_reference_profile(
        {},
        recommended_items=recommended,
        item_ids=ITEMS,
        item_popularity=POPULARITY,
        item_categories=CATEGORIES,
    )
    d = tmp_path_factory.mktemp("ref")
    (d / "reference_profile.json").write_text(profile.dumps())
    client = mlflow.MlflowClient(tracking_uri=drift_mlflow)
    experiment = client.create_experiment("drift-it")
    run = client.create_run(experiment)
    client.log_artifact(run.info.run_id, str(d / "reference_profile.json"))
    client.set_terminated(run.info.run_id)
    client.create_registered_model("recs")
    mv = client.create_model_version("recs", f"{run.info.artifact_uri}/reference_profile.json", run_id=run.info.run_id)
    client.set_registered_model_alias("recs", "champion", mv.version)
    return {"run_id": run.info.run_id, "version": str(mv.version)}


def _put_logs(s3: Any, bucket: str, prefix: str, *, drift: bool, n: int = 800, version: str = "1") -> None:
    rng = np.random.default_rng(11 if drift else 12)
    weights = np.ones(len(ITEMS)) / len(ITEMS) if drift else POPULARITY / POPULARITY.sum()
    lines = []
    for j in range(n):
        ts = NOW - timedelta(minutes=5 + j)
        lines.append(
            json.dumps(
                {
                    "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                    "model": "recs",
                    "modelVersion": version,
                    "route": "single",
                    "userId": f"u{j}",
                    "k": 10,
                    "category": None,
                    "excludeSeen": True,
                    "excludeCount": 0,
                    "knownUser": True,
                    "fallback": False,
                    "itemIds": [str(x) for x in rng.choice(ITEMS, p=weights, size=10)],
                    "scores": [1.0] * 10,
                }
            )
        )
    by_day: dict[str, list[str]] = {}
    for line in lines:
        by_day.setdefault(json.loads(line)["ts"][:10], []).append(line)
    for day, body in by_day.items():
        s3.put_object(
            Bucket=bucket,
            Key=f"{prefix}/date={day}/payloads-{len(body)}.jsonl",
            Body=("\n".join(body) + "\n").encode(),
        )


def _run(tmp: Path, config: dict[str, Any], env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    cfg = tmp / "config.json"
    cfg.write_text(json.dumps(config))
    out = tmp / "result.json"
    done = subprocess.run(
        [sys.executable, "-m", "recops_drift", "run", "--config", str(cfg), "--result-file", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    body = out.read_text()
    assert len(body.encode()) < 4096
    for secret in (CANARY_KEY, CANARY_SECRET):
        assert secret not in body and secret not in done.stderr and secret not in done.stdout
    return done.returncode, json.loads(body), done.stderr


def test_drift_check_mlflow_reference_and_s3_emulator_payload_logs(
    drift_mlflow: str, drift_s3: str, registered: dict[str, str], tmp_path: Path
) -> None:
    import mlflow

    s3 = _s3(drift_s3)
    s3.create_bucket(Bucket="logs")
    _put_logs(s3, "logs", "recs/ok", drift=False)
    _put_logs(s3, "logs", "recs/bad", drift=True)
    _put_logs(s3, "logs", "recs/bad", drift=False, version="0", n=50)  # another version: ignored
    env = _env(drift_mlflow, drift_s3)
    base: dict[str, Any] = {
        "monitor": "recs-drift",
        "namespace": "shop",
        "reference": {"mlflow": {"modelName": "recs", "modelAlias": "champion"}},
        "current": {"payloadLogs": {"uri": "s3://logs/recs/ok", "duration": "24h"}},
        "features": [
            {"name": "output.popularity", "method": "ks", "threshold": "0.1"},
            {"name": "output.category", "method": "chi2", "threshold": "0.1"},
        ],
        "driftShare": "0.5",
        "minSamples": 200,
        "report": {"mlflow": {"attachTo": "ReferenceRun"}},
    }
    code, doc, log = _run(tmp_path, base, env)
    assert code == 0, (doc, log[-2000:])
    assert doc["reason"] == "NoDrift" and doc["samples"] == 800 and doc["referenceVersion"] == registered["version"]
    client = mlflow.MlflowClient(tracking_uri=drift_mlflow)
    listed = [a.path for a in client.list_artifacts(registered["run_id"], "drift")]
    assert any(p.endswith(".html") for p in listed), listed
    assert doc["reportUri"].endswith(".html")

    drifted = {
        **base,
        "current": {"payloadLogs": {"uri": "s3://logs/recs/bad", "duration": "24h"}},
        "report": {"path": "s3://logs/reports/recs-drift.html", "mlflow": {"attachTo": "MonitoringRun"}},
    }
    code, doc, log = _run(tmp_path, drifted, env)
    assert code == 0, (doc, log[-2000:])
    assert doc["reason"] == "DriftDetected" and doc["drifted"] is True and doc["samples"] == 800
    assert doc["reportUri"] == "s3://logs/reports/recs-drift.html"
    html = s3.get_object(Bucket="logs", Key="reports/recs-drift.html")["Body"].read().decode()
    assert "data:image/png;base64," in html
    experiment = client.get_experiment_by_name("recops-drift")
    runs = client.search_runs([experiment.experiment_id])
    assert runs and runs[0].data.metrics["drift_detected"] == 1.0
    assert runs[0].data.tags["recops.referenceRun"] == registered["run_id"]


def test_drift_check_unknown_model_version_is_invalid_input(
    drift_mlflow: str, drift_s3: str, registered: dict[str, str], tmp_path: Path
) -> None:
    config = {
        "reference": {"mlflow": {"modelName": "recs", "modelVersion": "99"}},
        "current": {"payloadLogs": {"uri": "s3://logs/recs/ok"}},
    }
    code, doc, _ = _run(tmp_path, config, _env(drift_mlflow, drift_s3))
    assert code == 2 and doc["ok"] is False and doc["reason"] == "ReferenceNotFound", doc


def test_drift_check_mlflow_unreachable_is_retryable(drift_s3: str, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = f"http://127.0.0.1:{port}"  # nothing listens there
    config = {
        "reference": {"mlflow": {"modelName": "recs", "modelAlias": "champion"}},
        "current": {"payloadLogs": {"uri": "s3://logs/recs/ok"}},
    }
    code, doc, _ = _run(tmp_path, config, _env(dead, drift_s3))
    assert code == 4 and doc["ok"] is False and doc["reason"] == "MLflowUnavailable", doc


def test_drift_check_s3_emulator_missing_bucket_is_invalid_input(
    drift_mlflow: str, drift_s3: str, registered: dict[str, str], tmp_path: Path
) -> None:
    config = {
        "reference": {"mlflow": {"runId": registered["run_id"]}},
        "current": {"payloadLogs": {"uri": "s3://no-such-bucket/logs"}},
    }
    code, doc, _ = _run(tmp_path, config, _env(drift_mlflow, drift_s3))
    assert code == 2 and doc["reason"] == "NotFound", doc


def test_drift_check_training_document_uses_the_served_models_item_lookup(
    drift_mlflow: str, drift_s3: str, tmp_path: Path
) -> None:
    """The TrainingRun's own document has no item lookup: the check reads item ids, categories and
    popularity from the registered recops model (pyfunc artifact ``recops_model``), digest-checked."""
    import mlflow
    import scipy.sparse as sp

    sys.path.insert(0, str(ROOT / "model-format"))
    recops_model = pytest.importorskip("recops_model")
    from recops_model.pyfunc import log_model

    model = recops_model.RecModel(
        algorithm="popularity",
        kind="popularity",
        user_ids=np.array(["u1", "u2"]),
        item_ids=np.array(ITEMS),
        seen=sp.csr_matrix((2, len(ITEMS)), dtype=np.float32),
        popularity=POPULARITY,
        item_categories=np.array(CATEGORIES),
    )
    mlflow.set_tracking_uri(drift_mlflow)
    mlflow.set_experiment("drift-it-model")
    rng = np.random.default_rng(6)
    rec = rng.choice(len(ITEMS), p=POPULARITY / POPULARITY.sum(), size=20_000)
    pop = POPULARITY[rec]
    cats, counts = np.unique(np.array(CATEGORIES)[rec], return_counts=True)
    doc = {
        "kind": "RecopsReferenceProfile",
        "formatVersion": 1,
        "snapshot": {"version": "v1"},
        "predictions": {
            "k": 10,
            "users": 2000,
            "categoryShare": {str(c): float(n) / rec.size for c, n in zip(cats, counts, strict=True)},
            "recommendedPopularity": {
                "mean": float(pop.mean()),
                "quantiles": {str(q): float(np.quantile(pop, q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9)},
            },
        },
    }
    with mlflow.start_run() as run:
        (tmp_path / "reference_profile.json").write_text(json.dumps(doc))
        mlflow.log_artifact(str(tmp_path / "reference_profile.json"))
        info = log_model(model, "model")
    mv = mlflow.register_model(getattr(info, "model_uri", f"runs:/{run.info.run_id}/model"), "recs-model")
    s3 = _s3(drift_s3)
    s3.create_bucket(Bucket="logs2")
    _put_logs(s3, "logs2", "p", drift=True, version=str(mv.version))
    config = {
        "reference": {"mlflow": {"modelName": "recs-model", "modelVersion": str(mv.version)}},
        "current": {"payloadLogs": {"uri": "s3://logs2/p", "duration": "24h"}},
        "defaultRule": {"method": "psi", "threshold": "0.2"},
        "minSamples": 200,
    }
    code, result, log = _run(tmp_path, config, _env(drift_mlflow, drift_s3))
    assert code == 0, (result, log[-3000:])
    names = {f["name"] for f in result["features"]}
    assert names == {"output.popularity", "output.category"}, (result, log[-3000:])
    assert result["reason"] == "DriftDetected" and "output.popularity" in result["driftedFeatures"]

"""Helpers of the training integration tests: run ``recops-train`` as a subprocess against a real MLflow
server, build its config, and read the registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def job_env(uri):
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "PYTHONPATH": os.pathsep.join(str(ROOT / s) for s in ("training", "model-format")),
        "OPENBLAS_NUM_THREADS": "1",
    }
    env.pop("RECOPS_RESULT_FILE", None)
    # mlflow.set_registry_uri() in this process exports MLFLOW_REGISTRY_URI (and set_registry_uri(None) keeps
    # it): the job must use the server it was given for the registry too
    env.pop("MLFLOW_REGISTRY_URI", None)
    return env


def train_command(tmp_path, cfg, name):
    """The job's command line for ``cfg`` (written to <name>.json) and where it writes its result."""
    cfg_path = tmp_path / f"{name}.json"
    cfg_path.write_text(json.dumps(cfg))
    result = tmp_path / f"{name}.result.json"
    command = [sys.executable, "-m", "recops_training", "run", "--config", str(cfg_path), "--result-file", str(result)]
    return command, result


def run_train(tmp_path, cfg, uri, name="r"):
    """Run the job once; return (exit code, result document, stderr, seconds)."""
    command, result = train_command(tmp_path, cfg, name)
    t0 = time.monotonic()
    p = subprocess.run(command, env=job_env(uri), capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - t0
    assert result.exists(), p.stderr[-3000:]
    out = json.loads(result.read_text())
    assert len(result.read_bytes()) < 4096
    return p.returncode, out, p.stderr, elapsed


def config(snapshot, model, key, algorithm="itemknn", params=None, **over):
    cfg = {
        "runKey": key,
        "snapshot": {"uri": str(snapshot)},
        "algorithm": {"name": algorithm, "params": params if params is not None else {"neighbors": 50}},
        "evaluation": {"holdoutDays": 7, "ks": [5, 10, 20]},
        "promotion": {"metric": "ndcg_at_10", "margin": "0.001"},
        "mlflow": {"experimentName": f"it-{model}", "registeredModelName": model, "tags": {"recops.dev/cr": "demo"}},
    }
    cfg.update(over)
    return cfg


def client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def versions_of(c, model):
    return sorted(int(v.version) for v in c.search_model_versions(f"name = '{model}'"))

"""recops-train against a real ``mlflow server`` (SQLite + local artifacts): run, registered version,
alias promotion, refusal with a reason, idempotent reruns, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def run_train(tmp_path, cfg, uri, name="r"):
    cfg_path = tmp_path / f"{name}.json"
    cfg_path.write_text(json.dumps(cfg))
    result = tmp_path / f"{name}.result.json"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "PYTHONPATH": os.pathsep.join(str(ROOT / s) for s in ("training", "model-format")),
        "OPENBLAS_NUM_THREADS": "1",
    }
    env.pop("RECOPS_RESULT_FILE", None)
    t0 = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-m", "recops_training", "run", "--config", str(cfg_path), "--result-file", str(result)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
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


def test_train_registers_promotes_and_reruns_idempotently(tmp_path, mlflow_server, snapshot_dir):
    model = "it-recs"
    code, res, err, _ = run_train(tmp_path, config(snapshot_dir, model, "uid-a-1"), mlflow_server, "first")
    assert code == 0, (res, err[-3000:])
    assert res["ok"] is True and res["reason"] == "Promoted" and res["promoted"] is True
    assert res["modelName"] == model and res["modelVersion"] == "1"
    assert res["snapshotVersion"] == snapshot_dir.name
    assert float(res["metrics"]["ndcg_at_10"]) > float(res["baselineMetrics"]["ndcg_at_10"])
    assert all(isinstance(v, str) for v in res["metrics"].values())
    assert "baseline" in res["promotionReason"]
    c = client(mlflow_server)
    assert c.get_model_version_by_alias(model, "champion").version == "1"
    run = c.get_run(res["runId"])
    assert run.info.experiment_id == res["experimentId"]
    assert run.data.params["algorithm"] == "itemknn" and run.data.params["param.neighbors"] == "50"
    assert run.data.tags["recops.snapshotVersion"] == snapshot_dir.name
    assert run.data.tags["recops.runKey"] == "uid-a-1" and run.data.tags["recops.dev/cr"] == "demo"
    assert "baseline_ndcg_at_10" in run.data.metrics and "ndcg_at_10_repeat" in run.data.metrics
    assert [i.dataset.digest for i in run.inputs.dataset_inputs] == [snapshot_dir.name[:36]]
    arts = {a.path for a in c.list_artifacts(res["runId"])} | {a.path for a in c.list_artifacts(res["runId"], "report")}
    assert {"reference_profile.json", "report/report.html", "report/metrics_by_k.png", "report/popularity.png"} <= arts
    prof = json.loads(Path(c.download_artifacts(res["runId"], "reference_profile.json", str(tmp_path))).read_text())
    assert prof["snapshot"]["version"] == snapshot_dir.name and prof["tables"]["interactions"]["rows"] > 0
    assert abs(sum(prof["predictions"]["categoryShare"].values()) - 1) < 1e-3

    # the registered version is a working pyfunc (models from code; arrays verified by recops_model)
    import mlflow.pyfunc
    import pandas as pd

    os.environ["MLFLOW_TRACKING_URI"] = mlflow_server
    mlflow.set_tracking_uri(mlflow_server)  # process-global: another test module may have pointed it elsewhere
    mlflow.set_registry_uri(mlflow_server)
    pm = mlflow.pyfunc.load_model(f"models:/{model}@champion")
    pred = pm.predict(pd.DataFrame({"user_id": ["u1", "nobody"]}), params={"k": 5})
    assert len(pred["item_ids"][0]) == 5 and bool(pred["fallback"][1]) is True

    # rerun of the same job: same run, same version, no second version
    code2, res2, err2, _ = run_train(tmp_path, config(snapshot_dir, model, "uid-a-1"), mlflow_server, "again")
    assert code2 == 0, (res2, err2[-2000:])
    assert res2["runId"] == res["runId"] and res2["modelVersion"] == "1" and res2["reused"] is True
    assert res2["promotionDecision"] == "AlreadyChampion"
    assert versions_of(c, model) == [1]

    # a worse run (the popularity baseline itself) is registered but not promoted, and says why
    code3, res3, err3, _ = run_train(
        tmp_path, config(snapshot_dir, model, "uid-b-1", algorithm="popularity", params={}), mlflow_server, "worse"
    )
    assert code3 == 3, (res3, err3[-2000:])
    assert res3["ok"] is False and res3["reason"] == "PromotionRefused" and res3["promoted"] is False
    assert res3["modelVersion"] == "2" and "does not beat the popularity baseline" in res3["promotionReason"]
    assert c.get_model_version_by_alias(model, "champion").version == "1"

    # a badly parameterised model that still beats popularity but not the champion
    bad = config(snapshot_dir, model, "uid-c-1", algorithm="puresvd", params={"factors": 2})
    code4, res4, err4, _ = run_train(tmp_path, bad, mlflow_server, "bad")
    assert code4 == 3, (res4, err4[-2000:])
    assert res4["promotionDecision"] in ("NotBetterThanChampion", "WorseThanBaseline")
    assert c.get_model_version_by_alias(model, "champion").version == "1"
    assert versions_of(c, model) == [1, 2, 3]


def test_attempt_killed_after_creating_the_run_is_resumed(tmp_path, mlflow_server, snapshot_dir):
    """A previous attempt died after creating its run (no model, no version): the rerun resumes that
    run and registers exactly one version."""
    model = "it-killed"
    c = client(mlflow_server)
    exp = c.get_experiment_by_name(f"it-{model}")
    exp_id = exp.experiment_id if exp else c.create_experiment(f"it-{model}")
    dead = c.create_run(exp_id, tags={"recops.runKey": "uid-k-1"})
    code, res, err, _ = run_train(
        tmp_path,
        config(snapshot_dir, model, "uid-k-1", algorithm="rp3beta", params={"beta": "0.3"}),
        mlflow_server,
        "k",
    )
    assert code == 0, (res, err[-3000:])
    assert res["runId"] == dead.info.run_id and res["modelVersion"] == "1"
    code, res, err, _ = run_train(
        tmp_path,
        config(snapshot_dir, model, "uid-k-1", algorithm="rp3beta", params={"beta": "0.3"}),
        mlflow_server,
        "k2",
    )
    assert code == 0 and res["reused"] is True
    assert versions_of(c, model) == [1]


def test_concurrent_attempts_register_one_version(tmp_path, mlflow_server, snapshot_dir):
    model = "it-concurrent"
    cfg = config(snapshot_dir, model, "uid-cc-1", algorithm="puresvd", params={"factors": 16})
    paths = []
    procs = []
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": mlflow_server,
        "OPENBLAS_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(str(ROOT / s) for s in ("training", "model-format")),
    }
    for i in range(2):
        p = tmp_path / f"cc{i}.json"
        p.write_text(json.dumps(cfg))
        paths.append(tmp_path / f"cc{i}.result.json")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "recops_training", "run", "--config", str(p), "--result-file", str(paths[-1])],
                env=env,
                stderr=subprocess.DEVNULL,
            )
        )
    codes = [pr.wait(timeout=600) for pr in procs]
    assert set(codes) <= {0, 4}, codes  # 4 = the other attempt holds the run key: retry later
    code, res, err, _ = run_train(tmp_path, cfg, mlflow_server, "cc-after")
    assert code == 0, (res, err[-2000:])
    assert versions_of(client(mlflow_server), model) == [1]


def test_missing_snapshot_exits_2(tmp_path, mlflow_server):
    code, res, _, _ = run_train(
        tmp_path, config(tmp_path / "no-such-snapshot", "it-missing", "uid-m-1"), mlflow_server, "m"
    )
    assert code == 2 and res["reason"] == "SnapshotNotFound" and "snapshot.uri" in res["message"]


def test_unknown_metric_exits_2(tmp_path, mlflow_server, snapshot_dir):
    cfg = config(snapshot_dir, "it-metric", "uid-x-1", promotion={"metric": "ndcg_at_15"})
    code, res, _, _ = run_train(tmp_path, cfg, mlflow_server, "x")
    assert code == 2 and res["reason"] == "UnknownMetric" and "ndcg_at_15" in res["message"]


def test_unreachable_mlflow_exits_4(tmp_path, snapshot_dir):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, res, _, elapsed = run_train(
        tmp_path, config(snapshot_dir, "it-down", "uid-d-1"), f"http://127.0.0.1:{port}", "d"
    )
    assert code == 4 and res["reason"] == "MlflowUnavailable" and res["ok"] is False
    assert elapsed < 60

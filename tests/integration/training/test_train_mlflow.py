"""recops-train against a real ``mlflow server`` (SQLite + local artifacts): run, registered version,
alias promotion, refusal with a reason, idempotent reruns, exit codes."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from integration.training.jobs import client, config, job_env, run_train, train_command, versions_of
from recops_training.tracking import ensure_experiment, find_run

pytestmark = pytest.mark.integration


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
    env = job_env(mlflow_server)
    commands = [train_command(tmp_path, cfg, f"cc{i}")[0] for i in range(2)]
    procs = [subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL) for command in commands]
    codes = [pr.wait(timeout=600) for pr in procs]
    assert set(codes) <= {0, 4}, codes  # 4 = the other attempt holds the run key: retry later
    code, res, err, _ = run_train(tmp_path, cfg, mlflow_server, "cc-after")
    assert code == 0, (res, err[-2000:])
    assert versions_of(client(mlflow_server), model) == [1]


def test_attempt_that_went_silent_is_taken_over_after_its_lease(tmp_path, mlflow_server, snapshot_dir, monkeypatch):
    """A run whose attempt renewed its lease and then died: the next attempt waits for the lease to
    expire, then resumes that run and registers exactly one version."""
    model = "it-silent"
    monkeypatch.setenv("RECOPS_TRAIN_LEASE_SECONDS", "4")
    c = client(mlflow_server)
    exp = c.get_experiment_by_name(f"it-{model}")
    exp_id = exp.experiment_id if exp else c.create_experiment(f"it-{model}")
    dead = c.create_run(exp_id, tags={"recops.runKey": "uid-s-1", "recops.lease": f"gone-host-1 {time.time():.0f}"})
    code, res, err, _ = run_train(
        tmp_path, config(snapshot_dir, model, "uid-s-1", algorithm="puresvd", params={"factors": 8}), mlflow_server
    )
    assert code == 0, (res, err[-3000:])
    assert "another attempt is training" in err and "gone-host-1" in err
    assert res["runId"] == dead.info.run_id and res["modelVersion"] == "1"
    assert c.get_run(dead.info.run_id).data.tags["recops.lease"] == ""  # released when done
    assert versions_of(c, model) == [1]


def test_attempt_started_while_another_trains_waits_for_it(tmp_path, mlflow_server, snapshot_dir):
    """A second attempt that finds the first one's run still training (a live heartbeat) must not resume
    it: it waits, then reuses the version the first one registered."""
    model = "it-staggered"
    cfg = config(snapshot_dir, model, "uid-st-1", algorithm="puresvd", params={"factors": 16})
    c = client(mlflow_server)
    command, result_a = train_command(tmp_path, cfg, "a")
    first = subprocess.Popen(command, env=job_env(mlflow_server), stderr=subprocess.PIPE, text=True)
    exp_id = ensure_experiment(c, f"it-{model}")
    deadline = time.monotonic() + 120
    while find_run(c, exp_id, "uid-st-1") is None:
        assert first.poll() is None, first.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the first attempt never created its run"
        time.sleep(0.05)
    code_b, res_b, err_b, _ = run_train(tmp_path, cfg, mlflow_server, "b")
    _, err_a = first.communicate(timeout=600)
    assert first.returncode == 0, err_a[-3000:]
    assert code_b == 0, (res_b, err_b[-3000:])
    res_a = json.loads(result_a.read_text())
    assert res_b["reused"] is True and res_b["runId"] == res_a["runId"]
    assert res_b["modelVersion"] == res_a["modelVersion"] == "1"
    assert "another attempt is training" in err_b
    assert versions_of(c, model) == [1]


BAD_INPUTS = {
    "unknown algorithm": (
        {"algorithm": {"name": "deepfm", "params": {}}},
        "UnknownAlgorithm",
        ["algorithm.name", "deepfm", "itemknn"],
    ),
    "unknown parameter": (
        {"algorithm": {"name": "itemknn", "params": {"neighbours": 50}}},
        "InvalidAlgorithmParams",
        ["algorithm.params.neighbours", "neighbors"],
    ),
    "bad parameter value": (
        {"algorithm": {"name": "puresvd", "params": {"factors": -3}}},
        "InvalidAlgorithmParams",
        ["algorithm.params.factors"],
    ),
    "missing snapshot": ({"snapshot": {"uri": "/nonexistent/no-such-snapshot"}}, "SnapshotNotFound", ["snapshot.uri"]),
    "snapshot version mismatch": (
        {"snapshot": {"uri": "<snapshot>", "version": "sha256-other"}},
        "SnapshotVersionMismatch",
        ["snapshot.version", "sha256-other"],
    ),
    "unknown metric": (
        {"promotion": {"metric": "ndcg_at_15"}},
        "UnknownMetric",
        ["promotion.metric", "ndcg_at_15", "ndcg_at_10"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_and_registers_nothing(tmp_path, mlflow_server, snapshot_dir, case):
    """Each bad input of a TrainingRun: exit 2 (permanent), a reason and a message naming the field, and
    nothing half-made in MLflow: no run, no model version."""
    over, reason, words = BAD_INPUTS[case]
    model = "it-bad-" + case.replace(" ", "-")
    cfg = config(snapshot_dir, model, f"uid-{model}")
    for key, value in over.items():
        cfg[key] = {k: (str(snapshot_dir) if v == "<snapshot>" else v) for k, v in value.items()}
    code, res, err, _ = run_train(tmp_path, cfg, mlflow_server, "bad")
    assert code == 2, (res, err[-2000:])
    assert res["ok"] is False and res["reason"] == reason, res
    assert all(w in res["message"] for w in words), res["message"]
    c = client(mlflow_server)
    assert versions_of(c, model) == []
    exp = c.get_experiment_by_name(f"it-{model}")
    assert exp is None or c.search_runs([exp.experiment_id]) == []


def test_unreachable_mlflow_exits_4(tmp_path, snapshot_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, res, _, elapsed = run_train(
        tmp_path, config(snapshot_dir, "it-down", "uid-d-1"), f"http://127.0.0.1:{port}", "d"
    )
    assert code == 4 and res["reason"] == "MLflowUnavailable" and res["ok"] is False
    assert elapsed < 60


class _CutAtRegistration(ThreadingHTTPServer):
    """Fault injection between the job and the real MLflow server: a reverse proxy that forwards every
    request unchanged, except that it drops the connection (no answer) on paths containing ``cut``, as
    when the server becomes unreachable at exactly that moment."""

    daemon_threads = True

    def __init__(self, upstream: str, cut: str) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self.cut = cut
        self.dropped: list[str] = []
        super().__init__(("127.0.0.1", 0), _ForwardHandler)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ForwardHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def _forward(self) -> None:
        server: _CutAtRegistration = self.server  # type: ignore[assignment]
        body = self._body()
        if server.cut in self.path:
            server.dropped.append(self.path)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        up = http.client.HTTPConnection(server.upstream.hostname, server.upstream.port, timeout=300)
        skip = ("host", "connection", "transfer-encoding", "content-length")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
        up.request(self.command, self.path, body=body, headers=headers)
        resp = up.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in skip:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        up.close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward


def test_mlflow_unreachable_at_registration_exits_4_without_a_version(tmp_path, mlflow_server, snapshot_dir):
    """MLflow goes away exactly when the version would be created: exit 4 (retry later), no version at
    all; the retry (same runKey) resumes the logged model and registers exactly one version."""
    model = "it-cut"
    proxy = _CutAtRegistration(mlflow_server, "/model-versions/create")
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        code, res, err, _ = run_train(tmp_path, config(snapshot_dir, model, "uid-cut-1"), proxy.uri, "cut")
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert proxy.dropped, "the job never tried to create the model version"
    assert code == 4 and res["ok"] is False and res["reason"] == "MLflowUnavailable", (res, err[-2000:])
    c = client(mlflow_server)
    assert versions_of(c, model) == []
    code, res, err, _ = run_train(tmp_path, config(snapshot_dir, model, "uid-cut-1"), mlflow_server, "retry")
    assert code == 0 and res["reused"] is True and res["modelVersion"] == "1", (res, err[-2000:])
    assert versions_of(c, model) == [1]

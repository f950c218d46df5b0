"""The model server as a real process: MLflow registry rollouts and graceful shutdown under load."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from recops_model import save_model
from serverproc_helpers import big_model, small_model

pytestmark = pytest.mark.integration


def _wait_version(url: str, version: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = httpx.get(f"{url}/readyz", timeout=5).json()
        if body.get("model") and body["model"]["version"] == version:
            return body
        time.sleep(0.2)
    raise AssertionError(f"server did not switch to version {version}: {body}")


def test_registry_alias_rollout_and_refusal(
    mlflow_server: str, mlflow_artifacts: Path, start_server, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import mlflow
    from mlflow import MlflowClient
    from recops_model.pyfunc import log_model

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_experiment("recops-server-it")
    client = MlflowClient()
    name = "recs-it"
    versions = []
    before = set(mlflow_artifacts.rglob("MANIFEST.json")) if mlflow_artifacts.exists() else set()
    for shift in (0.0, 3.0, 5.0):
        with mlflow.start_run():
            info = log_model(small_model(shift), "model", registered_model_name=name)
        versions.append(str(info.registered_model_version))
    assert versions == ["1", "2", "3"]
    client.set_registered_model_alias(name, "champion", "1")

    # tamper version 3's stored artifacts after registration (as a compromised store would)
    # (the MLflow server is shared by this session's tests: only the three logged here count)
    manifests = sorted(set(mlflow_artifacts.rglob("MANIFEST.json")) - before, key=lambda p: p.stat().st_mtime)
    assert len(manifests) == 3
    tampered = manifests[-1].parent / "item_factors.npy"
    data = bytearray(tampered.read_bytes())
    data[-1] ^= 0xFF
    tampered.write_bytes(bytes(data))

    srv = start_server(
        {"RECOPS_MODEL_URI": f"models:/{name}@champion", "MLFLOW_TRACKING_URI": mlflow_server,
         "RECOPS_RELOAD_INTERVAL_SECONDS": "0.5"},
        ready_timeout=90,
    )  # fmt: skip
    r = httpx.get(f"{srv.url}/v1/recommendations/u1", params={"k": 2})
    assert r.status_code == 200
    assert r.json()["model"]["version"] == "1" and r.json()["model"]["name"] == name
    assert [i["itemId"] for i in r.json()["items"]] == ["d", "b"]

    client.set_registered_model_alias(name, "champion", "2")  # the rollout
    _wait_version(srv.url, "2")
    r = httpx.get(f"{srv.url}/v1/recommendations/u1", params={"k": 1})
    assert r.json()["items"] == [{"itemId": "c", "score": 3.0}] and r.headers["X-Model-Version"] == "2"

    client.set_registered_model_alias(name, "champion", "3")  # a tampered version
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready = httpx.get(f"{srv.url}/readyz").json()
        if ready["refusedVersions"]:
            break
        time.sleep(0.2)
    assert ready["refusedVersions"][0]["version"] == "3"
    assert ready["refusedVersions"][0]["reason"] == "DigestMismatch"
    assert ready["model"]["version"] == "2" and ready["ready"] is True
    assert httpx.get(f"{srv.url}/v1/recommendations/u1").json()["model"]["version"] == "2"
    metrics = httpx.get(f"{srv.url}/metrics").text
    assert 'recops_model_refused_info{model="recs-it",reason="DigestMismatch",version="3"} 1.0' in metrics
    assert 'recops_model_info{model="recs-it",version="2"} 1.0' in metrics

    client.set_registered_model_alias(name, "champion", "1")  # rollback
    _wait_version(srv.url, "1")


def test_pyfunc_loads_the_same_version(mlflow_server: str, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`mlflow.pyfunc.load_model` (what `mlflow models serve` uses) runs our model-from-code."""
    import mlflow
    import pandas as pd
    from recops_model.pyfunc import log_model

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_experiment("recops-pyfunc-it")
    with mlflow.start_run():
        info = log_model(small_model(), "model")
    pf = mlflow.pyfunc.load_model(info.model_uri)
    out = pf.predict(pd.DataFrame({"user_id": ["u1", "nobody"]}), params={"k": 2})
    assert out["item_ids"].tolist() == [["d", "b"], ["a", "b"]]
    assert out["fallback"].tolist() == [False, True]
    # no pickle in the logged model: code + plain arrays + JSON
    local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path)))
    assert not list(local.rglob("*.pkl")) and not list(local.rglob("*.pickle"))


def _load(url: str, stop: threading.Event, results: Counter[str], errors: list[str]) -> None:
    with httpx.Client(timeout=30) as c:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                r = c.get(f"{url}/v1/recommendations/u{i % 2000}", params={"k": 10})
                results[str(r.status_code)] += 1
            except httpx.HTTPError as exc:
                errors.append(repr(exc))


def test_sigterm_under_load_loses_no_request(tmp_path: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    save_model(big_model(), tmp_path / "model")
    srv = start_server(
        {"RECOPS_MODEL_URI": str(tmp_path / "model"), "RECOPS_DRAIN_SECONDS": "2",
         "RECOPS_RELOAD_INTERVAL_SECONDS": "0"}
    )  # fmt: skip
    stop = threading.Event()
    results: Counter[str] = Counter()
    errors: list[str] = []
    threads = [threading.Thread(target=_load, args=(srv.url, stop, results, errors)) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    before = sum(results.values())
    srv.proc.send_signal(signal.SIGTERM)
    # the load balancer's view: readyz turns 503 at once, the server keeps answering meanwhile
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline:
        if httpx.get(f"{srv.url}/readyz").status_code == 503:
            break
    assert httpx.get(f"{srv.url}/readyz").json()["reason"] == "Draining"
    time.sleep(0.8)  # still within the drain period: traffic continues
    stop.set()  # the endpoint was removed from the Service: no new requests
    for t in threads:
        t.join(30)
    assert srv.proc.wait(30) == 0, srv.log()[-2000:]
    assert errors == [], errors[:5]
    assert set(results) == {"200"}, results
    assert sum(results.values()) > before > 0


def test_sigterm_finishes_in_flight_requests(tmp_path: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    """Six batch requests are in flight when SIGTERM comes: each has sent its headers and holds back the rest of
    its body until after the signal (so they are in flight for sure, however fast scoring is), then each must
    still be scored and answered in full before the process exits."""
    save_model(big_model(), tmp_path / "model")
    srv = start_server({"RECOPS_MODEL_URI": str(tmp_path / "model"), "RECOPS_RELOAD_INTERVAL_SECONDS": "0"})
    payload = json.dumps({"requests": [{"userId": f"u{i}", "k": 100} for i in range(1000)]}).encode()
    json_type = {"content-type": "application/json"}
    warm = httpx.post(f"{srv.url}/v1/recommendations", content=payload, headers=json_type, timeout=60)
    assert warm.status_code == 200
    statuses: list[int | str] = []
    release = threading.Event()

    def held_body() -> Any:
        yield payload[:100]
        release.wait(60)
        yield payload[100:]

    def call() -> None:
        try:
            r = httpx.post(f"{srv.url}/v1/recommendations", content=held_body(), headers=json_type, timeout=60)
            statuses.append(r.status_code if r.status_code != 200 or len(r.json()["results"]) == 1000 else "short")
        except httpx.HTTPError as exc:
            statuses.append(repr(exc))

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until all six are in flight (accepted, bodies held back)
        m = re.search(r"^recops_in_flight_requests (\S+)$", httpx.get(f"{srv.url}/metrics").text, re.M)
        if m and float(m.group(1)) >= 6:
            break
        time.sleep(0.01)
    else:
        raise AssertionError("the six requests never were in flight together")
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)  # the server is shutting down now, with six requests half received
    release.set()
    for t in threads:
        t.join(120)
    assert statuses == [200] * 6, (statuses, srv.log()[-2000:])
    assert srv.proc.wait(30) == 0
    log = srv.log()
    assert "Waiting for connections to close" in log or "Shutting down" in log
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{srv.url}/healthz", timeout=2)


def test_payload_logs_written_by_real_process(tmp_path: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    save_model(small_model(), tmp_path / "model")
    out = tmp_path / "payloads"
    srv = start_server(
        {"RECOPS_MODEL_URI": str(tmp_path / "model"), "RECOPS_PAYLOAD_LOG_DIR": str(out),
         "RECOPS_PAYLOAD_LOG_SAMPLE_RATE": "1", "RECOPS_PAYLOAD_LOG_FLUSH_SECONDS": "0.2"}
    )  # fmt: skip
    for u in ("u1", "u2", "zz"):
        assert httpx.get(f"{srv.url}/v1/recommendations/{u}").status_code == 200
    deadline = time.monotonic() + 10
    records: list[dict[str, Any]] = []
    while time.monotonic() < deadline and len(records) < 3:
        records = [json.loads(line) for f in out.glob("date=*/*.jsonl") for line in f.read_text().splitlines()]
        time.sleep(0.2)
    assert sorted(r["userId"] for r in records) == ["u1", "u2", "zz"]

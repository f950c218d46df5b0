"""Hot reload under load: a real server process following a real MLflow registry alias (SQLite backend
store, local artifacts) while eight clients keep requesting. The alias moves 1 -> 2 -> 3 (tampered after
registration: must be refused) -> 4. No request may fail, every response must be internally consistent
(its items are the ones of the version it names), and once the server reports a version, every request
sent afterwards is answered by it."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from serverproc_helpers import small_model

pytestmark = pytest.mark.integration

# small_model(shift): u1's best unseen item is d (score 2.0) unless shift > 2 makes c the best
EXPECTED_TOP = {"1": ("d", 2.0), "2": ("c", 3.0), "4": ("c", 5.0)}
SHIFTS = {"1": 0.0, "2": 3.0, "3": 4.0, "4": 5.0}


class Load:
    """Eight client threads: GET for u1 (k=1) and POST batches, recording every answer with its send time."""

    def __init__(self, url: str, threads: int = 8) -> None:
        self.url = url
        self.stop = threading.Event()
        self.answers: list[tuple[int, float, int, str, str, float]] = []  # thread, sent, status, version, item, score
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, n: int) -> None:
        with httpx.Client(timeout=30) as c:
            while not self.stop.is_set():
                sent = time.monotonic()
                try:
                    if n % 4 == 3:  # a quarter of the clients use the batch route
                        r = c.post(f"{self.url}/v1/recommendations", json={"requests": [{"userId": "u1", "k": 1}]})
                        body = r.json()
                        item = body["results"][0]["items"][0] if r.status_code == 200 else {}
                    else:
                        r = c.get(f"{self.url}/v1/recommendations/u1", params={"k": 1})
                        body = r.json()
                        item = body["items"][0] if r.status_code == 200 else {}
                    version = body["model"]["version"] if r.status_code == 200 else ""
                    if r.status_code == 200 and r.headers["X-Model-Version"] != version:
                        self.errors.append(f"header {r.headers['X-Model-Version']} != body {version}")
                    with self.lock:
                        self.answers.append(
                            (n, sent, r.status_code, version, item.get("itemId", ""), item.get("score", 0.0))
                        )
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    self.errors.append(repr(exc))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def _wait_ready_version(url: str, version: str, timeout: float = 60) -> float:
    """Poll /readyz until it serves ``version``; returns the time the answer came back."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = httpx.get(f"{url}/readyz", timeout=5).json()
        if body.get("model") and body["model"]["version"] == version:
            return time.monotonic()
        time.sleep(0.1)
    raise AssertionError(f"server did not switch to version {version}: {body}")


def test_hot_reload_under_load_has_no_failed_request(
    mlflow_server: str, mlflow_artifacts: Path, start_server, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import mlflow
    from mlflow import MlflowClient
    from recops_model.pyfunc import log_model

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_experiment("recops-server-hot-reload")
    client = MlflowClient()
    name = "recs-hot-reload"
    versions: list[str] = []
    for v, shift in SHIFTS.items():
        before = set(mlflow_artifacts.rglob("MANIFEST.json")) if mlflow_artifacts.exists() else set()
        with mlflow.start_run():
            info = log_model(small_model(shift), "model", registered_model_name=name)
        versions.append(str(info.registered_model_version))
        if v == "3":  # tamper version 3's stored artifacts after registration (as a compromised store would)
            (manifest,) = set(mlflow_artifacts.rglob("MANIFEST.json")) - before
            tampered = manifest.parent / "item_factors.npy"
            data = bytearray(tampered.read_bytes())
            data[-1] ^= 0xFF
            tampered.write_bytes(bytes(data))
    assert versions == list(SHIFTS)
    client.set_registered_model_alias(name, "champion", "1")
    srv = start_server(
        {"RECOPS_MODEL_URI": f"models:/{name}@champion", "MLFLOW_TRACKING_URI": mlflow_server,
         "RECOPS_RELOAD_INTERVAL_SECONDS": "0.3"},
        ready_timeout=90,
    )  # fmt: skip

    switched: dict[str, float] = {}
    with Load(srv.url) as load:
        time.sleep(1.0)
        client.set_registered_model_alias(name, "champion", "2")
        switched["2"] = _wait_ready_version(srv.url, "2")
        time.sleep(1.0)
        client.set_registered_model_alias(name, "champion", "3")  # the tampered version
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready = httpx.get(f"{srv.url}/readyz", timeout=5).json()
            if ready["refusedVersions"]:
                break
            time.sleep(0.1)
        assert [(a["version"], a["reason"]) for a in ready["refusedVersions"]] == [("3", "DigestMismatch")]
        assert ready["ready"] is True and ready["model"]["version"] == "2"
        time.sleep(1.0)  # keep serving version 2 under load after the refusal
        client.set_registered_model_alias(name, "champion", "4")
        switched["4"] = _wait_ready_version(srv.url, "4")
        time.sleep(1.0)

    assert load.errors == [], load.errors[:5]
    statuses = Counter(a[2] for a in load.answers)
    assert set(statuses) == {200}, statuses
    by_version = Counter(a[3] for a in load.answers)
    assert set(by_version) == {"1", "2", "4"} and min(by_version.values()) > 10, by_version
    for _, _, _, version, item, score in load.answers:  # every answer is the named version's answer
        assert (item, score) == EXPECTED_TOP[version], (version, item, score)
    for _, sent, _, version, _, _ in load.answers:  # requests sent after a switch get the new version
        if sent > switched["4"]:
            assert version == "4"
        elif sent > switched["2"]:
            assert version in ("2", "4")
    for n in {a[0] for a in load.answers}:  # and no client ever goes back to an older version
        seen = [a[3] for a in sorted(load.answers, key=lambda a: a[1]) if a[0] == n]
        assert seen == sorted(seen, key=int), f"client {n} went back to an older version"
    metrics = httpx.get(f"{srv.url}/metrics").text
    assert 'recops_model_reloads_total{result="loaded"} 3.0' in metrics
    assert 'recops_model_reloads_total{result="refused"} 1.0' in metrics
    assert f'recops_model_refused_info{{model="{name}",reason="DigestMismatch",version="3"}} 1.0' in metrics

"""The model server started the way SageMaker starts a hosting container (`docker run IMAGE serve`: the image's
entrypoint `recops-serve` with the argument `serve`), as a real process answering over real HTTP.

No SageMaker here: SageMaker's side is what its documentation says the container gets (the `serve` argument,
SAGEMAKER_BIND_TO_PORT when set, GET /ping and POST /invocations). The test binds loopback (RECOPS_HOST) on a
free port given as SAGEMAKER_BIND_TO_PORT, so it shows that variable wins over RECOPS_PORT.
"""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import httpx
import pytest
from recops_model import save_model
from serverproc_helpers import free_port, launch_server, small_model, stop_process

pytestmark = pytest.mark.integration


def test_serve_argument_speaks_the_sagemaker_hosting_contract(tmp_path: Path) -> None:
    save_model(small_model(), tmp_path / "model")
    port, recops_port = free_port(), free_port()
    env = {
        "RECOPS_MODEL_URI": str(tmp_path / "model"),
        "RECOPS_RELOAD_INTERVAL_SECONDS": "0",
        "RECOPS_PORT": str(recops_port),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "RECOPS_PAYLOAD_LOG_DIR": str(tmp_path / "payloads"),
        "RECOPS_PAYLOAD_LOG_SAMPLE_RATE": "1",
        "RECOPS_PAYLOAD_LOG_FLUSH_SECONDS": "3600",
    }
    srv = launch_server(env, tmp_path, args=("serve",), port=port)
    try:
        with socket.socket() as s:  # SAGEMAKER_BIND_TO_PORT won: nothing listens on RECOPS_PORT
            assert s.connect_ex(("127.0.0.1", recops_port)) != 0
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            ping = c.get("/ping")
            assert ping.status_code == 200 and ping.json()["ready"] is True
            version = ping.json()["modelVersion"]

            one = c.post("/invocations", json={"user_id": "u1", "k": 2})
            assert one.status_code == 200, one.text
            assert [i["itemId"] for i in one.json()["items"]] == ["d", "b"]  # u1 saw a
            assert one.json()["model"]["version"] == one.headers["X-Model-Version"] == version
            assert one.json() == c.get("/v1/recommendations/u1", params={"k": 2}).json()

            batch = {"requests": [{"userId": "u2", "k": 1}, {"userId": None, "k": 1, "category": "y"}]}
            many = c.post("/invocations", json=batch)
            assert many.status_code == 200, many.text
            assert many.json() == c.post("/v1/recommendations", json=batch).json()
            assert [[i["itemId"] for i in r["items"]] for r in many.json()["results"]] == [["c"], ["c"]]

            csv = c.post("/invocations", content="u1,10", headers={"content-type": "text/csv"})
            assert csv.status_code == 415 and csv.json()["error"]["reason"] == "UnsupportedMediaType"
            bad = c.post("/invocations", json={"user_id": "u1", "k": 0})
            assert bad.status_code == 422 and bad.json()["error"]["field"] == "k"

            metrics = c.get("/metrics").text
            assert 'recops_requests_total{method="POST",route="/invocations",status="200"} 2.0' in metrics
            assert 'recops_requests_total{method="POST",route="/invocations",status="415"} 1.0' in metrics
            assert 'recops_requests_total{method="GET",route="/ping",status="200"} 1.0' in metrics

        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(30) == 0, srv.log()[-2000:]
    finally:
        stop_process(srv.proc)
    # payload logs of /invocations (one single, two batch entries) flushed at shutdown, next to the GET/POST ones
    records = [json.loads(line) for p in (tmp_path / "payloads").glob("date=*/*.jsonl") for line in p.open()]
    routes = sorted(r["route"] for r in records)
    assert routes == ["batch", "batch", "batch", "batch", "single", "single"], routes
    assert all(r["modelVersion"] == version for r in records)

"""SageMaker's hosting contract on the model server: GET /ping and POST /invocations (in-process, real app, real
model files), and what `recops-serve serve` takes from SageMaker's environment.

The process started as `recops-serve serve` is tested in tests/integration/server/test_server_sagemaker_serve.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from recops_server import ServerSettings, create_app
from recops_server.app import BatchRequest, SingleInvocation, parse_invocation
from recops_server.cli import SAGEMAKER_MODEL_DIR, sagemaker_overrides
from recops_server.cli import main as cli_main
from server_testlib import one_request_in_flight
from test_server_api import metric

JSON = {"content-type": "application/json"}


def invoke(client: TestClient, body: Any, content_type: str | None = "application/json") -> Any:
    headers = {"content-type": content_type} if content_type else {}
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post("/invocations", content=raw, headers=headers)


# -- /ping ---------------------------------------------------------------------------------------------------------


def test_ping_answers_like_readyz_when_a_verified_model_is_loaded(client: TestClient) -> None:
    r = client.get("/ping")
    assert r.status_code == 200
    assert r.json() == client.get("/readyz").json()
    assert r.json()["ready"] is True and r.json()["modelVersion"]


def test_ping_is_503_without_a_model_and_while_draining(tmp_path: Path, client: TestClient) -> None:
    (tmp_path / "empty").mkdir()
    with TestClient(create_app(ServerSettings(model_uri=str(tmp_path / "empty"), reload_interval_seconds=0))) as c:
        r = c.get("/ping")
        assert r.status_code == 503 and r.json()["reason"] == "NoModel" and r.json()["ready"] is False
        r = invoke(c, {"user_id": "u1"})
        assert r.status_code == 503 and r.json()["error"]["reason"] == "ModelNotReady" and "Retry-After" in r.headers
    client.app.state.recops.draining = True  # type: ignore[attr-defined]
    r = client.get("/ping")
    assert r.status_code == 503 and r.json()["reason"] == "Draining"


def test_refused_model_keeps_ping_503(tmp_path: Path, model_dirs: dict[str, Path]) -> None:
    with TestClient(create_app(ServerSettings(model_uri=str(model_dirs["bad"]), reload_interval_seconds=0))) as c:
        r = c.get("/ping")
        assert r.status_code == 503 and r.json()["lastAttempt"]["reason"] == "DigestMismatch"


# -- /invocations ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "params"),
    [
        ({"user_id": "u1", "k": 3}, {"k": 3}),
        ({"user_id": "u1"}, {}),
        ({"user_id": "u2", "k": 2, "exclude": ["c"], "category": None}, {"k": 2, "exclude": ["c"]}),
        ({"user_id": "u1", "category": "y"}, {"category": "y"}),
        ({"userId": "u1", "k": 4, "excludeSeen": False}, {"k": 4, "excludeSeen": "false"}),
        ({"user_id": "stranger", "k": 2}, {"k": 2}),  # unknown user: popularity fallback
    ],
)  # fmt: skip
def test_single_invocation_answers_as_the_get_route(client: TestClient, body: dict[str, Any],
                                                    params: dict[str, Any]) -> None:  # fmt: skip
    user = body.get("user_id") or body["userId"]
    want = client.get(f"/v1/recommendations/{user}", params=params)
    r = invoke(client, body)
    assert r.status_code == 200 == want.status_code, r.text
    assert r.json() == want.json()
    assert r.headers["content-type"] == "application/json"
    assert r.headers["X-Model-Version"] == want.headers["X-Model-Version"] == r.json()["model"]["version"]


def test_single_invocation_hand_checked(client: TestClient) -> None:
    body = invoke(client, {"user_id": "u1", "k": 3}).json()
    assert [i["itemId"] for i in body["items"]] == ["d", "b", "c"]  # a was seen
    assert body["fallback"] is False and body["userId"] == "u1"
    body = invoke(client, {"user_id": "nobody", "k": 1}).json()
    assert body["fallback"] is True and body["fallbackReason"] == "UnknownUser"
    assert [i["itemId"] for i in body["items"]] == ["a"]  # the most popular item


def test_batch_invocation_answers_as_the_batch_route(client: TestClient) -> None:
    payload = {
        "requests": [
            {"userId": "u1", "k": 2},
            {"userId": "u2"},
            {"userId": None, "k": 1, "category": "y"},
            {"userId": "u1", "k": 4, "excludeSeen": False, "exclude": ["a"]},
        ]
    }
    want = client.post("/v1/recommendations", json=payload)
    r = invoke(client, payload)
    assert r.status_code == 200 == want.status_code, r.text
    assert r.json() == want.json()
    assert [[i["itemId"] for i in res["items"]] for res in r.json()["results"]] == [
        ["d", "b"], ["c", "a"], ["c"], ["d", "b", "c"]
    ]  # fmt: skip
    assert r.headers["X-Model-Version"] == r.json()["model"]["version"]


@pytest.mark.parametrize(
    ("payload", "status", "reason", "field", "text"),
    [
        ('{"user_id": "u1"', 400, "MalformedJson", "body", "not valid JSON"),
        (b"\xff\xfe", 400, "MalformedJson", "body", "not valid JSON"),
        ("[" * 50_000, 400, "MalformedJson", "body", "not valid JSON"),
        ("", 400, "MalformedJson", "body", "not valid JSON"),
        ("[]", 422, "InvalidInput", "body", "valid dictionary"),
        ('"u1"', 422, "InvalidInput", "body", "valid dictionary"),
        ("{}", 422, "InvalidInput", "user_id", "Field required"),
        ('{"user_id": ""}', 422, "InvalidInput", "user_id", "at least 1 character"),
        ('{"user_id": "u1", "k": 0}', 422, "InvalidInput", "k", "greater than or equal to 1"),
        ('{"user_id": "u1", "k": 1001}', 422, "InvalidInput", "k", "less than or equal to 1000"),
        ('{"user_id": "u1", "k": "ten"}', 422, "InvalidInput", "k", "valid integer"),
        ('{"user_id": "u1", "kk": 3}', 422, "InvalidInput", "kk", "Extra inputs are not permitted"),
        ('{"user_id": "u1", "exclude": "a"}', 422, "InvalidInput", "exclude", "valid list"),
        ('{"user_id": "u1", "category": "shoes"}', 400, "UnknownCategory", "category", "'shoes'"),
        ('{"requests": []}', 422, "InvalidInput", "requests", "at least 1 item"),
        ('{"requests": [{"userId": "u1", "k": 1001}]}', 422, "InvalidInput", "requests[0].k", "less than or equal"),
        ('{"requests": [{"userId": "u1"}], "user_id": "u1"}', 422, "InvalidInput", "user_id", "Extra inputs"),
        ('{"requests": [{"userId": "u1"}, {"category": "shoes"}]}', 400, "UnknownCategory", "requests[1].category",
         "'shoes'"),
    ],
)  # fmt: skip
def test_bad_input_gets_4xx_naming_the_field(
    client: TestClient, payload: str | bytes, status: int, reason: str, field: str, text: str
) -> None:
    r = invoke(client, payload)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert (err["status"], err["reason"], err["field"]) == (status, reason, field)
    assert text in err["message"], err["message"]


def test_k_above_the_servers_max_k_is_422(make_client: Callable[..., TestClient]) -> None:
    c = make_client(max_k=5, default_k=2)
    assert len(invoke(c, {"user_id": "u3"}).json()["items"]) == 2  # the server's default k
    err = invoke(c, {"user_id": "u1", "k": 6}).json()["error"]
    assert (err["field"], err["message"]) == ("k", "k: must be at most 5 on this server")
    c2 = make_client(max_batch_requests=2)
    err = invoke(c2, {"requests": [{"userId": "u1"}] * 3}).json()["error"]
    assert err["field"] == "requests" and "at most 2" in err["message"]


@pytest.mark.parametrize(
    "content_type", [None, "text/csv", "application/x-www-form-urlencoded", "text/plain", "application/jsonl",
                     "application/x-npy", "multipart/form-data; boundary=x"],
)  # fmt: skip
def test_unsupported_content_type_is_415(client: TestClient, content_type: str | None) -> None:
    r = invoke(client, {"user_id": "u1"}, content_type)
    assert r.status_code == 415, r.text
    err = r.json()["error"]
    assert err["reason"] == "UnsupportedMediaType" and err["field"] == "Content-Type"
    assert "application/json" in err["message"] and (content_type or "no Content-Type") in err["message"]


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/x+json"]
)
def test_json_content_types_are_accepted(client: TestClient, content_type: str) -> None:
    assert invoke(client, {"user_id": "u1"}, content_type).status_code == 200


def test_other_methods_are_405(client: TestClient) -> None:
    r = client.get("/invocations")
    assert r.status_code == 405 and r.json()["error"]["reason"] == "MethodNotAllowed"
    assert client.post("/ping").status_code == 405


def test_parse_invocation_tells_single_from_batch() -> None:
    one = parse_invocation("application/json", b'{"user_id": "u1", "exclude": ["a"]}')
    assert isinstance(one, SingleInvocation) and (one.user_id, one.k, one.exclude, one.exclude_seen) == (
        "u1", None, ["a"], True)  # fmt: skip
    batch = parse_invocation("application/json", b'{"requests": [{"userId": "u1"}]}')
    assert isinstance(batch, BatchRequest) and batch.requests[0].userId == "u1"


# -- metrics, payload logs, the concurrency limit ------------------------------------------------------------------


def test_metrics_count_invocations_under_their_own_route(client: TestClient) -> None:
    invoke(client, {"user_id": "u1"})
    invoke(client, {"requests": [{"userId": "u1"}, {"userId": "stranger"}]})
    invoke(client, {"user_id": "u1"}, "text/csv")
    invoke(client, {"user_id": "u1", "k": 0})
    client.get("/ping")
    assert metric(client, "recops_requests_total", route="/invocations", method="POST", status="200") == 2
    assert metric(client, "recops_requests_total", route="/invocations", status="415") == 1
    assert metric(client, "recops_requests_total", route="/invocations", status="422") == 1
    assert metric(client, "recops_requests_total", route="/ping", method="GET", status="200") == 1
    assert metric(client, "recops_request_duration_seconds_count", route="/invocations") == 4
    assert metric(client, "recops_recommendations_total") == 3
    assert metric(client, "recops_fallback_recommendations_total", reason="UnknownUser") == 1
    assert metric(client, "recops_recommended_item_popularity_count") > 0


def test_payload_logging_applies_to_invocations(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    out = tmp_path / "payloads"
    c = make_client(payload_log_dir=str(out), payload_log_sample_rate=1.0, payload_log_flush_seconds=3600)
    invoke(c, {"user_id": "u1", "k": 2, "category": "x"})
    invoke(c, {"requests": [{"userId": "nobody", "category": "y"}, {"userId": "u2"}]})
    invoke(c, {"user_id": "u1", "k": 0})  # refused: not logged
    state = c.app.state.recops  # type: ignore[attr-defined]
    assert c.portal.call(state.payloads.flush) == 3  # type: ignore[union-attr]
    (path,) = out.glob("date=*/payloads-*.jsonl")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["route"], r["userId"], r["k"], r["category"]) for r in records] == [
        ("single", "u1", 2, "x"), ("batch", "nobody", 10, "y"), ("batch", "u2", 10, None)
    ]  # fmt: skip
    version = c.get("/ping").json()["modelVersion"]
    assert all(r["modelVersion"] == version for r in records)
    assert records[0]["itemIds"] == ["b"] and records[1]["fallback"] is True  # u1 saw a; x holds a, b


def test_concurrency_limit_applies_to_invocations(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    c = make_client(max_concurrency=1, retry_after_seconds=3)
    with one_request_in_flight(monkeypatch, lambda: invoke(c, {"user_id": "u1"})) as first:
        r = invoke(c, {"user_id": "u2"})
        assert r.status_code == 503 and r.headers["Retry-After"] == "3"
        assert r.json()["error"]["reason"] == "Overloaded"
        assert c.get("/v1/recommendations/u2").status_code == 503  # one limit for both APIs
        assert c.get("/ping").status_code == 200  # the health check is never limited
    assert first["status"] == 200
    assert invoke(c, {"user_id": "u2"}).status_code == 200
    assert metric(c, "recops_requests_total", route="/invocations", status="503") == 1
    assert metric(c, "recops_overload_rejections_total") == 2


# -- the schema ----------------------------------------------------------------------------------------------------


def test_openapi_documents_ping_and_invocations(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/invocations"]["post"]
    assert op["tags"] == ["sagemaker"] and {"200", "400", "415", "422", "503"} <= set(op["responses"])
    single, batch = op["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert single["required"] == ["user_id"] and single["additionalProperties"] is False
    assert set(single["properties"]) == {"user_id", "k", "exclude", "category", "exclude_seen"}
    ref = batch["$ref"].rsplit("/", 1)[-1]
    assert ref == "BatchRequest" and ref in spec["components"]["schemas"]
    assert "$ref" not in json.dumps(single)  # inline: nothing to resolve
    assert set(spec["paths"]["/ping"]) == {"get"}


# -- `recops-serve serve` --------------------------------------------------------------------------------------------


def test_serve_listens_where_sagemaker_sends_requests_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RECOPS_HOST", "RECOPS_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = ServerSettings(**sagemaker_overrides({}, model_dir_present=False))
    assert (settings.host, settings.port) == ("0.0.0.0", 8080)


@pytest.mark.parametrize(
    ("environ", "model_dir", "expected"),
    [
        ({}, False, {}),  # settings as usual: 0.0.0.0:8080 are the defaults
        ({}, True, {"model_uri": SAGEMAKER_MODEL_DIR}),  # SageMaker's model data when no URI is set
        ({"RECOPS_MODEL_URI": "models:/recs@champion"}, True, {}),  # our own settings win over model data
        ({"SAGEMAKER_BIND_TO_PORT": "8081", "RECOPS_PORT": "9000"}, False, {"port": 8081}),
        ({"SAGEMAKER_BIND_TO_PORT": " "}, False, {}),
    ],
)  # fmt: skip
def test_sagemaker_overrides(environ: dict[str, str], model_dir: bool, expected: dict[str, Any]) -> None:
    assert sagemaker_overrides(environ, model_dir) == expected


@pytest.mark.parametrize("port", ["http", "0", "70000", "-1", "\uff18\uff10\uff18\uff10"])
def test_a_bad_sagemaker_port_is_refused_naming_the_variable(
    port: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match=f"SAGEMAKER_BIND_TO_PORT={port!r} is not a TCP port"):
        sagemaker_overrides({"SAGEMAKER_BIND_TO_PORT": port}, False)
    monkeypatch.setenv("SAGEMAKER_BIND_TO_PORT", port)
    monkeypatch.setenv("RECOPS_MODEL_URI", "models:/recs@champion")
    assert cli_main(["serve"]) == 2
    out = json.loads(capsys.readouterr().err)
    assert out["reason"] == "InvalidConfig" and "SAGEMAKER_BIND_TO_PORT" in out["message"]

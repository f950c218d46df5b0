"""The model server's HTTP API through FastAPI's TestClient (in-process, real app, real model files)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from recops_model import ModelRejected, RecModel, save_model
from recops_server.cli import main as cli_main
from recops_server.model_store import LoadedModel, locate_model_dir
from server_testlib import one_request_in_flight, repoint, tiny_model


def metric(client: TestClient, name: str, **labels: str) -> float:
    """Value of one sample in /metrics (0 when absent)."""
    text = client.get("/metrics").text
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"^([a-zA-Z_:]+)(\{.*\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    return 0.0


def test_health_ready_and_model_version(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200
    body = r.json()
    assert body["ready"] is True
    assert body["model"]["kind"] == "factors" and body["model"]["digest"].startswith("sha256:")
    assert body["lastAttempt"]["result"] == "loaded"
    info = client.get("/v1/model").json()
    assert info["categories"] == ["x", "y"] and info["version"] == body["model"]["version"]
    assert info["scoring"] == "float32"  # 4 items: no int8 pass


def test_loading_builds_the_int8_index_before_the_swap() -> None:
    """A factors model large enough gets its int8 index while loading (not on its first request)."""
    import numpy as np
    import scipy.sparse as sp
    from recops_model import _quant

    rng = np.random.default_rng(0)
    n_users, n_items = 50, _quant.MIN_ITEMS + 100
    m = RecModel(
        "puresvd", "factors", np.array([f"u{i}" for i in range(n_users)]), np.array([f"i{i}" for i in range(n_items)]),
        sp.csr_matrix((n_users, n_items), dtype=np.float32), rng.random(n_items).astype(np.float32),
        np.array(["x"] * n_items), user_factors=rng.standard_normal((n_users, 16)).astype(np.float32),
        item_factors=rng.standard_normal((n_items, 16)).astype(np.float32),
    )  # fmt: skip
    loaded = LoadedModel.build(m, "m", "1", "test")
    assert "_quant_index" in m.__dict__ and "user_index" in m.__dict__
    assert loaded.scoring == ("int8+float32" if _quant.available() else "float32") == loaded.info()["scoring"]


def test_recommendations_for_known_user(client: TestClient) -> None:
    r = client.get("/v1/recommendations/u1", params={"k": 3})
    assert r.status_code == 200
    body = r.json()
    assert [i["itemId"] for i in body["items"]] == ["d", "b", "c"]  # a was seen
    assert [i["score"] for i in body["items"]] == [2.0, 0.5, 0.0]
    assert body["fallback"] is False and body["userId"] == "u1"
    assert body["model"]["version"] == r.headers["X-Model-Version"]
    assert body["model"]["name"] == "current"


def test_filters(client: TestClient) -> None:
    def ids(**params: object) -> list[str]:
        r = client.get("/v1/recommendations/u1", params=params)
        assert r.status_code == 200, r.text
        return [i["itemId"] for i in r.json()["items"]]

    assert ids(k=10, exclude=["d", "b"]) == ["c"]
    assert ids(k=10, category="y") == ["d", "c"]
    assert ids(k=10, excludeSeen="false") == ["d", "a", "b", "c"]
    assert ids(k=1) == ["d"]


def test_unknown_user_falls_back_and_is_counted(client: TestClient) -> None:
    before = metric(client, "recops_fallback_recommendations_total", reason="UnknownUser")
    body = client.get("/v1/recommendations/stranger", params={"k": 2, "category": "y"}).json()
    assert body["fallback"] is True and body["fallbackReason"] == "UnknownUser"
    assert [i["itemId"] for i in body["items"]] == ["c", "d"]
    assert metric(client, "recops_fallback_recommendations_total", reason="UnknownUser") == before + 1


def test_empty_result_is_counted(client: TestClient) -> None:
    body = client.get("/v1/recommendations/u1", params={"category": "x", "exclude": "b"}).json()
    assert body["items"] == []
    assert metric(client, "recops_empty_recommendations_total") == 1


@pytest.mark.parametrize(
    ("params", "field", "text"),
    [
        ({"k": 0}, "k", "greater than or equal to 1"),
        ({"k": 1001}, "k", "less than or equal to 1000"),
        ({"k": "ten"}, "k", "integer"),
        ({"excludeSeen": "maybe"}, "excludeSeen", "boolean"),
    ],
)
def test_bad_query_parameters_get_4xx_naming_the_field(
    client: TestClient, params: dict[str, object], field: str, text: str
) -> None:
    r = client.get("/v1/recommendations/u1", params=params)
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["field"] == field and err["reason"] == "InvalidInput"
    assert err["message"].startswith(f"{field}: ") and text in err["message"]


def test_unknown_category_is_400(client: TestClient) -> None:
    r = client.get("/v1/recommendations/u1", params={"category": "shoes"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["reason"] == "UnknownCategory" and err["field"] == "category"
    assert "'shoes'" in err["message"] and "x, y" in err["message"]


def test_batch(client: TestClient) -> None:
    r = client.post(
        "/v1/recommendations",
        json={
            "requests": [
                {"userId": "u1", "k": 2},
                {"userId": "u2"},
                {"userId": None, "k": 1, "category": "y"},
                {"userId": "u1", "k": 4, "excludeSeen": False, "exclude": ["a"]},
                {"userId": "u1", "k": 1},
            ]
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"]["version"] == r.headers["X-Model-Version"]
    got = [[i["itemId"] for i in res["items"]] for res in body["results"]]
    assert got == [["d", "b"], ["c", "a"], ["c"], ["d", "b", "c"], ["d"]]
    assert [res["fallback"] for res in body["results"]] == [False, False, True, False, False]
    assert body["results"][2]["fallbackReason"] == "NoUser"


@pytest.mark.parametrize(
    ("payload", "status", "reason", "field"),
    [
        ('{"requests": [', 400, "MalformedJson", "body"),
        ("[]", 422, "InvalidInput", "body"),
        ('{"requests": []}', 422, "InvalidInput", "requests"),
        ('{"requests": [{"userId": "u1", "k": 1001}]}', 422, "InvalidInput", "requests[0].k"),
        ('{"requests": [{"userId": "u1", "kk": 3}]}', 422, "InvalidInput", "requests[0].kk"),
        ('{"requests": [{"userId": "u1"}, {"userId": "u2", "category": "shoes"}]}', 400, "UnknownCategory",
         "requests[1].category"),
    ],
)  # fmt: skip
def test_batch_bad_input(client: TestClient, payload: str, status: int, reason: str, field: str) -> None:
    r = client.post("/v1/recommendations", content=payload, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert (err["reason"], err["field"]) == (reason, field)
    assert field in err["message"] or reason == "MalformedJson"


def test_batch_size_limit(make_client: Callable[..., TestClient]) -> None:
    c = make_client(max_batch_requests=2)
    r = c.post("/v1/recommendations", json={"requests": [{"userId": "u1"}] * 3})
    assert r.status_code == 400
    assert r.json()["error"]["field"] == "requests" and "at most 2" in r.json()["error"]["message"]


def test_unknown_route_is_json_404(client: TestClient) -> None:
    r = client.get("/v2/nothing")
    assert r.status_code == 404 and r.json()["error"]["reason"] == "NotFound"


def test_openapi_schema(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/v1/recommendations/{user_id}", "/v1/recommendations", "/healthz", "/readyz", "/metrics"} <= set(
        spec["paths"]
    )
    params = {p["name"] for p in spec["paths"]["/v1/recommendations/{user_id}"]["get"]["parameters"]}
    assert params == {"user_id", "k", "exclude", "category", "excludeSeen"}


def test_metric_names_and_labels(client: TestClient) -> None:
    client.get("/v1/recommendations/u1")
    client.get("/v1/recommendations/u2")
    text = client.get("/metrics").text
    for name in [
        "recops_request_duration_seconds_bucket",
        "recops_requests_total",
        "recops_model_info",
        "recops_fallback_recommendations_total",
        "recops_empty_recommendations_total",
        "recops_recommended_item_popularity_bucket",
        "recops_model_reloads_total",
        "recops_overload_rejections_total",
        "recops_in_flight_requests",
        "recops_scoring_batch_size_bucket",
    ]:
        assert name in text, name
    assert metric(client, "recops_requests_total", route="/v1/recommendations/{user_id}", status="200") == 2
    version = client.get("/readyz").json()["model"]["version"]
    assert metric(client, "recops_model_info", model="current", version=version) == 1
    # u1 got d,b,c,... u2 got c,a: popularity percentiles of the 10+ items, all in (0, 1]
    assert metric(client, "recops_recommended_item_popularity_count") == 5
    assert metric(client, "recops_recommended_item_popularity_bucket", le="+Inf") == 5
    # never a user id or an item id in a label
    assert 'user_id="' not in text and '"u1"' not in text and "itemId" not in text


def test_concurrency_limit_answers_503_with_retry_after(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    c = make_client(max_concurrency=1, retry_after_seconds=2)
    with one_request_in_flight(monkeypatch, lambda: c.get("/v1/recommendations/u1")) as first:
        r = c.get("/v1/recommendations/u2")
        assert r.status_code == 503 and r.headers["Retry-After"] == "2"
        assert r.json()["error"]["reason"] == "Overloaded"
        assert c.post("/v1/recommendations", json={"requests": [{"userId": "u1"}]}).status_code == 503
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200  # probes not limited
    assert first["status"] == 200
    assert c.get("/v1/recommendations/u2").status_code == 200
    assert metric(c, "recops_overload_rejections_total") == 2
    assert metric(c, "recops_requests_total", route="/v1/recommendations/{user_id}", status="503") == 1


def test_hot_reload_good_then_bad_version(client: TestClient, model_dirs: dict[str, Path]) -> None:
    store = client.app.state.recops.store  # type: ignore[attr-defined]
    v1 = client.get("/readyz").json()["model"]["version"]
    assert client.portal.call(store.refresh).result == "unchanged"  # type: ignore[union-attr]

    repoint(model_dirs["current"], model_dirs["v2"])
    assert client.portal.call(store.refresh).result == "loaded"  # type: ignore[union-attr]
    r = client.get("/v1/recommendations/u1", params={"k": 1})
    v2 = r.json()["model"]["version"]
    assert v2 != v1 and r.json()["items"][0] == {"itemId": "c", "score": 3.0}
    assert metric(client, "recops_model_info", model="current", version=v1) == 0
    assert metric(client, "recops_model_info", model="current", version=v2) == 1

    repoint(model_dirs["current"], model_dirs["bad"])
    attempt = client.portal.call(store.refresh)  # type: ignore[union-attr]
    assert attempt.result == "refused" and attempt.reason == "DigestMismatch"
    # the old version keeps serving, and readyz/metrics say what was refused
    r = client.get("/v1/recommendations/u1", params={"k": 1})
    assert r.status_code == 200 and r.json()["model"]["version"] == v2
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["lastAttempt"]["result"] == "refused"
    assert ready.json()["refusedVersions"][0]["reason"] == "DigestMismatch"
    assert metric(client, "recops_model_reloads_total", result="refused") == 1
    assert metric(client, "recops_model_refused_info", reason="DigestMismatch") == 1
    # a refused version is not retried on every poll
    assert client.portal.call(store.refresh).result == "unchanged"  # type: ignore[union-attr]
    assert metric(client, "recops_model_reloads_total", result="refused") == 1


class FakeRegistry:
    """A registry-like source: an alias that points at versions; one version is tampered."""

    name = "recs"
    uri = "models:/recs@champion"

    def __init__(self, tmp: Path) -> None:
        self.alias = "1"
        self.down = False
        self.models = {"1": tiny_model(), "2": tiny_model(shift=3.0)}
        self.fetches: list[str] = []

    def current_version(self) -> str:
        if self.down:
            raise ConnectionError("registry unreachable")
        return self.alias

    def fetch(self, version: str) -> LoadedModel:
        self.fetches.append(version)
        if version == "3":
            raise ModelRejected("PickleRefused", "item_ids.npy holds dtype object")
        return LoadedModel.build(self.models[version], self.name, version, f"models:/recs/{version}")


def test_alias_moves_registry_outage_and_refusal(tmp_path: Path) -> None:
    from recops_server import ServerSettings, create_app

    reg = FakeRegistry(tmp_path)
    with TestClient(create_app(ServerSettings(reload_interval_seconds=0), source=reg)) as c:
        store = c.app.state.recops.store  # type: ignore[attr-defined]
        assert c.get("/v1/recommendations/u1").json()["model"]["version"] == "1"
        reg.alias = "2"
        assert c.portal.call(store.refresh).result == "loaded"  # type: ignore[union-attr]
        assert c.get("/v1/recommendations/u1").json()["model"]["version"] == "2"
        reg.down = True
        a = c.portal.call(store.refresh)  # type: ignore[union-attr]
        assert a.result == "error" and a.reason == "SourceUnavailable"
        assert c.get("/readyz").status_code == 200
        reg.down = False
        reg.alias = "3"
        assert c.portal.call(store.refresh).result == "refused"  # type: ignore[union-attr]
        assert c.portal.call(store.refresh).result == "unchanged"  # type: ignore[union-attr]
        assert reg.fetches == ["1", "2", "3"]
        assert c.get("/v1/recommendations/u1").json()["model"]["version"] == "2"
        assert metric(c, "recops_model_refused_info", model="recs", version="3", reason="PickleRefused") == 1
        reg.alias = "1"  # rollback
        assert c.portal.call(store.refresh).result == "loaded"  # type: ignore[union-attr]
        assert metric(c, "recops_model_info", model="recs", version="1") == 1


def test_background_poller_picks_up_new_version(
    make_client: Callable[..., TestClient], model_dirs: dict[str, Path]
) -> None:
    c = make_client(reload_interval_seconds=0.05)
    v1 = c.get("/readyz").json()["model"]["version"]
    repoint(model_dirs["current"], model_dirs["v2"])
    deadline = time.time() + 10
    while time.time() < deadline and c.get("/readyz").json()["model"]["version"] == v1:
        time.sleep(0.05)
    assert c.get("/v1/recommendations/u1", params={"k": 1}).json()["items"][0]["itemId"] == "c"


def test_not_ready_without_a_model(tmp_path: Path) -> None:
    from recops_server import ServerSettings, create_app

    (tmp_path / "empty").mkdir()
    with TestClient(create_app(ServerSettings(model_uri=str(tmp_path / "empty"), reload_interval_seconds=0))) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["reason"] == "NoModel"
        assert r.json()["lastAttempt"]["reason"] == "MissingFile"
        assert c.get("/healthz").status_code == 200
        r = c.get("/v1/recommendations/u1")
        assert r.status_code == 503 and r.json()["error"]["reason"] == "ModelNotReady" and "Retry-After" in r.headers


def test_refused_at_start_then_fixed(tmp_path: Path, model_dirs: dict[str, Path]) -> None:
    from recops_server import ServerSettings, create_app

    repoint(model_dirs["current"], model_dirs["bad"])
    with TestClient(create_app(ServerSettings(model_uri=str(model_dirs["current"]), reload_interval_seconds=0))) as c:
        assert c.get("/readyz").status_code == 503
        repoint(model_dirs["current"], model_dirs["v1"])
        assert c.portal.call(c.app.state.recops.store.refresh).result == "loaded"  # type: ignore[attr-defined,union-attr]
        assert c.get("/readyz").status_code == 200


def test_draining_turns_readyz_503_but_keeps_serving(client: TestClient) -> None:
    client.app.state.recops.draining = True  # type: ignore[attr-defined]
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["reason"] == "Draining"
    assert client.get("/v1/recommendations/u1").status_code == 200


def test_payload_logging_is_sampled_and_batched(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    out = tmp_path / "payloads"
    c = make_client(payload_log_dir=str(out), payload_log_sample_rate=1.0, payload_log_flush_seconds=3600)
    c.get("/v1/recommendations/u1", params={"k": 2})
    c.post("/v1/recommendations", json={"requests": [{"userId": "nobody", "category": "y"}, {"userId": "u2"}]})
    state = c.app.state.recops  # type: ignore[attr-defined]
    assert not out.exists()  # nothing written on the request path
    assert c.portal.call(state.payloads.flush) == 3  # type: ignore[union-attr]
    files = list(out.glob("date=*/payloads-*.jsonl"))
    assert len(files) == 1
    records = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert [r["userId"] for r in records] == ["u1", "nobody", "u2"]
    version = c.get("/readyz").json()["model"]["version"]
    assert all(r["modelVersion"] == version and r["model"] == "current" for r in records)
    assert records[0]["itemIds"] == ["d", "b"] and records[0]["k"] == 2 and records[0]["knownUser"] is True
    assert records[1]["fallback"] is True and records[1]["category"] == "y" and records[1]["knownUser"] is False
    assert metric(c, "recops_payload_log_records_total", outcome="written") == 3


def test_payload_logging_sample_rate_zero_writes_nothing(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    c = make_client(payload_log_dir=str(tmp_path / "p"), payload_log_sample_rate=0.0)
    c.get("/v1/recommendations/u1")
    assert not c.app.state.recops.payloads.enabled  # type: ignore[attr-defined]


def test_payload_logging_flushes_on_shutdown(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    from recops_server import ServerSettings, create_app

    s = ServerSettings(
        model_uri=str(model_dirs["v1"]), reload_interval_seconds=0, payload_log_dir=str(tmp_path / "p"),
        payload_log_sample_rate=1.0, payload_log_flush_seconds=3600,
    )  # fmt: skip
    with TestClient(create_app(s)) as c:
        c.get("/v1/recommendations/u1")
    assert len(list((tmp_path / "p").glob("date=*/*.jsonl"))) == 1


def test_mlflow_model_layout_is_located_and_escapes_refused(tmp_path: Path) -> None:
    root = tmp_path / "mlflow_model"
    (root / "artifacts").mkdir(parents=True)
    save_model(tiny_model(), root / "artifacts" / "recops_model")
    (root / "MLmodel").write_text(
        "flavors:\n  python_function:\n    artifacts:\n      recops_model:\n        path: artifacts/recops_model\n"
    )
    assert locate_model_dir(root) == (root / "artifacts" / "recops_model").resolve()
    (root / "MLmodel").write_text(
        "flavors:\n  python_function:\n    artifacts:\n      recops_model:\n        path: ../../etc\n"
    )
    with pytest.raises(ModelRejected) as e:
        locate_model_dir(root)
    assert e.value.reason == "UnsafePath"


def test_cli_verify(model_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["verify", str(model_dirs["v1"])]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    assert cli_main(["verify", str(model_dirs["bad"])]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out == {"ok": False, "reason": "DigestMismatch", "message": out["message"]}


def test_cli_refuses_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--model-uri", "s3://bucket/model"]) == 2
    assert "InvalidConfig" in capsys.readouterr().err


def test_model_is_not_loaded_at_import_or_create_app(model_dirs: dict[str, Path]) -> None:
    from recops_server import ServerSettings, create_app

    app = create_app(ServerSettings(model_uri=str(model_dirs["v1"])))
    assert app.state.recops.store is None


def _unused(_: RecModel) -> None:  # keep the import used for type checkers
    pass


def test_default_and_max_k_from_settings(make_client: Callable[..., TestClient]) -> None:
    c = make_client(default_k=2, max_k=3)
    assert len(c.get("/v1/recommendations/u3").json()["items"]) == 2
    assert len(c.get("/v1/recommendations/u3", params={"k": 3}).json()["items"]) == 3
    r = c.get("/v1/recommendations/u3", params={"k": 4})
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "k" and "at most 3" in r.json()["error"]["message"]
    r = c.post("/v1/recommendations", json={"requests": [{"userId": "u3"}, {"userId": "u1", "k": 9}]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "requests[1].k"
    r = c.post("/v1/recommendations", json={"requests": [{"userId": "u3"}, {"userId": "u3", "k": 1}]})
    assert [len(x["items"]) for x in r.json()["results"]] == [2, 1]


def test_settings_validation() -> None:
    from pydantic import ValidationError
    from recops_server import ServerSettings

    with pytest.raises(ValidationError, match="default_k"):
        ServerSettings(default_k=20, max_k=10)
    with pytest.raises(ValidationError, match="s3://"):
        ServerSettings(payload_log_s3_uri="http://bucket")
    s = ServerSettings(payload_log_uri="s3://b/p", payload_sample_percent=25)
    assert s.payload_targets() == (None, "s3://b/p") and s.payload_rate() == 0.25
    s = ServerSettings(payload_log_uri="file:///var/log/recops")
    assert s.payload_targets() == ("/var/log/recops", None) and s.payload_rate() == 0.0


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from recops_server import ServerSettings

    monkeypatch.setenv("RECOPS_MODEL_URI", "models:/recs@champion")
    monkeypatch.setenv("RECOPS_MAX_CONCURRENCY", "7")
    monkeypatch.setenv("RECOPS_PAYLOAD_SAMPLE_PERCENT", "5")
    monkeypatch.setenv("RECOPS_DEPLOYMENT", "shop/recs")
    s = ServerSettings()
    assert (s.model_uri, s.max_concurrency, s.payload_rate(), s.deployment) == ("models:/recs@champion", 7, 0.05,
                                                                                "shop/recs")  # fmt: skip


def test_registry_uri_parsing_and_pinned_version() -> None:
    from recops_server.model_store import RegistrySource, make_source

    src = make_source("models:/recs@champion", version="7")
    assert isinstance(src, RegistrySource)
    assert src.current_version() == "7"  # pinned by the operator: no registry call
    src = make_source("models:/recs/3")
    assert isinstance(src, RegistrySource) and src.current_version() == "3" and src.name == "recs"
    src = make_source("models:/recs@champion")
    assert isinstance(src, RegistrySource) and (src.alias, src.pinned) == ("champion", None)
    for bad in ("models:/recs", "models:/a/b/c", "s3://bucket/model", ""):
        with pytest.raises(ValueError):
            make_source(bad)


def test_readyz_reports_version_deployment_and_ready_metric(make_client: Callable[..., TestClient]) -> None:
    c = make_client(deployment="shop/recs")
    body = c.get("/readyz").json()
    assert body["modelVersion"] == body["model"]["version"] and body["deployment"] == "shop/recs"
    assert metric(c, "recops_model_ready") == 1


def test_ready_metric_zero_without_model(tmp_path: Path) -> None:
    from recops_server import ServerSettings, create_app

    (tmp_path / "empty").mkdir()
    with TestClient(create_app(ServerSettings(model_uri=str(tmp_path / "empty"), reload_interval_seconds=0))) as c:
        assert metric(c, "recops_model_ready") == 0
        assert c.get("/readyz").json()["modelVersion"] is None


def test_payload_log_uri_and_percent(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    out = tmp_path / "p"
    c = make_client(payload_log_uri=f"file://{out}", payload_sample_percent=100, deployment="shop/recs")
    c.get("/v1/recommendations/u1")
    assert c.portal.call(c.app.state.recops.payloads.flush) == 1  # type: ignore[attr-defined,union-attr]
    (f,) = list(out.glob("date=*/*.jsonl"))
    assert json.loads(f.read_text())["deployment"] == "shop/recs"

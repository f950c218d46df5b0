"""SageMaker serving from RecommenderDeployment to answered /invocations, as far as an EMULATOR allows.

moto in server mode (an emulator of the AWS APIs, not AWS) holds the Model, endpoint config and endpoint that the
sagemaker backend creates, and reports the endpoint InService at once without starting anything. The test then
does what SageMaker hosting would do and the emulator cannot (`run_like_sagemaker`): start the model-server
program with the Model's container Environment and the argument `serve`, here, against a real MLflow registry
(`mlflow server`, SQLite). moto's own `invoke_endpoint` returns a placeholder, so requests go to the process.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from awsemu import Aws, run_like_sagemaker
from integration.server.conftest import mlflow_server  # noqa: F401 (fixture: a real MLflow server)
from recops.api import RecommenderDeploymentSpec
from recops.backends import aws as backends
from recops.backends.aws import SageMakerBackend
from recops.backends.base import ServingRequest
from recops.controllers import recommenderdeployment as rd
from recops.controllers.common import Owner
from serverproc_helpers import free_port, small_model, stop_process, wait_http

pytestmark = pytest.mark.integration


def test_sagemaker_model_container_serves_the_pinned_mlflow_version_on_emulator(
    aws: Aws, mlflow_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    import mlflow
    from mlflow import MlflowClient
    from recops_model.pyfunc import log_model

    name = f"recs-sm-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_experiment("recops-sagemaker-emulator")
    for shift in (0.0, 3.0):  # version 2 ranks c first for u1 (score 3), version 1 ranks d first (score 2)
        with mlflow.start_run():
            log_model(small_model(shift), "model", registered_model_name=name)
    MlflowClient().set_registered_model_alias(name, "champion", "2")

    owner = Owner(kind="RecommenderDeployment", name="shop", namespace="team-a",
                  uid=f"{uuid.uuid4()}", generation=1)  # fmt: skip
    spec = RecommenderDeploymentSpec.model_validate(
        {"backend": "sagemaker", "model": {"name": name, "alias": "champion", "trackingUri": mlflow_server}}
    )
    # reconcile resolved the alias to version 1 earlier; the endpoint is pinned to it (the alias has moved since)
    request = ServingRequest(owner=owner, name="serve-shop", env=rd.server_env(spec, owner), replicas=1,
                             port=spec.port, image=spec.image, version="1")  # fmt: skip
    backend = SageMakerBackend(aws.config)
    backend.apply(request)
    plan = backends.endpoint_plan(aws.config, request)
    obs = backend.observe_serving(owner, request.name)
    assert obs is not None and (obs.served_version, obs.model_loaded) == ("1", True)  # the emulator: InService

    port = free_port()
    proc = run_like_sagemaker(aws, plan["model"]["ModelName"], port, tmp_path)
    try:
        url = f"http://127.0.0.1:{port}"
        try:
            ping = wait_http(f"{url}/ping", 90, proc)
        except (RuntimeError, TimeoutError) as exc:
            raise AssertionError(f"{exc}: {(tmp_path / 'serve.log').read_text()[-3000:]}") from exc
        assert ping.json()["modelVersion"] == "1" and ping.json()["model"]["name"] == name
        r = httpx.post(f"{url}/invocations", json={"user_id": "u1", "k": 1}, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["items"] == [{"itemId": "d", "score": 2.0}] and r.headers["X-Model-Version"] == "1"
        r = httpx.post(f"{url}/invocations", json={"requests": [{"userId": "u2", "k": 2}]}, timeout=10)
        assert r.status_code == 200 and [i["itemId"] for i in r.json()["results"][0]["items"]] == ["c", "a"]
        r = httpx.post(f"{url}/invocations", content="u1", headers={"content-type": "text/csv"}, timeout=10)
        assert r.status_code == 415
    finally:
        stop_process(proc)
    backend.delete(owner, request.name)

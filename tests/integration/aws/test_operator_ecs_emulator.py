"""The operator, a real subprocess against the lab's real kube-apiserver, with the ecs backend pointed at moto in
server mode: an EMULATOR of the AWS APIs, not AWS. The emulator starts no container, so the test runs the ECS
task's command itself as ECS would (conftest.run_like_ecs); everything else is the operator's own doing.

Uses the lab (fixed ports): run under the shared lock, `flock /tmp/recops-lab.lock .venv/bin/pytest ...`.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from awsemu import CREDENTIALS, Aws, as_json, run_like_ecs
from fixtures.kube import Kubectl, conditions
from fixtures.operator import OperatorProcess, run_operator, wait_for
from recops.backends import aws as backends
from recops.controllers.common import Owner

pytestmark = [pytest.mark.integration, pytest.mark.lab("k8s")]

CANARIES = {"AWS_ACCESS_KEY_ID": "canary-akid-op-41c7", "AWS_SECRET_ACCESS_KEY": "canary-secret-op-8d03"}


@pytest.fixture
def operator(cluster: Any, aws: Aws, tmp_path: Path) -> Iterator[OperatorProcess]:
    settings = aws.settings_env()
    settings.pop("RECOPS_SAGEMAKER_ROLE_ARN")  # sagemaker enabled but not configured: must say what to set
    yield from run_operator(cluster.env, tmp_path, RECOPS_BACKENDS="kubernetes,ecs,sagemaker", **CREDENTIALS,
                            **settings)


def _tasks(aws: Aws) -> list[str]:
    ecs = aws.client("ecs")
    return [arn for status in ("RUNNING", "STOPPED")
            for arn in ecs.list_tasks(cluster=aws.config.ecs_cluster, desiredStatus=status)["taskArns"]]


def test_feature_pipeline_on_ecs_emulator_runs_once_reports_and_cleans_up(
        kubectl: Kubectl, aws: Aws, lake: str, operator: OperatorProcess, tmp_path: Path) -> None:
    ns = kubectl.namespace
    kubectl.run("create", "secret", "generic", "clickstream-s3", *[f"--from-literal={k}={v}"
                                                                   for k, v in CANARIES.items()])
    ssm = aws.client("ssm")
    for key, value in CANARIES.items():  # the platform engineer mirrored the Secret into SSM
        ssm.put_parameter(Name=f"/recops/{ns}/clickstream-s3/{key}", Value=value, Type="SecureString")
    s3 = {"endpointUrl": aws.url, "credentialsSecretRef": {"name": "clickstream-s3"}}
    pipeline = {"apiVersion": "recops.dev/v1alpha1", "kind": "FeaturePipeline",
                "metadata": {"name": "shop-features", "namespace": ns},
                "spec": {"backend": "ecs", "schedule": "0 3 * * *",
                         "sources": {"clickstream": {"uri": f"{lake}/events", "s3": s3}},
                         "output": {"uri": f"s3://{aws.bucket}/snapshots", "s3": s3}, "quality": {"minRows": 100}}}
    kubectl.run("create", "-f", "-", stdin=yaml.safe_dump(pipeline))

    # The first run starts right after creation: exactly one ECS task, reported in status.
    def running() -> dict[str, Any] | None:
        obj = kubectl.get_json("fp", "shop-features")
        last = (obj.get("status") or {}).get("lastRun") or {}
        return obj if last.get("result") == "Running" else None

    obj = wait_for(running, 90, "lastRun Running", interval=1)
    run_name = obj["status"]["lastRun"]["name"]
    assert conditions(obj)["Ready"]["status"] == "True", conditions(obj)
    assert len(_tasks(aws)) == 1
    # Resyncs every 3 s and a killed, restarted operator find that task instead of starting another.
    time.sleep(7)
    assert len(_tasks(aws)) == 1
    operator.stop(signal.SIGKILL)
    operator.start()
    wait_for(lambda: operator.logs().count("Started the Recops operator") >= 2, 60, "the operator restarted")
    time.sleep(10)  # the restarted operator's first reconcile and a few resyncs
    (task_arn,) = _tasks(aws)
    ecs = aws.client("ecs")
    task = ecs.describe_tasks(cluster=aws.config.ecs_cluster, tasks=[task_arn], include=["TAGS"])["tasks"][0]
    uid = obj["metadata"]["uid"]
    owner = Owner(kind="FeaturePipeline", name="shop-features", namespace=ns, uid=uid)
    assert task["startedBy"] == backends.run_token(owner, run_name)

    # The emulator runs no container: run the task here as ECS would (secrets resolved from emulated SSM).
    done = run_like_ecs(aws, task_arn, {}, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    def succeeded() -> dict[str, Any] | None:
        obj = kubectl.get_json("fp", "shop-features")
        status = obj.get("status") or {}
        return obj if (status.get("lastRun") or {}).get("result") == "Succeeded" and \
            status.get("latestSnapshot") else None

    obj = wait_for(succeeded, 60, "lastRun Succeeded with a snapshot", interval=1)
    status = obj["status"]
    assert status["lastRun"]["name"] == run_name
    assert status["latestSnapshot"]["uri"] == f"s3://{aws.bucket}/snapshots/{status['latestSnapshot']['version']}"
    assert conditions(obj)["QualityPassed"]["status"] == "True"
    assert len(_tasks(aws)) == 1

    # A TrainingRun on sagemaker, enabled but not configured here, names the setting to add.
    run = {"apiVersion": "recops.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "shop-train",
                                                                                   "namespace": ns},
           "spec": {"backend": "sagemaker", "snapshot": {"featurePipelineRef": {"name": "shop-features"}},
                    "algorithm": {"name": "ease"}, "mlflow": {"trackingUri": "http://127.0.0.1:1",
                                                              "modelName": "recs"}}}
    kubectl.run("create", "-f", "-", stdin=yaml.safe_dump(run))
    unavailable = wait_for(lambda: conditions(kubectl.get_json("tr", "shop-train")).get("Succeeded", {}).get(
        "reason") == "BackendUnavailable" and conditions(kubectl.get_json("tr", "shop-train"))["Succeeded"], 60,
        "TrainingRun BackendUnavailable")
    assert "RECOPS_SAGEMAKER_ROLE_ARN" in unavailable["message"]

    # No secret value in AWS, in status, in Events or in the operator's log.
    definition = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
    everything = as_json(definition) + as_json(task) + kubectl.run("get", "recops,events", "-o", "yaml").stdout + \
        operator.logs()
    for value in CANARIES.values():
        assert value not in everything

    # Deleting the FeaturePipeline removes its task definitions and result documents (the finalizer waits).
    kubectl.run("delete", "fp", "shop-features", "--timeout=60s")
    family = backends.task_family(owner, "job")
    assert ecs.list_task_definitions(familyPrefix=family, status="ACTIVE")["taskDefinitionArns"] == []
    assert ecs.list_task_definitions(familyPrefix=family, status="INACTIVE")["taskDefinitionArns"] == []
    assert aws.keys(f"recops/{ns}/{uid}/") == []

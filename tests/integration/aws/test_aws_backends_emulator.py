"""The ecs and sagemaker backends against moto in server mode: an EMULATOR of the AWS APIs, not AWS.

Each test says which part the emulator cannot do and what the test does instead (see conftest.py).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from awsemu import Aws, as_json, run_like_ecs
from recops.api import FeaturePipelineSpec, RecommenderDeploymentSpec, TrainingRunSpec
from recops.backends import aws as backends
from recops.backends.aws import EcsBackend, SageMakerBackend
from recops.backends.base import BackendUnavailable, JobRequest, ServingRequest
from recops.controllers import featurepipeline as fp
from recops.controllers import recommenderdeployment as rd
from recops.controllers import trainingrun as tr
from recops.controllers.common import Owner

pytestmark = pytest.mark.integration

CANARIES = {"AWS_ACCESS_KEY_ID": "canary-akid-5d1f0c", "AWS_SECRET_ACCESS_KEY": "canary-secret-9e2b7a"}


def _owner(kind: str) -> Owner:
    return Owner(kind=kind, name="shop", namespace="team-a", uid="5b0c8f1e-2222-4a4a-9c9c-000000000001", generation=1)


def _pipeline_request(aws: Aws, lake: str, owner: Owner, name: str) -> JobRequest:
    """The JobRequest reconcile builds for a FeaturePipeline with backend ecs (same controller functions)."""
    s3 = {"endpointUrl": aws.url, "credentialsSecretRef": {"name": "clickstream-s3"}}
    spec = FeaturePipelineSpec.model_validate({
        "backend": "ecs", "sources": {"clickstream": {"uri": f"{lake}/events", "s3": s3}},
        "output": {"uri": f"s3://{aws.bucket}/snapshots", "s3": s3}, "quality": {"minRows": 100}})
    return JobRequest(owner=owner, name=name, program=fp.PROGRAM, config=fp.job_config(spec, owner), image=spec.image,
                      plain_env=fp.plain_env(spec), secret_env=tuple(fp.secret_env(spec)), resources=spec.resources,
                      deadline_seconds=spec.active_deadline_seconds)


def _tasks(aws: Aws) -> list[str]:
    ecs = aws.client("ecs")
    return [arn for status in ("RUNNING", "STOPPED")
            for arn in ecs.list_tasks(cluster=aws.config.ecs_cluster, desiredStatus=status)["taskArns"]]


def _revisions(aws: Aws, family: str) -> dict[str, list[str]]:
    ecs = aws.client("ecs")
    return {status: ecs.list_task_definitions(familyPrefix=family, status=status)["taskDefinitionArns"]
            for status in ("ACTIVE", "INACTIVE")}


def test_ecs_feature_job_runs_once_across_retries_and_restarts_on_emulator(aws: Aws, lake: str,
                                                                           tmp_path: Path) -> None:
    owner = _owner("FeaturePipeline")
    ssm = aws.client("ssm")
    for key, value in CANARIES.items():  # the Secret as mirrored into SSM (RECOPS_AWS_SECRET_VALUE_FROM)
        ssm.put_parameter(Name=f"/recops/team-a/clickstream-s3/{key}", Value=value, Type="SecureString")
    request = _pipeline_request(aws, lake, owner, "shop-features-req-1")
    backend = EcsBackend(aws.config)
    backend.submit(request)
    backend.submit(request)  # a retry of the same reconcile
    EcsBackend(aws.config).submit(request)  # a restarted operator: new clients, nothing remembered in memory
    assert len(_tasks(aws)) == 1
    family = backends.task_family(owner, "job")
    assert len(_revisions(aws, family)["ACTIVE"]) == 1
    running = backend.observe(owner, request.name)
    assert running is not None and running.state == "Running"  # the emulator reports RUNNING at once

    # Secret values never reach AWS: the task definition holds SSM references, the values stay in SSM.
    ecs = aws.client("ecs")
    (task_arn,) = _tasks(aws)
    task = ecs.describe_tasks(cluster=aws.config.ecs_cluster, tasks=[task_arn], include=["TAGS"])["tasks"][0]
    definition = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
    assert {s["valueFrom"] for s in definition["containerDefinitions"][0]["secrets"]} == {
        f"arn:aws:ssm:us-east-1:123456789012:parameter/recops/team-a/clickstream-s3/{k}" for k in CANARIES}
    for value in CANARIES.values():
        assert value not in as_json(definition) and value not in as_json(task)
    assert task["startedBy"] == backends.run_token(owner, request.name)
    assert {"key": "recops.dev/run", "value": request.name} in task["tags"]

    # The emulator runs no container: run the task's command here as ECS would (real feature job, emulated S3).
    done = run_like_ecs(aws, task_arn, {}, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    finished = backend.observe(owner, request.name)
    assert finished is not None and finished.state == "Succeeded", finished
    result = finished.result or {}
    assert result["ok"] is True and result["reason"] == "Published" and result["rows"] > 100
    assert result["uri"] == f"s3://{aws.bucket}/snapshots/{result['version']}"
    result_key = f"recops/team-a/{owner.uid}/{request.name}.json"
    assert aws.keys(f"recops/team-a/{owner.uid}/") == [result_key]
    for value in CANARIES.values():
        assert value not in done.stderr and value not in json.dumps(result)

    backend.submit(request)  # the run is over: a late retry starts nothing
    assert len(_tasks(aws)) == 1
    second = dataclasses.replace(request, name="shop-features-req-2")
    backend.submit(second)  # another run reuses the registered task definition
    assert len(_tasks(aws)) == 2 and len(_revisions(aws, family)["ACTIVE"]) == 1
    backend.cancel(owner, second.name)
    stopped = backend.observe(owner, second.name)
    # The emulator reports exit code 0 for every stopped task; ECS would say 137 (killed) here.
    assert stopped is not None and stopped.state == "Succeeded" and "Recops cancelled run" in stopped.message

    backend.release(owner)  # what deleting the FeaturePipeline does
    assert _revisions(aws, family) == {"ACTIVE": [], "INACTIVE": []}
    assert aws.keys(f"recops/team-a/{owner.uid}/") == []
    assert aws.keys(f"snapshots/{result['version']}/")  # published snapshots are data, not operator state


def _training_request(aws: Aws, owner: Owner, token: bool = False) -> JobRequest:
    mlflow: dict[str, Any] = {"trackingUri": "http://mlflow.internal:5000", "modelName": "recs"}
    if token:
        mlflow["tokenSecretRef"] = {"name": "mlflow", "key": "token"}
    spec = TrainingRunSpec.model_validate({"backend": "sagemaker", "snapshot": {"uri": f"s3://{aws.bucket}/snap/v1"},
                                           "algorithm": {"name": "ease"}, "mlflow": mlflow})
    env, secrets = tr.snapshot_access(spec, None)
    return JobRequest(owner=owner, name=tr.job_name(owner), program=tr.PROGRAM,
                      config=tr.job_config(spec, owner, f"s3://{aws.bucket}/snap/v1"), image=spec.image,
                      plain_env=env, secret_env=tuple(secrets), resources=spec.resources,
                      deadline_seconds=spec.active_deadline_seconds)


def test_sagemaker_training_job_created_once_on_emulator(aws: Aws) -> None:
    owner = _owner("TrainingRun")
    sm = aws.client("sagemaker")
    request = _training_request(aws, owner)
    backend = SageMakerBackend(aws.config)
    backend.submit(request)
    backend.submit(request)
    SageMakerBackend(aws.config).submit(request)  # a restarted operator
    name = backends.training_job_name(owner)
    assert [j["TrainingJobName"] for j in sm.list_training_jobs()["TrainingJobSummaries"]].count(name) == 1
    job = sm.describe_training_job(TrainingJobName=name)
    assert json.loads(job["HyperParameters"]["recops-config"]) == request.config
    assert job["AlgorithmSpecification"]["ContainerArguments"] == ["recops-train"]
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200}

    # The emulator reports Completed at once and runs nothing, so no result document exists yet ...
    obs = backend.observe(owner, request.name)
    assert obs is not None and (obs.state, obs.result) == ("Succeeded", None)
    # ... the test puts one where aws_runner would (RECOPS_RESULT_URI) and the backend reads it from S3.
    document = {"ok": True, "reason": "Trained", "message": "trained", "runId": "r1", "modelVersion": "3"}
    bucket, key = backends.split_s3(backends.result_uri(aws.config.aws_result_uri, owner, request.name))
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=json.dumps(document).encode())
    obs = backend.observe(owner, request.name)
    assert obs is not None and obs.result == document

    backend.cancel(owner, request.name)  # Completed: nothing to stop, no StopTrainingJob call
    with pytest.raises(BackendUnavailable, match="StopTrainingJob failed: the AWS endpoint answered HTTP 500"):
        backend.sm("StopTrainingJob", TrainingJobName=name)  # the emulator does not implement it
    backend.release(owner)
    assert aws.keys(f"recops/team-a/{owner.uid}/") == []

    other = Owner(**{**owner.__dict__, "uid": "c3d4e5f6-3333-4a4a-9c9c-000000000002"})
    with pytest.raises(BackendUnavailable, match=r"Secrets \(mlflow/token\)"):
        backend.submit(_training_request(aws, other, token=True))
    assert backend.observe(other, "x") is None  # refused before any job was created


def _serving_request(owner: Owner, version: str, replicas: int = 2) -> ServingRequest:
    spec = RecommenderDeploymentSpec.model_validate({
        "backend": "ecs", "replicas": replicas,
        "model": {"name": "recs", "alias": "champion", "trackingUri": "http://mlflow.internal:5000"}})
    return ServingRequest(owner=owner, name=f"serve-{owner.name}", env=rd.server_env(spec, owner), replicas=replicas,
                          port=spec.port, image=spec.image, resources=spec.resources, version=version)


def test_ecs_service_created_rolled_out_and_deleted_on_emulator(aws: Aws) -> None:
    owner = _owner("RecommenderDeployment")
    ecs, cluster = aws.client("ecs"), aws.config.ecs_cluster
    family = backends.task_family(owner, "serve")
    service = backends.owner_prefix(owner)
    backend = EcsBackend(aws.config)
    v1 = _serving_request(owner, "1")
    backend.apply(v1)
    backend.apply(v1)
    EcsBackend(aws.config).apply(v1)
    svc = ecs.describe_services(cluster=cluster, services=[service])["services"][0]
    assert (svc["status"], svc["desiredCount"], svc["launchType"]) == ("ACTIVE", 2, "FARGATE")
    assert len(_revisions(aws, family)["ACTIVE"]) == 1
    env = ecs.describe_task_definition(taskDefinition=svc["taskDefinition"])["taskDefinition"][
        "containerDefinitions"][0]["environment"]
    assert {"name": "RECOPS_MODEL_VERSION", "value": "1"} in env
    obs = backend.observe_serving(owner, v1.name)
    # The emulator never starts a service's tasks: nothing runs, nothing is ready, no version is served.
    assert obs is not None and (obs.desired_replicas, obs.replicas, obs.ready_replicas, obs.served_version) == \
        (2, 0, 0, None)

    backend.apply(_serving_request(owner, "2"))  # the alias moved: a new revision rolls out
    svc = ecs.describe_services(cluster=cluster, services=[service])["services"][0]
    (active,) = _revisions(aws, family)["ACTIVE"]
    assert svc["taskDefinition"] == active and active.endswith(":2")
    backend.apply(_serving_request(owner, "2", replicas=3))  # scaling registers nothing new
    svc = ecs.describe_services(cluster=cluster, services=[service])["services"][0]
    assert svc["desiredCount"] == 3 and _revisions(aws, family)["ACTIVE"] == [active]

    backend.delete(owner, v1.name)
    assert [s["status"] for s in ecs.describe_services(cluster=cluster, services=[service])["services"]
            if s["status"] != "INACTIVE"] == []
    assert backend.observe_serving(owner, v1.name) is None
    assert _revisions(aws, family) == {"ACTIVE": [], "INACTIVE": []}


def test_ecs_service_registers_with_its_target_group_on_emulator(aws: Aws) -> None:
    """RECOPS_ECS_TARGET_GROUP_NAME on the emulator: moto's ELBv2 holds the load balancer, listener and target group
    and its ECS records the service's `loadBalancers`; it registers no targets (it starts no task), so what is
    checked is the service's configuration, the errors and the URL, not traffic."""
    owner = _owner("RecommenderDeployment")
    ec2, elb, ecs = aws.client("ec2"), aws.client("elbv2"), aws.client("ecs")
    (subnet,) = ec2.describe_subnets(SubnetIds=list(aws.config.aws_subnets))["Subnets"]
    other_zone = next(z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]
                      if z["ZoneName"] != subnet["AvailabilityZone"])
    second = ec2.create_subnet(VpcId=subnet["VpcId"], CidrBlock="10.0.2.0/24",
                               AvailabilityZone=other_zone)["Subnet"]["SubnetId"]
    tag = aws.config.ecs_cluster.removeprefix("recops-")  # unique per test; target group names are per region
    group_name = f"t{tag}-{owner.name}"
    backend = EcsBackend(dataclasses.replace(aws.config, ecs_target_group_name=f"t{tag}-{{name}}"))
    service = backends.owner_prefix(owner)
    request = _serving_request(owner, "1")

    with pytest.raises(BackendUnavailable, match=f"the target group {group_name} .* does not exist"):
        backend.apply(request)
    group = elb.create_target_group(Name=group_name, Protocol="HTTP", Port=8080, VpcId=subnet["VpcId"],
                                    TargetType="ip", HealthCheckPath="/readyz")["TargetGroups"][0]
    with pytest.raises(BackendUnavailable, match=f"the target group {group_name} is attached to no load balancer"):
        backend.apply(request)
    assert backend.observe_serving(owner, request.name) is None  # refused before the service was created

    lb = elb.create_load_balancer(Name=f"t{tag}", Subnets=[subnet["SubnetId"], second],
                                  Type="application")["LoadBalancers"][0]
    elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80,
                        DefaultActions=[{"Type": "forward", "TargetGroupArn": group["TargetGroupArn"]}])
    backend.apply(request)
    backend.apply(request)
    svc = ecs.describe_services(cluster=aws.config.ecs_cluster, services=[service])["services"][0]
    assert svc["loadBalancers"] == [{"targetGroupArn": group["TargetGroupArn"], "containerName": "server",
                                     "containerPort": 8080}]
    obs = backend.observe_serving(owner, request.name)
    assert obs is not None and obs.url == f"http://{lb['DNSName']}" and obs.ready_replicas == 0

    plain = EcsBackend(aws.config)  # the setting removed: the service leaves the target group
    plain.apply(request)
    svc = ecs.describe_services(cluster=aws.config.ecs_cluster, services=[service])["services"][0]
    assert svc["loadBalancers"] == []
    obs = plain.observe_serving(owner, request.name)
    assert obs is not None and obs.url is None
    plain.delete(owner, request.name)


def _owned(aws: Aws, owner: Owner) -> dict[str, list[str]]:
    sm, prefix = aws.client("sagemaker"), backends.owner_prefix(owner)
    return {"endpoints": [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]
                          if e["EndpointName"].startswith(prefix)],
            "configs": [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]
                        if c["EndpointConfigName"].startswith(prefix)],
            "models": [m["ModelName"] for m in sm.list_models()["Models"] if m["ModelName"].startswith(prefix)]}


def test_sagemaker_endpoint_created_rolled_out_and_deleted_on_emulator(aws: Aws) -> None:
    owner = _owner("RecommenderDeployment")
    sm = aws.client("sagemaker")
    backend = SageMakerBackend(aws.config)
    v1 = _serving_request(owner, "1")
    backend.apply(v1)
    backend.apply(v1)
    plan1 = backends.endpoint_plan(aws.config, v1)
    assert _owned(aws, owner) == {"endpoints": [plan1["endpoint"]], "configs": [plan1["config"]["EndpointConfigName"]],
                                  "models": [plan1["model"]["ModelName"]]}
    obs = backend.observe_serving(owner, v1.name)
    # The emulator reports InService at once (no instance runs): the version is read back from the model.
    assert obs is not None and (obs.ready_replicas, obs.served_version, obs.model_loaded) == (2, "1", True)
    assert obs.url == f"https://runtime.sagemaker.us-east-1.amazonaws.com/endpoints/{plan1['endpoint']}/invocations"

    v2 = _serving_request(owner, "2")
    plan2 = backends.endpoint_plan(aws.config, v2)
    # A new version is a new model and endpoint config, then UpdateEndpoint: the emulator answers that with
    # HTTP 500 (not implemented), which the backend reports instead of failing silently.
    with pytest.raises(BackendUnavailable, match="UpdateEndpoint failed: the AWS endpoint answered HTTP 500"):
        backend.apply(v2)
    owned = _owned(aws, owner)
    assert sorted(owned["models"]) == sorted([plan1["model"]["ModelName"], plan2["model"]["ModelName"]])
    assert sorted(owned["configs"]) == sorted([plan1["config"]["EndpointConfigName"],
                                               plan2["config"]["EndpointConfigName"]])
    assert sm.describe_endpoint(EndpointName=plan1["endpoint"])["EndpointConfigName"] == \
        plan1["config"]["EndpointConfigName"]
    obs = backend.observe_serving(owner, v1.name)
    assert obs is not None and obs.served_version == "1"  # the old version keeps serving

    with pytest.raises(BackendUnavailable, match="SageMaker endpoints cannot receive Secrets"):
        backend.apply(dataclasses.replace(v1, secret_env=_training_request(aws, owner, token=True).secret_env))

    backend.delete(owner, v1.name)
    assert _owned(aws, owner) == {"endpoints": [], "configs": [], "models": []}
    assert backend.observe_serving(owner, v1.name) is None

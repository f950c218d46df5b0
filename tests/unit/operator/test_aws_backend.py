"""The AWS backends' pure parts: names, sizes, task definitions, request bodies and status mapping.

No AWS and no emulator here: tests/integration/aws/ runs the same code against moto in server mode.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import re
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from recops.api.base import ResourceRequirements
from recops.backends import aws, aws_runner
from recops.backends.base import BackendUnavailable, JobRequest, ServingRequest
from recops.backends.kubernetes import KubernetesBackend
from recops.backends.local import LocalBackend
from recops.config import Config
from recops.controllers.common import Owner, SecretEnv
from recops.reconcile import Context

SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
ECS_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,255}$")
OWNER = Owner(kind="FeaturePipeline", name="shop-features", namespace="team-a", uid="0f1e2d3c-aaaa-bbbb-cccc-1234",
              generation=3)
CONFIG = Config(enabled_backends=frozenset({"ecs", "sagemaker"}), aws_region="eu-west-1",
                aws_result_uri="s3://results/recops", aws_subnets=("subnet-1",), aws_security_groups=("sg-1",),
                ecs_cluster="jobs", ecs_execution_role_arn="arn:aws:iam::1:role/exec",
                ecs_task_role_arn="arn:aws:iam::1:role/task", sagemaker_role_arn="arn:aws:iam::1:role/sm",
                aws_secret_value_from="arn:aws:ssm:eu-west-1:1:parameter/recops/{namespace}/{secret}/{key}")
SECRETS = (SecretEnv("RECOPS_POSTGRES_DSN", "profiles-db", "dsn"),
           SecretEnv("AWS_ACCESS_KEY_ID", "clickstream-s3", "AWS_ACCESS_KEY_ID"))


def _job(**overrides: Any) -> JobRequest:
    fields: dict[str, Any] = {"owner": OWNER, "name": "shop-features-features-29100000", "program": "recops-features",
                              "config": {"name": "team-a.shop-features", "window": {"lastDays": 28}},
                              "image": "ghcr.io/recops/feature-jobs:0.1.0",
                              "plain_env": {"AWS_REGION": "eu-west-1"}, "secret_env": SECRETS,
                              "resources": ResourceRequirements(), "deadline_seconds": 3600}
    return JobRequest(**{**fields, **overrides})


def _serving(**overrides: Any) -> ServingRequest:
    fields: dict[str, Any] = {"owner": OWNER, "name": "serve-x", "env": {"RECOPS_MODEL_URI": "models:/recs@champion"},
                              "replicas": 2, "image": "ghcr.io/recops/model-server:0.1.0", "version": "7"}
    return ServingRequest(**{**fields, **overrides})


# -- names -----------------------------------------------------------------------------------------------------------

def test_names_are_valid_deterministic_and_keep_owners_apart() -> None:
    long = Owner(kind="TrainingRun", name="a" * 200 + ".b", namespace="n" * 63, uid="9" * 36, generation=12345)
    for owner in (OWNER, long):
        job = aws.training_job_name(owner)
        assert SAGEMAKER_NAME.match(job) and len(job) <= 63, job
        assert job.endswith(f"-g{owner.generation}")
        assert ECS_NAME.match(aws.task_family(owner, "job"))
        plan = aws.endpoint_plan(CONFIG, _serving(owner=owner, version="1234567890.5"))
        for name in (plan["endpoint"], plan["model"]["ModelName"], plan["config"]["EndpointConfigName"]):
            assert SAGEMAKER_NAME.match(name) and len(name) <= 63, name
    assert aws.training_job_name(OWNER) == aws.training_job_name(Owner(**{**OWNER.__dict__}))
    recreated = Owner(**{**OWNER.__dict__, "uid": "77777777-0000"})
    assert aws.owner_prefix(recreated) != aws.owner_prefix(OWNER)  # a recreated object never adopts old resources
    token = aws.run_token(OWNER, "run-1")
    assert len(token) <= 36 and ECS_NAME.match(token)
    assert token == aws.run_token(OWNER, "run-1") != aws.run_token(OWNER, "run-2")


# -- sizes -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("cpu_request", "cpu_limit", "memory", "size"), [
    ("250m", None, "2Gi", (256, 2048)),       # the CRD defaults
    ("1", None, "4Gi", (1024, 4096)),
    ("250m", "2", "3Gi", (2048, 4096)),       # the limit wins; memory rounds up to the tier's minimum
    ("250m", None, "5Gi", (1024, 5120)),      # too much memory for 0.25 vCPU: the next tier that holds it
    ("100m", None, "100Mi", (256, 512)),
    ("0.5", None, "1500M", (512, 2048)),      # 1500 MB = 1430.5 MiB -> 2048 (1024 steps)
])
def test_fargate_size_is_the_smallest_that_holds_the_resources(cpu_request: str, cpu_limit: str | None, memory: str,
                                                               size: tuple[int, int]) -> None:
    spec = ResourceRequirements(cpu_request=cpu_request, cpu_limit=cpu_limit, memory_limit=memory)
    assert aws.fargate_size(spec) == size


def test_bad_or_huge_resources_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"spec.resources.memoryLimit: '2GB'"):
        aws.fargate_size(ResourceRequirements(memory_limit="2GB"))
    for bad in ("lots", "NaN", "-1", "0m"):
        with pytest.raises(ValueError, match=r"spec\.resources\.cpuRequest"):
            aws.fargate_size(ResourceRequirements(cpu_request=bad))
    with pytest.raises(ValueError, match="largest Fargate task"):
        aws.fargate_size(ResourceRequirements(cpu_request="32", memory_limit="2Gi"))
    with pytest.raises(BackendUnavailable, match=r"spec\.resources\.memoryLimit"):
        aws.job_task_definition(CONFIG, _job(resources=ResourceRequirements(memory_limit="lots")))


# -- ECS task definitions ------------------------------------------------------------------------------------------

def test_job_task_definition_runs_the_program_through_the_runner_with_secrets_as_references() -> None:
    td = aws.job_task_definition(CONFIG, _job())
    assert td["family"] == aws.task_family(OWNER, "job")
    assert (td["cpu"], td["memory"], td["networkMode"], td["requiresCompatibilities"]) == \
        ("256", "2048", "awsvpc", ["FARGATE"])
    assert (td["executionRoleArn"], td["taskRoleArn"]) == ("arn:aws:iam::1:role/exec", "arn:aws:iam::1:role/task")
    (container,) = td["containerDefinitions"]
    assert container["command"] == ["python", "-m", "recops.backends.aws_runner", "recops-features"]
    assert container["environment"] == [{"name": "AWS_REGION", "value": "eu-west-1"}]
    assert container["secrets"] == [
        {"name": "AWS_ACCESS_KEY_ID",
         "valueFrom": "arn:aws:ssm:eu-west-1:1:parameter/recops/team-a/clickstream-s3/AWS_ACCESS_KEY_ID"},
        {"name": "RECOPS_POSTGRES_DSN", "valueFrom": "arn:aws:ssm:eu-west-1:1:parameter/recops/team-a/profiles-db/dsn"}]
    assert container["readonlyRootFilesystem"] is True and container["user"] == "10001:10001"
    assert "logConfiguration" not in container  # no log group configured
    # The run's config is not in the task definition: one definition serves every run of the program.
    assert "team-a.shop-features" not in json.dumps(td)
    logged = aws.job_task_definition(Config(**{**CONFIG.__dict__, "ecs_log_group": "/recops/jobs"}), _job())
    assert logged["containerDefinitions"][0]["logConfiguration"]["options"]["awslogs-group"] == "/recops/jobs"


def test_secrets_without_a_value_from_template_are_refused_with_the_setting_to_set() -> None:
    unmapped = Config(**{**CONFIG.__dict__, "aws_secret_value_from": ""})
    with pytest.raises(BackendUnavailable, match="RECOPS_AWS_SECRET_VALUE_FROM") as exc:
        aws.job_task_definition(unmapped, _job())
    assert "profiles-db/dsn" in str(exc.value)
    assert aws.job_task_definition(unmapped, _job(secret_env=()))["containerDefinitions"][0]["secrets"] == []


def _as_aws_returns(td: dict[str, Any]) -> dict[str, Any]:
    """What DescribeTaskDefinition gives back: defaults added, name/value lists in another order."""
    container = dict(td["containerDefinitions"][0])
    container.update({"cpu": 0, "volumesFrom": [], "environment": list(reversed(container["environment"])),
                      "mountPoints": [{**m, "readOnly": False} for m in container["mountPoints"]]})
    if "portMappings" in container:
        container["portMappings"] = [{**p, "hostPort": p["containerPort"]} for p in container["portMappings"]]
    rest = {k: v for k, v in td.items() if k not in ("tags", "containerDefinitions")}
    return {**rest, "containerDefinitions": [container], "revision": 4, "status": "ACTIVE",
            "volumes": [{"name": "tmp", "host": {}}], "compatibilities": ["EC2", "FARGATE"]}


def test_an_identical_registered_definition_is_reused_and_a_changed_one_is_not() -> None:
    server = aws.server_task_definition(CONFIG, _serving(env={"B": "2", "A": "1"}))
    job = aws.job_task_definition(CONFIG, _job())
    for td in (job, server):
        assert aws.same_task_definition(td, _as_aws_returns(td))
    assert not aws.same_task_definition(aws.job_task_definition(CONFIG, _job(image="other:1")), _as_aws_returns(job))
    newer = aws.server_task_definition(CONFIG, _serving(env={"B": "2", "A": "1"}, version="8"))
    assert not aws.same_task_definition(newer, _as_aws_returns(server))
    with_logs = _as_aws_returns(job)
    with_logs["containerDefinitions"][0]["logConfiguration"] = {"logDriver": "awslogs"}
    assert not aws.same_task_definition(job, with_logs)  # a removed setting counts as a change too


def test_server_task_definition_pins_the_version_and_checks_readiness() -> None:
    td = aws.server_task_definition(CONFIG, _serving())
    container = td["containerDefinitions"][0]
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env["RECOPS_MODEL_VERSION"] == "7" and env["RECOPS_PORT"] == "8080"
    assert container["command"] == ["recops-serve"] and container["portMappings"][0]["containerPort"] == 8080
    assert "/readyz" in " ".join(container["healthCheck"]["command"])
    assert td["family"] == aws.task_family(OWNER, "serve")


def test_run_overrides_carry_config_result_and_deadline_and_have_a_size_limit() -> None:
    overrides = aws.run_overrides(_job(), "s3://results/recops/x.json", "http://127.0.0.1:5000")
    (container,) = overrides["containerOverrides"]
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert container["name"] == "job"
    assert json.loads(env["RECOPS_CONFIG_JSON"]) == _job().config
    assert env["RECOPS_RESULT_URI"] == "s3://results/recops/x.json"
    assert env["RECOPS_DEADLINE_SECONDS"] == "3600" and env["RECOPS_RESULT_ENDPOINT_URL"] == "http://127.0.0.1:5000"
    assert "RECOPS_RESULT_ENDPOINT_URL" not in json.dumps(aws.run_overrides(_job(), "s3://r/x.json", ""))
    with pytest.raises(BackendUnavailable, match="8192 bytes"):
        aws.run_overrides(_job(config={"big": "x" * 9000}), "s3://r/x.json", "")


@pytest.mark.parametrize(("task", "result", "expected"), [
    ({"lastStatus": "PROVISIONING"}, None, ("Pending", "")),
    ({"lastStatus": "PENDING"}, None, ("Pending", "")),
    ({"lastStatus": "RUNNING"}, None, ("Running", "")),
    ({"lastStatus": "DEPROVISIONING", "desiredStatus": "STOPPED"}, None, ("Running", "")),
    ({"lastStatus": "STOPPED", "containers": [{"name": "job", "exitCode": 0}]}, None, ("Succeeded", "exit code 0")),
    ({"lastStatus": "STOPPED", "stoppedReason": "Essential container in task exited",
      "containers": [{"name": "job", "exitCode": 3}]}, None,
     ("Failed", "exit code 3: Essential container in task exited")),
    ({"lastStatus": "STOPPED", "stoppedReason": "CannotPullContainerError"}, None,
     ("Failed", "CannotPullContainerError")),
    ({"lastStatus": "STOPPED", "containers": [{"name": "job"}]}, {"ok": True},
     ("Succeeded", "the task stopped without an exit code")),
])
def test_task_state_mapping(task: dict[str, Any], result: dict[str, Any] | None, expected: tuple[str, str]) -> None:
    assert aws.task_state(task, result) == expected


# -- SageMaker -------------------------------------------------------------------------------------------------------

def test_training_job_request() -> None:
    request = _job(program="recops-train", secret_env=(), config={"runKey": "uid-3"},
                   plain_env={"MLFLOW_TRACKING_URI": "http://mlflow:5000"})
    args = aws.training_job_request(CONFIG, request)
    assert args["TrainingJobName"] == aws.training_job_name(OWNER)
    assert args["AlgorithmSpecification"]["ContainerEntrypoint"] == ["python", "-m", "recops.backends.aws_runner"]
    assert args["AlgorithmSpecification"]["ContainerArguments"] == ["recops-train"]
    assert json.loads(args["HyperParameters"]["recops-config"]) == {"runKey": "uid-3"}
    assert args["Environment"]["RECOPS_RESULT_URI"] == \
        f"s3://results/recops/team-a/{OWNER.uid}/shop-features-features-29100000.json"
    assert args["OutputDataConfig"]["S3OutputPath"].startswith(f"s3://results/recops/team-a/{OWNER.uid}/")
    assert args["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    assert args["VpcConfig"] == {"Subnets": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}
    assert args["RoleArn"] == "arn:aws:iam::1:role/sm"
    with pytest.raises(BackendUnavailable, match="SageMaker training jobs cannot receive Secrets"):
        aws.training_job_request(CONFIG, _job())
    with pytest.raises(BackendUnavailable, match="hyperparameter holds at most 2500"):
        aws.training_job_request(CONFIG, _job(secret_env=(), config={"x": "y" * 2600}))


T0 = dt.datetime(2026, 11, 29, 10, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(("job", "state", "message"), [
    ({"TrainingJobStatus": "InProgress", "SecondaryStatus": "Starting"}, "Pending", "Starting"),
    ({"TrainingJobStatus": "InProgress", "SecondaryStatus": "Training", "TrainingStartTime": T0}, "Running",
     "Training"),
    ({"TrainingJobStatus": "Stopping", "SecondaryStatus": "Stopping"}, "Running", "Stopping"),
    ({"TrainingJobStatus": "Completed", "TrainingStartTime": T0, "TrainingEndTime": T0 + dt.timedelta(minutes=5)},
     "Succeeded", ""),
    ({"TrainingJobStatus": "Failed", "FailureReason": "AlgorithmError: exit 2"}, "Failed", "AlgorithmError: exit 2"),
    ({"TrainingJobStatus": "Stopped"}, "Failed", "the training job is stopped"),
])
def test_training_status_mapping(job: dict[str, Any], state: str, message: str) -> None:
    obs = aws.training_observation(job, {"ok": True})
    assert (obs.state, obs.message) == (state, message)
    if job.get("TrainingEndTime"):
        assert (obs.started_at, obs.finished_at) == ("2026-11-29T10:00:00Z", "2026-11-29T10:05:00Z")


def test_a_new_model_version_is_a_new_model_and_endpoint_config_on_the_same_endpoint() -> None:
    v1 = aws.endpoint_plan(CONFIG, _serving(version="1"))
    v2 = aws.endpoint_plan(CONFIG, _serving(version="2"))
    scaled = aws.endpoint_plan(CONFIG, _serving(version="1", replicas=5))
    assert v1["endpoint"] == v2["endpoint"] == aws.owner_prefix(OWNER)
    assert v1["model"]["ModelName"] != v2["model"]["ModelName"]
    assert v1["config"]["EndpointConfigName"] != v2["config"]["EndpointConfigName"]
    assert scaled["model"]["ModelName"] == v1["model"]["ModelName"]  # replicas change the config only
    assert scaled["config"]["EndpointConfigName"] != v1["config"]["EndpointConfigName"]
    assert v1["model"]["PrimaryContainer"]["Environment"]["RECOPS_MODEL_VERSION"] == "1"
    assert v1["config"]["ProductionVariants"][0]["InitialInstanceCount"] == 2
    with pytest.raises(BackendUnavailable, match="SageMaker endpoints cannot receive Secrets"):
        aws.endpoint_plan(CONFIG, _serving(secret_env=SECRETS))


def test_error_messages_name_the_call_and_do_not_repeat_html_pages() -> None:
    class Err(Exception):
        def __init__(self, response: dict[str, Any]) -> None:
            super().__init__("boom")
            self.response = response

    html = Err({"Error": {"Code": "500", "Message": "<!doctype html><title>500</title>"},
                "ResponseMetadata": {"HTTPStatusCode": 500}})
    message = aws.error_message("sagemaker UpdateEndpoint", html)
    assert message.startswith("sagemaker UpdateEndpoint failed: the AWS endpoint answered HTTP 500")
    assert "<" not in message
    denied = Err({"Error": {"Code": "AccessDeniedException", "Message": "not authorized to perform ecs:RunTask"},
                  "ResponseMetadata": {"HTTPStatusCode": 400}})
    assert aws.error_message("ecs RunTask", denied) == \
        "ecs RunTask failed: AccessDeniedException: not authorized to perform ecs:RunTask"


# -- settings and the backend verdict --------------------------------------------------------------------------------

def test_missing_settings_name_the_environment_variables() -> None:
    empty = Config(enabled_backends=frozenset({"ecs", "sagemaker"}), aws_region="", aws_result_uri="",
                   aws_subnets=(), aws_security_groups=(), ecs_cluster="", ecs_execution_role_arn="",
                   sagemaker_role_arn="")
    assert empty.missing_settings("ecs") == [
        "RECOPS_AWS_REGION", "RECOPS_AWS_RESULT_URI (an s3://bucket/prefix URI)", "RECOPS_ECS_CLUSTER",
        "RECOPS_AWS_SUBNETS", "RECOPS_AWS_SECURITY_GROUPS", "RECOPS_ECS_EXECUTION_ROLE_ARN"]
    assert empty.missing_settings("sagemaker") == [
        "RECOPS_AWS_REGION", "RECOPS_AWS_RESULT_URI (an s3://bucket/prefix URI)", "RECOPS_SAGEMAKER_ROLE_ARN"]
    assert CONFIG.missing_settings("ecs") == CONFIG.missing_settings("sagemaker") == []
    assert CONFIG.missing_settings("kubernetes") == []


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"RECOPS_BACKENDS": "kubernetes, ecs", "AWS_REGION": "us-west-2",
                       "RECOPS_AWS_RESULT_URI": "s3://b/p/", "RECOPS_AWS_SUBNETS": "subnet-a, subnet-b",
                       "RECOPS_AWS_SECURITY_GROUPS": "sg-a", "RECOPS_ECS_CLUSTER": "c",
                       "RECOPS_ECS_EXECUTION_ROLE_ARN": "arn:x", "RECOPS_ECS_ASSIGN_PUBLIC_IP": "enabled"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("RECOPS_AWS_REGION", raising=False)
    config = Config()
    assert config.enabled_backends == {"kubernetes", "ecs"}
    assert (config.aws_region, config.aws_result_uri, config.aws_subnets) == ("us-west-2", "s3://b/p",
                                                                              ("subnet-a", "subnet-b"))
    assert config.ecs_assign_public_ip == "ENABLED" and config.missing_settings("ecs") == []


def _context(config: Config) -> Context:
    ecs, sagemaker = aws.backends(config)
    return Context(config=config, kubernetes=KubernetesBackend(), local=LocalBackend(Path("/nonexistent"),
                                                                                      lambda *_: None),
                   post_event=lambda *_: None, logger=logging.getLogger("test"), ecs=ecs, sagemaker=sagemaker)


def test_backend_verdict_and_lookup() -> None:
    ctx = _context(CONFIG)
    assert ctx.backend_verdict("ecs").is_true and ctx.backend_verdict("sagemaker").is_true
    assert isinstance(ctx.batch_backend("ecs"), aws.EcsBackend)
    assert isinstance(ctx.serving_backend("sagemaker"), aws.SageMakerBackend)
    unconfigured = _context(Config(**{**CONFIG.__dict__, "ecs_cluster": "", "enabled_backends": frozenset({"ecs"})}))
    verdict = unconfigured.backend_verdict("ecs")
    assert (verdict.status, verdict.reason) == ("False", "BackendUnavailable")
    assert "RECOPS_ECS_CLUSTER" in verdict.message and "docs/AWS.md" in verdict.message
    off = unconfigured.backend_verdict("sagemaker")
    assert off.reason == "BackendUnavailable" and "RECOPS_BACKENDS" in off.message
    with pytest.raises(BackendUnavailable, match="not enabled"):
        unconfigured.batch_backend("sagemaker")


# -- the runner in the job image ---------------------------------------------------------------------------------------

def _program(tmp_path: Path, body: str) -> str:
    """A stand-in job program (a Python script honouring `run --config FILE --result-file FILE`)."""
    path = tmp_path / "fake-job"
    path.write_text(f"#!{sys.executable}\nimport json, sys\nargs = sys.argv[1:]\n"
                    "config = json.load(open(args[args.index('--config') + 1]))\n"
                    "result = args[args.index('--result-file') + 1]\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_runner_gives_the_program_its_config_and_keeps_its_exit_code_and_result(tmp_path: Path) -> None:
    program = _program(tmp_path, "json.dump({'ok': False, 'reason': 'QualityGateFailed', 'message': config['m']}, "
                                 "open(result, 'w'))\nsys.exit(3)")
    code, body = aws_runner.run_program(program, json.dumps({"m": "too few rows"}), {}, None)
    assert (code, body) == (3, {"ok": False, "reason": "QualityGateFailed", "message": "too few rows"})
    silent = _program(tmp_path, "sys.exit(1)")
    code, body = aws_runner.run_program(silent, "{}", {}, None)
    assert code == 1 and body["reason"] == "NoResult" and "exit code 1" in body["message"]
    slow = _program(tmp_path, "import time\ntime.sleep(30)")
    code, body = aws_runner.run_program(slow, "{}", {}, 1)
    assert code == 1 and body["reason"] == "DeadlineExceeded"


def test_runner_reads_the_config_from_env_or_sagemaker_hyperparameters(tmp_path: Path) -> None:
    hyper = tmp_path / "hyperparameters.json"
    assert aws_runner.read_config({"RECOPS_CONFIG_JSON": '{"a":1}'}, hyper) == '{"a":1}'
    assert aws_runner.read_config({}, hyper) is None
    hyper.write_text(json.dumps({"recops-config": '{"b":2}'}))
    assert aws_runner.read_config({}, hyper) == '{"b":2}'
    assert aws.CONFIG_HYPERPARAMETER == aws_runner.CONFIG_HYPERPARAMETER
    with pytest.raises(ValueError, match="RECOPS_RESULT_URI"):
        aws_runner.split_s3("/tmp/result.json")
    assert aws_runner.main([]) == 2


def test_endpoint_environment_makes_the_server_load_the_pinned_mlflow_version_on_sagemakers_port() -> None:
    """The model container's Environment, built from a real spec the way reconcile builds it, read back by the
    model server's own settings as `recops-serve serve` (SageMaker's container argument) reads them."""
    from recops.api import RecommenderDeploymentSpec
    from recops.controllers import recommenderdeployment as rd
    from recops_server.cli import sagemaker_overrides
    from recops_server.model_store import RegistrySource, make_source
    from recops_server.settings import ServerSettings

    owner = Owner(kind="RecommenderDeployment", name="shop", namespace="team-a", uid=OWNER.uid, generation=1)
    spec = RecommenderDeploymentSpec.model_validate({
        "backend": "sagemaker", "port": 9000, "serving": {"defaultK": 20},
        "model": {"name": "recs", "alias": "champion", "trackingUri": "https://mlflow.example.com"}})
    request = ServingRequest(owner=owner, name="serve-shop", env=rd.server_env(spec, owner), image=spec.image,
                             version="7")
    env = aws.endpoint_plan(CONFIG, request)["model"]["PrimaryContainer"]["Environment"]
    assert env == aws.endpoint_environment(request)
    assert {k: env[k] for k in ("MLFLOW_TRACKING_URI", "RECOPS_MODEL_URI", "RECOPS_MODEL_VERSION", "RECOPS_HOST",
                                "RECOPS_PORT", "RECOPS_DEPLOYMENT", "RECOPS_DEFAULT_K")} == {
        "MLFLOW_TRACKING_URI": "https://mlflow.example.com", "RECOPS_MODEL_URI": "models:/recs@champion",
        "RECOPS_MODEL_VERSION": "7", "RECOPS_HOST": "0.0.0.0", "RECOPS_PORT": "8080",  # not spec.port: SageMaker's
        "RECOPS_DEPLOYMENT": "team-a/shop", "RECOPS_DEFAULT_K": "20"}
    assert all(re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", k) for k in env)  # SageMaker's key pattern

    server_env = {k.removeprefix("RECOPS_").lower(): v for k, v in env.items() if k.startswith("RECOPS_")}
    settings = ServerSettings(**server_env, **sagemaker_overrides(env, model_dir_present=True))
    assert (settings.host, settings.port, settings.default_k) == ("0.0.0.0", 8080, 20)
    source = make_source(settings.model_uri, settings.model_name, settings.download_dir, settings.model_version)
    assert isinstance(source, RegistrySource)
    assert (source.registered_name, source.pinned) == ("recs", "7")  # exactly the version this model was made for

    with pytest.raises(BackendUnavailable, match=r"MLFLOW_TRACKING_URI is 1[0-9]{3} characters.*at most 1024"):
        aws.endpoint_environment(dataclasses.replace(request, env={**request.env,
                                                                   "MLFLOW_TRACKING_URI": "https://" + "m" * 1100}))


def test_ecs_target_group_name_and_load_balancers() -> None:
    owner = Owner(kind="RecommenderDeployment", name="shop", namespace="team-a", uid=OWNER.uid, generation=1)
    assert aws.target_group_name("{namespace}-{name}", owner) == "team-a-shop"
    assert aws.target_group_name("recops-{name}", owner) == "recops-shop"
    for template in ("{namespace}-{name}-" + "x" * 30, "{name}.{namespace}", "-{name}"):
        with pytest.raises(BackendUnavailable, match=r"RECOPS_ECS_TARGET_GROUP_NAME=.*1-32 letters, digits and inner"):
            aws.target_group_name(template, owner)

    group = {"TargetGroupArn": "arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/team-a-shop/abc",
             "TargetType": "ip", "LoadBalancerArns": ["arn:aws:elasticloadbalancing:eu-west-1:1:loadbalancer/app/x/y"]}
    assert aws.service_load_balancers(None, "", 8080) == []
    assert aws.service_load_balancers(group, "team-a-shop", 9000) == [
        {"targetGroupArn": group["TargetGroupArn"], "containerName": "server", "containerPort": 9000}]
    with pytest.raises(BackendUnavailable, match=r"target group team-a-shop has target type 'instance'.*by IP"):
        aws.service_load_balancers({**group, "TargetType": "instance"}, "team-a-shop", 8080)
    with pytest.raises(BackendUnavailable, match=r"team-a-shop is attached to no load balancer.*unset RECOPS_ECS"):
        aws.service_load_balancers({**group, "LoadBalancerArns": []}, "team-a-shop", 8080)


def test_a_target_group_template_without_the_name_is_a_missing_setting() -> None:
    shared = dataclasses.replace(CONFIG, ecs_target_group_name="recops-models")  # every deployment in one group
    assert shared.missing_settings("ecs") == [
        "RECOPS_ECS_TARGET_GROUP_NAME (empty, or a template with {name}, e.g. {namespace}-{name})"]
    assert dataclasses.replace(CONFIG, ecs_target_group_name="{namespace}-{name}").missing_settings("ecs") == []
    assert shared.missing_settings("sagemaker") == []

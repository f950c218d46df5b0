"""The AWS backends (boto3; docs/AWS.md): `ecs` runs jobs as Fargate tasks and model servers as ECS services;
`sagemaker` runs training jobs and real-time endpoints.

Pure functions name and build every request (unit-tested); the two backend classes only call AWS with them.
Everything is named from the owner (namespace, name, uid) so a retry or a restarted operator finds what it
started instead of starting it twice. Credentials come only from boto3's standard chain (environment, IRSA);
Secret values never reach an AWS call: ECS injects them from SSM / Secrets Manager ARNs
(RECOPS_AWS_SECRET_VALUE_FROM), SageMaker has no such injection, so specs that need Secrets are refused there.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import threading
from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from recops.api.base import ResourceRequirements
from recops.backends.base import (
    BackendUnavailable,
    JobObservation,
    JobRequest,
    ServingObservation,
    ServingRequest,
)
from recops.conditions import now_rfc3339
from recops.config import Config
from recops.controllers.common import Owner, SecretEnv, dns_name
from recops.faults import crash_point

RUNNER = ["python", "-m", "recops.backends.aws_runner"]
CONFIG_HYPERPARAMETER = "recops-config"  # read back by aws_runner
OVERRIDES_LIMIT = 8192  # ECS: bytes of a RunTask's overrides
HYPERPARAMETER_LIMIT = 2500  # SageMaker: characters of one hyperparameter value
JOB_CONTAINER, SERVER_CONTAINER = "job", "server"
SAGEMAKER_PORT = 8080  # SageMaker hosting sends /ping and /invocations to this port
SAGEMAKER_ENV_LIMIT = 1024  # SageMaker: characters of one container Environment value
# Fargate task sizes: CPU units -> (smallest, largest, step) memory in MiB.
FARGATE_SIZES = {256: (512, 2048, 512), 512: (1024, 4096, 1024), 1024: (2048, 8192, 1024),
                 2048: (4096, 16384, 1024), 4096: (8192, 30720, 1024), 8192: (16384, 61440, 4096),
                 16384: (32768, 122880, 8192)}
MEMORY_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


# -- names -------------------------------------------------------------------------------------------------------

def aws_name(*parts: str, limit: int = 63) -> str:
    """A name valid for ECS families/services and SageMaker jobs/models/endpoints ([a-z0-9-], hashed if long)."""
    return dns_name(*(re.sub(r"[^a-zA-Z0-9-]", "-", p) for p in parts), limit=limit)


def owner_prefix(owner: Owner) -> str:
    """Starts every AWS name of one owner; the uid keeps a recreated object apart from its predecessor."""
    return aws_name("recops", owner.namespace, owner.name, owner.uid[:8], limit=40)


def task_family(owner: Owner, role: str) -> str:
    """One family per owner and role (`job` or `serve`); a changed program, image or setting is a new revision."""
    return f"{owner_prefix(owner)}-{role}"


def run_token(owner: Owner, name: str) -> str:
    """ECS `startedBy` (<= 36 characters) of one run: how a retry or restart finds the task it started."""
    return "recops-" + hashlib.sha256(f"{owner.uid}/{name}".encode()).hexdigest()[:29]


def training_job_name(owner: Owner) -> str:
    """One SageMaker training job per TrainingRun generation (names are unique in an account for good)."""
    return f"{owner_prefix(owner)}-g{owner.generation}"


def result_uri(base: str, owner: Owner, name: str) -> str:
    return f"{base}/{owner.namespace}/{owner.uid}/{name}.json"


def owner_result_prefix(base: str, owner: Owner) -> str:
    return f"{base}/{owner.namespace}/{owner.uid}/"


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def owner_tags(owner: Owner) -> dict[str, str]:
    return {"recops.dev/kind": owner.kind, "recops.dev/namespace": owner.namespace, "recops.dev/name": owner.name,
            "recops.dev/uid": owner.uid, "app.kubernetes.io/managed-by": "recops-operator"}


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:8]


# -- sizes ---------------------------------------------------------------------------------------------------------

def cpu_units(quantity: str, field: str) -> int:
    """A Kubernetes CPU quantity (`250m`, `1`, `0.5`) as ECS CPU units (1024 per vCPU)."""
    try:
        cores = Decimal(quantity[:-1]) / 1000 if quantity.endswith("m") else Decimal(quantity)
    except InvalidOperation:
        cores = Decimal(0)
    if not cores.is_finite() or cores <= 0:
        raise ValueError(f"{field}: {quantity!r} is not a CPU quantity such as 250m or 1")
    return int((cores * 1024).to_integral_value(rounding="ROUND_CEILING"))


def memory_mib(quantity: str, field: str) -> int:
    """A Kubernetes memory quantity (`512Mi`, `2Gi`, `1G`) in MiB, rounded up."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?", quantity)
    if not match:
        raise ValueError(f"{field}: {quantity!r} is not a memory quantity such as 512Mi or 2Gi")
    size = Decimal(match.group(1)) * MEMORY_UNITS.get(match.group(2) or "", 1)
    return int((size / 2**20).to_integral_value(rounding="ROUND_CEILING"))


def fargate_size(resources: ResourceRequirements | None) -> tuple[int, int]:
    """The smallest Fargate (cpu units, memory MiB) that holds the CPU (limit, else request) and memory limit."""
    spec = resources or ResourceRequirements()
    cpu = cpu_units(spec.cpu_limit or spec.cpu_request, "spec.resources.cpuLimit" if spec.cpu_limit
                    else "spec.resources.cpuRequest")
    memory = memory_mib(spec.memory_limit, "spec.resources.memoryLimit")
    for units, (low, high, step) in FARGATE_SIZES.items():
        if units >= cpu and memory <= high:
            return units, max(low, -(-memory // step) * step)
    raise ValueError(f"spec.resources: {cpu} CPU units and {memory} MiB exceed the largest Fargate task "
                     "(16 vCPU, 120 GiB)")


# -- ECS requests ------------------------------------------------------------------------------------------------

def secret_value_from(template: str, namespace: str, secret: SecretEnv) -> str:
    return (template.replace("{namespace}", namespace).replace("{secret}", secret.secret)
            .replace("{key}", secret.key))


def ecs_secrets(template: str, owner: Owner, secret_env: tuple[SecretEnv, ...]) -> list[dict[str, str]]:
    """ECS `secrets`: ECS reads the values from SSM / Secrets Manager at start, the operator never does."""
    if not secret_env:
        return []
    if "{secret}" not in template or "{key}" not in template:
        names = ", ".join(sorted({f"{s.secret}/{s.key}" for s in secret_env}))
        raise BackendUnavailable(
            f"the spec references Secrets ({names}) and the ecs backend never puts Secret values into a task: set "
            "RECOPS_AWS_SECRET_VALUE_FROM to an SSM parameter or Secrets Manager ARN template with {namespace}, "
            "{secret} and {key} (e.g. arn:aws:ssm:REGION:ACCOUNT:parameter/recops/{namespace}/{secret}/{key}) "
            "and store each value there")
    return [{"name": s.env, "valueFrom": secret_value_from(template, owner.namespace, s)}
            for s in sorted(secret_env, key=lambda s: s.env)]


def _env_list(env: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in sorted(env.items())]


def _task_definition(config: Config, family: str, owner: Owner, container: dict[str, Any],
                     resources: ResourceRequirements | None) -> dict[str, Any]:
    try:
        cpu, memory = fargate_size(resources)
    except ValueError as exc:
        raise BackendUnavailable(str(exc)) from None
    container = {**container, "essential": True, "memory": memory, "readonlyRootFilesystem": True,
                 "user": "10001:10001", "mountPoints": [{"sourceVolume": "tmp", "containerPath": "/tmp"}]}  # noqa: S108
    if config.ecs_log_group:
        container["logConfiguration"] = {"logDriver": "awslogs", "options": {
            "awslogs-group": config.ecs_log_group, "awslogs-region": config.aws_region,
            "awslogs-stream-prefix": family}}
    definition: dict[str, Any] = {
        "family": family, "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
        "cpu": str(cpu), "memory": str(memory), "executionRoleArn": config.ecs_execution_role_arn,
        "containerDefinitions": [container], "volumes": [{"name": "tmp"}],
        "tags": [{"key": k, "value": v} for k, v in owner_tags(owner).items()],
    }
    if config.ecs_task_role_arn:
        definition["taskRoleArn"] = config.ecs_task_role_arn
    return definition


def job_task_definition(config: Config, request: JobRequest) -> dict[str, Any]:
    """RegisterTaskDefinition arguments of a job: per owner and program; the run's config is an override."""
    container: dict[str, Any] = {"name": JOB_CONTAINER, "image": request.image, "command": [*RUNNER, request.program],
                 "environment": _env_list(request.plain_env),
                 "secrets": ecs_secrets(config.aws_secret_value_from, request.owner, request.secret_env)}
    return _task_definition(config, task_family(request.owner, "job"), request.owner, container,
                            request.resources)


def server_task_definition(config: Config, request: ServingRequest) -> dict[str, Any]:
    """RegisterTaskDefinition arguments of a model server; the pinned model version is part of it."""
    env = {**request.env, "RECOPS_PORT": str(request.port)}
    if request.version:
        env["RECOPS_MODEL_VERSION"] = request.version
    ready = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{request.port}/readyz', timeout=3)"
    container: dict[str, Any] = {"name": SERVER_CONTAINER, "image": request.image, "command": ["recops-serve"],
                 "portMappings": [{"containerPort": request.port, "protocol": "tcp"}],
                 "environment": _env_list(env),
                 "secrets": ecs_secrets(config.aws_secret_value_from, request.owner, request.secret_env),
                 "healthCheck": {"command": ["CMD", "python", "-c", ready], "interval": 10, "timeout": 5,
                                 "retries": 3, "startPeriod": 60}}
    return _task_definition(config, task_family(request.owner, "serve"), request.owner, container,
                            request.resources)


def _covers(want: Any, have: Any) -> bool:
    """Whether `have` holds everything of `want` (AWS adds defaults; name/value lists may come back reordered)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(_covers(v, have.get(k)) for k, v in want.items())
    if isinstance(want, list):
        have = have if isinstance(have, list) else []
        if len(want) != len(have):
            return False
        if all(isinstance(w, dict) and "name" in w for w in want):
            want = sorted(want, key=lambda w: str(w["name"]))
            have = sorted(have, key=lambda h: str(h.get("name")) if isinstance(h, dict) else "")
        return all(_covers(w, h) for w, h in zip(want, have, strict=True))
    return bool(want == have)


def same_task_definition(desired: Mapping[str, Any], existing: Mapping[str, Any]) -> bool:
    """Whether the registered revision already is the desired one, so nothing new is registered."""
    if not _covers({k: v for k, v in desired.items() if k != "tags"}, existing):
        return False
    if "taskRoleArn" not in desired and existing.get("taskRoleArn"):
        return False
    want, have = desired["containerDefinitions"][0], (existing.get("containerDefinitions") or [{}])[0]
    return all(k in want or not have.get(k) for k in ("logConfiguration", "secrets", "healthCheck", "portMappings"))


def target_group_name(template: str, owner: Owner) -> str:
    """The target group of one owner's ECS model server: RECOPS_ECS_TARGET_GROUP_NAME filled in."""
    name = template.replace("{namespace}", owner.namespace).replace("{name}", owner.name)
    if not re.fullmatch(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,30}[a-zA-Z0-9])?", name):
        raise BackendUnavailable(f"RECOPS_ECS_TARGET_GROUP_NAME={template!r} gives {name!r} for {owner.namespace}/"
                                 f"{owner.name}; a target group name is 1-32 letters, digits and inner hyphens: "
                                 "shorten the template (or the object's name)")
    return name


def service_load_balancers(group: Mapping[str, Any] | None, name: str, port: int) -> list[dict[str, Any]]:
    """CreateService/UpdateService `loadBalancers` for a described target group (None: no load balancer)."""
    if group is None:
        return []
    fix = (f"create target group {name} with target type ip and health check path /readyz and attach it to a load "
           "balancer listener, or unset RECOPS_ECS_TARGET_GROUP_NAME")
    if group.get("TargetType") != "ip":
        raise BackendUnavailable(f"the target group {name} has target type {group.get('TargetType')!r}; Fargate "
                                 f"tasks (awsvpc) register by IP: {fix}")
    if not group.get("LoadBalancerArns"):
        raise BackendUnavailable(f"the target group {name} is attached to no load balancer (ECS refuses it): {fix}")
    return [{"targetGroupArn": group["TargetGroupArn"], "containerName": SERVER_CONTAINER, "containerPort": port}]


def run_overrides(request: JobRequest, result: str, endpoint_url: str) -> dict[str, Any]:
    """RunTask `overrides`: the run's own config, result location and deadline (no credentials)."""
    env = {"RECOPS_CONFIG_JSON": json.dumps(request.config, separators=(",", ":"), sort_keys=True),
           "RECOPS_RESULT_URI": result}
    if request.deadline_seconds:
        env["RECOPS_DEADLINE_SECONDS"] = str(request.deadline_seconds)
    if request.backoff_limit:
        env["RECOPS_BACKOFF_LIMIT"] = str(request.backoff_limit)  # aws_runner retries (ECS tasks run once)
    if endpoint_url:
        env["RECOPS_RESULT_ENDPOINT_URL"] = endpoint_url
    overrides = {"containerOverrides": [{"name": JOB_CONTAINER, "environment": _env_list(env)}]}
    size = len(json.dumps(overrides))
    if size > OVERRIDES_LIMIT:
        raise BackendUnavailable(f"the job config is {size} bytes; ECS accepts at most {OVERRIDES_LIMIT} bytes of "
                                 "overrides: shorten the spec (fewer quality gates or expected columns)")
    return overrides


def network(config: Config) -> dict[str, Any]:
    return {"awsvpcConfiguration": {"subnets": list(config.aws_subnets),
                                    "securityGroups": list(config.aws_security_groups),
                                    "assignPublicIp": config.ecs_assign_public_ip}}


def _time(value: Any) -> str | None:
    return now_rfc3339(value) if isinstance(value, dt.datetime) else None


def task_state(task: Mapping[str, Any], result: Mapping[str, Any] | None) -> tuple[str, str]:
    """(state, message) of an ECS task: STOPPED is decided by the job container's exit code (or its result)."""
    last = task.get("lastStatus", "")
    if last in ("PROVISIONING", "PENDING", "ACTIVATING"):
        return "Pending", ""
    if last != "STOPPED":
        return "Running", ""
    container: Mapping[str, Any] = next((c for c in task.get("containers") or [] if c.get("name") == JOB_CONTAINER),
                                        {})
    code, reason = container.get("exitCode"), task.get("stoppedReason") or container.get("reason") or ""
    if code is None:
        ok = bool(result and result.get("ok"))
        return ("Succeeded" if ok else "Failed"), reason or "the task stopped without an exit code"
    return ("Succeeded" if code == 0 else "Failed"), f"exit code {code}" + (f": {reason}" if reason else "")


# -- SageMaker requests --------------------------------------------------------------------------------------------

def refuse_secrets(secret_env: tuple[SecretEnv, ...], what: str) -> None:
    if secret_env:
        names = ", ".join(sorted({f"{s.secret}/{s.key}" for s in secret_env}))
        raise BackendUnavailable(
            f"the spec references Secrets ({names}) and SageMaker {what} cannot receive Secrets (their environment "
            "is readable through the SageMaker API): grant access through RECOPS_SAGEMAKER_ROLE_ARN's IAM role and "
            "remove the Secret references, or use the kubernetes backend")


def vpc_config(config: Config) -> dict[str, Any] | None:
    if config.aws_subnets and config.aws_security_groups:
        return {"Subnets": list(config.aws_subnets), "SecurityGroupIds": list(config.aws_security_groups)}
    return None


def training_job_request(config: Config, request: JobRequest) -> dict[str, Any]:
    """CreateTrainingJob arguments: the jobs image runs aws_runner, the config travels as a hyperparameter."""
    refuse_secrets(request.secret_env, "training jobs")
    owner = request.owner
    text = json.dumps(request.config, separators=(",", ":"), sort_keys=True)
    if len(text) > HYPERPARAMETER_LIMIT:
        raise BackendUnavailable(f"the job config is {len(text)} characters; a SageMaker hyperparameter holds at "
                                 f"most {HYPERPARAMETER_LIMIT}")
    env = {**request.plain_env, "RECOPS_RESULT_URI": result_uri(config.aws_result_uri, owner, request.name)}
    if config.aws_endpoint_url:
        env["RECOPS_RESULT_ENDPOINT_URL"] = config.aws_endpoint_url
    if request.backoff_limit:
        # aws_runner retries inside the job: SageMaker's RetryStrategy retries only its own internal errors.
        env["RECOPS_BACKOFF_LIMIT"] = str(request.backoff_limit)
    args: dict[str, Any] = {
        "TrainingJobName": training_job_name(owner),
        "AlgorithmSpecification": {"TrainingImage": request.image, "TrainingInputMode": "File",
                                   "ContainerEntrypoint": RUNNER, "ContainerArguments": [request.program]},
        "RoleArn": config.sagemaker_role_arn,
        "HyperParameters": {CONFIG_HYPERPARAMETER: text},
        "Environment": dict(sorted(env.items())),
        "OutputDataConfig": {"S3OutputPath": f"{owner_result_prefix(config.aws_result_uri, owner)}sagemaker"},
        "ResourceConfig": {"InstanceType": config.sagemaker_training_instance_type, "InstanceCount": 1,
                           "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": request.deadline_seconds or 86400},
        "Tags": [{"Key": k, "Value": v} for k, v in owner_tags(owner).items()],
    }
    if vpc := vpc_config(config):
        args["VpcConfig"] = vpc
    return args


def result_attempts(result: Mapping[str, Any] | None) -> int | None:
    """Attempts aws_runner made (it adds `attempts` to the result document it stores)."""
    value = (result or {}).get("attempts")
    return value if isinstance(value, int) and value > 0 else None


def training_observation(job: Mapping[str, Any], result: Mapping[str, Any] | None) -> JobObservation:
    status = job.get("TrainingJobStatus", "")
    started, ended = _time(job.get("TrainingStartTime")), _time(job.get("TrainingEndTime"))
    if status == "Completed":
        return JobObservation("Succeeded", started, ended, result, attempts=result_attempts(result))
    if status in ("Failed", "Stopped"):
        message = job.get("FailureReason") or f"the training job is {status.lower()}"
        return JobObservation("Failed", started, ended, result, str(message), attempts=result_attempts(result))
    secondary = job.get("SecondaryStatus", "")
    state = "Pending" if secondary in ("Starting", "Pending", "LaunchingMLInstances", "PreparingTrainingStack",
                                       "Downloading", "DownloadingTrainingImage") else "Running"
    return JobObservation(state, started, None, result, str(job.get("SecondaryStatus") or ""))


def endpoint_environment(request: ServingRequest) -> dict[str, str]:
    """The model container's Environment. SageMaker starts the image as `recops-serve serve`; the server reads
    RECOPS_MODEL_URI (models:/<name>@<alias>) from MLFLOW_TRACKING_URI with RECOPS_MODEL_VERSION pinning the
    version this model was made for, and listens where SageMaker sends /ping and /invocations (0.0.0.0:8080)."""
    env = {**request.env, "RECOPS_HOST": "0.0.0.0", "RECOPS_PORT": str(SAGEMAKER_PORT)}  # noqa: S104 (a container)
    if request.version:
        env["RECOPS_MODEL_VERSION"] = request.version
    for name, value in env.items():
        if len(value) > SAGEMAKER_ENV_LIMIT:
            raise BackendUnavailable(f"{name} is {len(value)} characters; a SageMaker container Environment value "
                                     f"holds at most {SAGEMAKER_ENV_LIMIT}: shorten the spec field it comes from")
    return dict(sorted(env.items()))


def endpoint_plan(config: Config, request: ServingRequest) -> dict[str, Any]:
    """Model, endpoint config and endpoint for one model version: a new version is a new config to roll to."""
    refuse_secrets(request.secret_env, "endpoints")
    owner = request.owner
    prefix = owner_prefix(owner)
    version = re.sub(r"[^a-zA-Z0-9]", "", request.version or "")[:8] or "0"
    container = {"Image": request.image, "Environment": endpoint_environment(request)}
    model = {"ExecutionRoleArn": config.sagemaker_role_arn, "PrimaryContainer": container}
    if vpc := vpc_config(config):
        model["VpcConfig"] = vpc
    model_name = f"{prefix}-v{version}-{_digest(model)}"
    variant = {"VariantName": "main", "ModelName": model_name, "InitialInstanceCount": max(request.replicas, 1),
               "InstanceType": config.sagemaker_serving_instance_type}
    config_name = f"{prefix}-v{version}-{_digest(variant)}"
    tags = [{"Key": k, "Value": v} for k, v in owner_tags(owner).items()]
    return {"endpoint": prefix,
            "model": {"ModelName": model_name, **model, "Tags": tags},
            "config": {"EndpointConfigName": config_name, "ProductionVariants": [variant], "Tags": tags}}


# -- AWS calls -------------------------------------------------------------------------------------------------------

def error_message(what: str, exc: Exception) -> str:
    """One line naming the call and AWS's error (never a request body); HTML error pages are not repeated."""
    response = getattr(exc, "response", None) or {}
    error = response.get("Error") or {}
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    code, message = str(error.get("Code") or ""), str(error.get("Message") or exc)
    if status and status >= 500 and (not code or code.isdigit()):
        return (f"{what} failed: the AWS endpoint answered HTTP {status} without an AWS error (an emulator such as "
                "moto answers so for calls it does not implement)")
    return f"{what} failed: {code + ': ' if code else ''}{message[:300]}"


def error_code(exc: Exception) -> str:
    return str(((getattr(exc, "response", None) or {}).get("Error") or {}).get("Code") or "")


class AwsClients:
    """boto3 clients made on first use (thread-safe to share), pointed at RECOPS_AWS_ENDPOINT_URL when set."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                import boto3
                from botocore.config import Config as BotoConfig

                self._clients[service] = boto3.session.Session().client(
                    service, region_name=self.config.aws_region or None,
                    endpoint_url=self.config.aws_endpoint_url or None,
                    config=BotoConfig(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5,
                                      read_timeout=30))
            return self._clients[service]


class _AwsBackend:
    def __init__(self, config: Config, clients: AwsClients | None = None) -> None:
        self.config = config
        self.clients = clients or AwsClients(config)

    def call(self, api: str, operation: str, missing: tuple[str, ...] = (), /, **kwargs: Any) -> Any:
        """One AWS call; an error whose code (or message) is in `missing` means "not there" and returns None."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            got = getattr(self.clients(api), _snake(operation))(**kwargs)
        except ClientError as exc:
            text = f"{error_code(exc)} {(exc.response.get('Error') or {}).get('Message', '')}"
            if any(m in text for m in missing):
                return None
            raise BackendUnavailable(error_message(f"{api} {operation}", exc)) from None
        except BotoCoreError as exc:
            raise BackendUnavailable(error_message(f"{api} {operation}", exc)) from None
        crash_point(f"aws-{operation}")  # RECOPS_CRASH_AT=aws-RunTask:1 etc. (recops.faults)
        return got

    def read_result(self, owner: Owner, name: str) -> dict[str, Any] | None:
        bucket, key = split_s3(result_uri(self.config.aws_result_uri, owner, name))
        got = self.call("s3", "GetObject", ("NoSuchKey", "404"), Bucket=bucket, Key=key)
        if got is None:
            return None
        try:
            value = json.loads(got["Body"].read())
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def delete_results(self, owner: Owner) -> None:
        bucket, prefix = split_s3(owner_result_prefix(self.config.aws_result_uri, owner))
        while True:
            listing = self.call("s3", "ListObjectsV2", Bucket=bucket, Prefix=prefix)
            keys = [{"Key": o["Key"]} for o in listing.get("Contents") or []]
            if not keys:
                return
            self.call("s3", "DeleteObjects", Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


def _snake(operation: str) -> str:
    """`RunTask` -> `run_task`: calls are written as the AWS API (and IAM) names them."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


# -- ECS -------------------------------------------------------------------------------------------------------------

class EcsBackend(_AwsBackend):
    """FeaturePipeline runs as Fargate tasks; model servers as an ECS service (registered with an existing target
    group when RECOPS_ECS_TARGET_GROUP_NAME is set; the load balancer itself is not managed)."""

    name = "ecs"

    def ecs(self, operation: str, missing: tuple[str, ...] = (), /, **kwargs: Any) -> Any:
        return self.call("ecs", operation, missing, cluster=self.config.ecs_cluster, **kwargs)

    def ecs_list(self, operation: str, key: str, **kwargs: Any) -> list[str]:
        """Every page of an ECS List* call."""
        items: list[str] = []
        token: dict[str, str] = {}
        while True:
            got = self.call("ecs", operation, **kwargs, **token)
            items += got.get(key) or []
            if not got.get("nextToken"):
                return items
            token = {"nextToken": got["nextToken"]}

    def ensure_task_definition(self, definition: dict[str, Any]) -> str:
        """The ARN of the family's active revision when it is the desired one, else of a newly registered one."""
        family = definition["family"]
        got = self.call("ecs", "DescribeTaskDefinition", ("ClientException",), taskDefinition=family)
        current = (got or {}).get("taskDefinition")
        if current and current.get("status") == "ACTIVE" and same_task_definition(definition, current):
            return str(current["taskDefinitionArn"])
        arn = str(self.call("ecs", "RegisterTaskDefinition", **definition)["taskDefinition"]["taskDefinitionArn"])
        for old in self._revisions(family, "ACTIVE"):
            if old != arn:
                self.call("ecs", "DeregisterTaskDefinition", taskDefinition=old)
        return arn

    def _revisions(self, family: str, status: str) -> list[str]:
        arns = self.ecs_list("ListTaskDefinitions", "taskDefinitionArns", familyPrefix=family, status=status)
        return [a for a in arns if a.rsplit("/", 1)[-1].rsplit(":", 1)[0] == family]

    def _tasks(self, **selector: str) -> list[dict[str, Any]]:
        arns: list[str] = []
        for status in ("RUNNING", "STOPPED"):
            arns += self.ecs_list("ListTasks", "taskArns", cluster=self.config.ecs_cluster, desiredStatus=status,
                                  **selector)
        tasks: list[dict[str, Any]] = []
        for i in range(0, len(arns), 100):
            tasks += self.ecs("DescribeTasks", tasks=arns[i:i + 100]).get("tasks") or []
        return sorted(tasks, key=lambda t: str(t.get("createdAt") or ""))

    def _run_tasks(self, owner: Owner, name: str) -> list[dict[str, Any]]:
        """The tasks of one run (ListTasks takes `startedBy` only as its sole filter, which hides stopped tasks)."""
        token = run_token(owner, name)
        return [t for t in self._tasks(family=task_family(owner, "job")) if t.get("startedBy") == token]

    # -- batch
    def submit(self, request: JobRequest) -> None:
        owner, token = request.owner, run_token(request.owner, request.name)
        if self._run_tasks(owner, request.name) or self.read_result(owner, request.name) is not None:
            return  # already started (or finished and its task record expired): idempotent
        overrides = run_overrides(request, result_uri(self.config.aws_result_uri, owner, request.name),
                                  self.config.aws_endpoint_url)
        arn = self.ensure_task_definition(job_task_definition(self.config, request))
        got = self.ecs("RunTask", taskDefinition=arn, launchType="FARGATE", count=1, startedBy=token,
                       clientToken=token, networkConfiguration=network(self.config), overrides=overrides,
                       tags=[{"key": k, "value": v} for k, v in {**owner_tags(owner),
                                                                  "recops.dev/run": request.name}.items()])
        if not got.get("tasks"):
            failure = (got.get("failures") or [{}])[0]
            raise BackendUnavailable(f"ecs RunTask started no task: {failure.get('reason', 'no reason given')} "
                                     f"{failure.get('detail', '')}".strip())
        crash_point("job-submitted")

    def observe(self, owner: Owner, name: str) -> JobObservation | None:
        tasks = self._run_tasks(owner, name)
        if not tasks:
            # ECS forgets stopped tasks after about an hour; the result document stays.
            result = self.read_result(owner, name)
            if result is None:
                return None
            return JobObservation("Succeeded" if result.get("ok") else "Failed", None, None, result,
                                  "state from the result document (ECS no longer lists the task)",
                                  attempts=result_attempts(result))
        task = tasks[-1]
        result = self.read_result(owner, name) if task.get("lastStatus") == "STOPPED" else None
        state, message = task_state(task, result)
        return JobObservation(state, _time(task.get("startedAt")), _time(task.get("stoppedAt")), result, message,
                              attempts=result_attempts(result))

    def cancel(self, owner: Owner, name: str) -> None:
        for task in self._run_tasks(owner, name):
            if task.get("lastStatus") != "STOPPED":
                self.ecs("StopTask", task=task["taskArn"], reason=f"Recops cancelled run {name}"[:255])

    def release(self, owner: Owner) -> None:
        """Stop this owner's tasks, deregister and delete its task definitions, delete its result documents."""
        for family in self.ecs_list("ListTaskDefinitionFamilies", "families", familyPrefix=f"{owner_prefix(owner)}-",
                                    status="ALL"):
            for task in self._tasks(family=family):
                if task.get("lastStatus") != "STOPPED":
                    self.ecs("StopTask", task=task["taskArn"], reason="Recops: the owner was deleted")
            for arn in self._revisions(family, "ACTIVE"):
                self.call("ecs", "DeregisterTaskDefinition", taskDefinition=arn)
            inactive = self._revisions(family, "INACTIVE")
            for i in range(0, len(inactive), 10):
                self.call("ecs", "DeleteTaskDefinitions", taskDefinitions=inactive[i:i + 10])
        self.delete_results(owner)

    # -- serving
    def _service(self, name: str) -> dict[str, Any] | None:
        for svc in self.ecs("DescribeServices", services=[name]).get("services") or []:
            if svc.get("status") == "ACTIVE":
                return dict(svc)
            if svc.get("status") == "DRAINING":
                raise BackendUnavailable(f"the ECS service {name} is still being deleted; retrying")
        return None

    def _target_group(self, owner: Owner) -> tuple[str, dict[str, Any] | None]:
        """(name, description) of the owner's target group; ("", None) when RECOPS_ECS_TARGET_GROUP_NAME is unset."""
        if not self.config.ecs_target_group_name:
            return "", None
        name = target_group_name(self.config.ecs_target_group_name, owner)
        got = self.call("elbv2", "DescribeTargetGroups", ("TargetGroupNotFound",), Names=[name])
        groups = (got or {}).get("TargetGroups") or []
        if not groups:
            raise BackendUnavailable(f"the target group {name} (RECOPS_ECS_TARGET_GROUP_NAME) does not exist: create "
                                     "it with target type ip and health check path /readyz on a load balancer "
                                     "listener, or unset RECOPS_ECS_TARGET_GROUP_NAME")
        return name, dict(groups[0])

    def apply(self, request: ServingRequest) -> None:
        arn = self.ensure_task_definition(server_task_definition(self.config, request))
        name = owner_prefix(request.owner)
        group_name, group = self._target_group(request.owner)
        balancers = service_load_balancers(group, group_name, request.port)
        grace = {"healthCheckGracePeriodSeconds": 60} if balancers else {}  # the model loads before /readyz is 200
        current = self._service(name)
        if current is None:
            self.ecs("CreateService", serviceName=name, taskDefinition=arn, desiredCount=request.replicas,
                     launchType="FARGATE", networkConfiguration=network(self.config), propagateTags="SERVICE",
                     deploymentConfiguration={"minimumHealthyPercent": 100, "maximumPercent": 200,
                                              "deploymentCircuitBreaker": {"enable": True, "rollback": True}},
                     tags=[{"key": k, "value": v} for k, v in owner_tags(request.owner).items()],
                     **({"loadBalancers": balancers} if balancers else {}), **grace)
            return
        moved = {} if _covers(balancers, current.get("loadBalancers") or []) else {"loadBalancers": balancers}
        if moved or current.get("taskDefinition") != arn or current.get("desiredCount") != request.replicas:
            self.ecs("UpdateService", service=name, taskDefinition=arn, desiredCount=request.replicas, **moved,
                     **grace)

    def _url(self, svc: Mapping[str, Any]) -> str | None:
        """http://<DNS name> of the load balancer in front of the service's target group, if any."""
        groups = [b["targetGroupArn"] for b in svc.get("loadBalancers") or [] if b.get("targetGroupArn")]
        if not groups:
            return None
        got = self.call("elbv2", "DescribeTargetGroups", ("TargetGroupNotFound",), TargetGroupArns=groups[:1])
        lbs = [a for g in (got or {}).get("TargetGroups") or [] for a in g.get("LoadBalancerArns") or []]
        if not lbs:
            return None
        found = self.call("elbv2", "DescribeLoadBalancers", ("LoadBalancerNotFound",), LoadBalancerArns=lbs[:1])
        dns = next((lb.get("DNSName") for lb in (found or {}).get("LoadBalancers") or []), None)
        return f"http://{dns}" if dns else None

    def observe_serving(self, owner: Owner, name: str, desired_replicas: int = 1) -> ServingObservation | None:
        svc = self._service(owner_prefix(owner))
        if svc is None:
            return None
        deployments = svc.get("deployments") or []
        primary: dict[str, Any] = next((d for d in deployments if d.get("status") == "PRIMARY"), {})
        group = f"service:{svc['serviceName']}"
        running = [t for t in self._tasks(serviceName=svc["serviceName"])
                   if t.get("lastStatus") == "RUNNING" and t.get("group") == group]
        healthy = sum(1 for t in running if t.get("healthStatus") == "HEALTHY")
        desired = int(svc.get("desiredCount") or 0)
        complete = len(deployments) <= 1 and int(primary.get("runningCount") or 0) >= desired and healthy >= 1
        version = None
        if complete:
            got = self.call("ecs", "DescribeTaskDefinition", taskDefinition=svc["taskDefinition"])
            env = got["taskDefinition"]["containerDefinitions"][0].get("environment") or []
            version = next((e["value"] for e in env if e["name"] == "RECOPS_MODEL_VERSION"), None)
        failed = primary.get("rolloutState") == "FAILED"
        return ServingObservation(desired_replicas=desired, replicas=int(svc.get("runningCount") or 0),
                                  ready_replicas=healthy, updated_replicas=int(primary.get("runningCount") or 0),
                                  url=self._url(svc), served_version=version, model_loaded=healthy >= 1,
                                  message=str(primary.get("rolloutStateReason") or "") if failed else "")

    def delete(self, owner: Owner, name: str) -> None:
        service = owner_prefix(owner)
        if self._service(service) is not None:
            self.ecs("DeleteService", service=service, force=True)
        self.release(owner)


# -- SageMaker -------------------------------------------------------------------------------------------------------

MISSING = ("Could not find", "ResourceNotFound", "Requested resource not found")


class SageMakerBackend(_AwsBackend):
    """TrainingRun jobs as SageMaker training jobs; model servers as a real-time endpoint (the model-server image
    answers SageMaker's /ping and /invocations on port 8080 when started as `recops-serve serve`)."""

    name = "sagemaker"

    def sm(self, operation: str, missing: tuple[str, ...] = (), /, **kwargs: Any) -> Any:
        return self.call("sagemaker", operation, missing, **kwargs)

    # -- batch
    def submit(self, request: JobRequest) -> None:
        args = training_job_request(self.config, request)
        if self.sm("DescribeTrainingJob", MISSING, TrainingJobName=args["TrainingJobName"]) is not None:
            return  # already created: idempotent
        self.sm("CreateTrainingJob", ("ResourceInUse",), **args)
        crash_point("job-submitted")

    def observe(self, owner: Owner, name: str) -> JobObservation | None:
        job = self.sm("DescribeTrainingJob", MISSING, TrainingJobName=training_job_name(owner))
        if job is None:
            return None
        done = job.get("TrainingJobStatus") in ("Completed", "Failed", "Stopped")
        return training_observation(job, self.read_result(owner, name) if done else None)

    def cancel(self, owner: Owner, name: str) -> None:
        job_name = training_job_name(owner)
        job = self.sm("DescribeTrainingJob", MISSING, TrainingJobName=job_name)
        if job is not None and job.get("TrainingJobStatus") == "InProgress":
            self.sm("StopTrainingJob", TrainingJobName=job_name)

    def release(self, owner: Owner) -> None:
        """Delete this owner's result documents and job output (SageMaker keeps training job records itself)."""
        self.delete_results(owner)

    # -- serving
    def apply(self, request: ServingRequest) -> None:
        plan = endpoint_plan(self.config, request)
        endpoint = self.sm("DescribeEndpoint", MISSING, EndpointName=plan["endpoint"])
        if request.replicas == 0:  # an endpoint has at least one instance: zero replicas means no endpoint
            if endpoint is not None:
                self.sm("DeleteEndpoint", EndpointName=plan["endpoint"])
            return
        model, config = plan["model"], plan["config"]
        if self.sm("DescribeModel", MISSING, ModelName=model["ModelName"]) is None:
            self.sm("CreateModel", ("Cannot create already existing",), **model)
        if self.sm("DescribeEndpointConfig", MISSING, EndpointConfigName=config["EndpointConfigName"]) is None:
            self.sm("CreateEndpointConfig", ("Cannot create already existing",), **config)
        if endpoint is None:
            self.sm("CreateEndpoint", EndpointName=plan["endpoint"], EndpointConfigName=config["EndpointConfigName"],
                    Tags=config["Tags"])
        elif endpoint.get("EndpointStatus") in ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"):
            return  # one change at a time: the next resync continues
        elif endpoint.get("EndpointConfigName") != config["EndpointConfigName"]:
            self.sm("UpdateEndpoint", EndpointName=plan["endpoint"], EndpointConfigName=config["EndpointConfigName"])
        elif endpoint.get("EndpointStatus") == "InService":
            self._prune(request.owner, keep={model["ModelName"], config["EndpointConfigName"]})

    def _owned(self, operation: str, key: str, owner: Owner) -> Iterator[str]:
        prefix = owner_prefix(owner) + "-"
        got = self.sm(operation, NameContains=prefix, MaxResults=100)
        list_key = {"ListModels": "Models", "ListEndpointConfigs": "EndpointConfigs"}[operation]
        yield from (str(item[key]) for item in got.get(list_key) or [] if str(item[key]).startswith(prefix))

    def _prune(self, owner: Owner, keep: set[str]) -> None:
        """Endpoint configs and models of earlier versions, once the endpoint no longer uses them."""
        for name in list(self._owned("ListEndpointConfigs", "EndpointConfigName", owner)):
            if name not in keep:
                self.sm("DeleteEndpointConfig", MISSING, EndpointConfigName=name)
        for name in list(self._owned("ListModels", "ModelName", owner)):
            if name not in keep:
                self.sm("DeleteModel", MISSING, ModelName=name)

    def observe_serving(self, owner: Owner, name: str, desired_replicas: int = 1) -> ServingObservation | None:
        endpoint_name = owner_prefix(owner)
        endpoint = self.sm("DescribeEndpoint", MISSING, EndpointName=endpoint_name)
        if endpoint is None:
            return None
        status = endpoint.get("EndpointStatus")
        variants = endpoint.get("ProductionVariants") or []
        current = sum(int(v.get("CurrentInstanceCount") or 0) for v in variants)
        desired = sum(int(v.get("DesiredInstanceCount") or 0) for v in variants) or desired_replicas
        version = None
        if status == "InService":
            config = self.sm("DescribeEndpointConfig", EndpointConfigName=endpoint["EndpointConfigName"])
            model = self.sm("DescribeModel", ModelName=config["ProductionVariants"][0]["ModelName"])
            version = (model.get("PrimaryContainer") or {}).get("Environment", {}).get("RECOPS_MODEL_VERSION")
        ready = current if status == "InService" else 0
        url = f"https://runtime.sagemaker.{self.config.aws_region}.amazonaws.com/endpoints/{endpoint_name}/invocations"
        return ServingObservation(desired_replicas=desired, replicas=current, ready_replicas=ready,
                                  updated_replicas=ready, url=url, served_version=version,
                                  model_loaded=status == "InService",
                                  message=str(endpoint.get("FailureReason") or "") if status == "Failed" else "")

    def delete(self, owner: Owner, name: str) -> None:
        if self.sm("DescribeEndpoint", MISSING, EndpointName=owner_prefix(owner)) is not None:
            self.sm("DeleteEndpoint", MISSING, EndpointName=owner_prefix(owner))
        self._prune(owner, keep=set())
        self.release(owner)


def backends(config: Config) -> tuple[EcsBackend | None, SageMakerBackend | None]:
    """The AWS backends this operator enables (RECOPS_BACKENDS), sharing one set of clients."""
    clients = AwsClients(config)
    return (EcsBackend(config, clients) if "ecs" in config.enabled_backends else None,
            SageMakerBackend(config, clients) if "sagemaker" in config.enabled_backends else None)

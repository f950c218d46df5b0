"""The operator's settings, one documented place (read from the environment, prefix RECOPS_)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _env(*names: str, default: str = "") -> str:
    """The first of these variables that is set and not empty."""
    return next((os.environ[n].strip() for n in names if os.environ.get(n, "").strip()), default)


def _env_list(name: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in os.environ.get(name, "").split(",") if v.strip())


@dataclass(frozen=True)
class Config:
    # How often every object is re-checked against the observed state (restores deleted or edited children).
    resync_seconds: int = field(default_factory=lambda: _env_int("RECOPS_RESYNC_SECONDS", 30))
    # Comma-separated backends this operator may use; `local` runs jobs and servers as local processes.
    enabled_backends: frozenset[str] = field(default_factory=lambda: frozenset(
        b.strip() for b in os.environ.get("RECOPS_BACKENDS", "kubernetes").split(",") if b.strip()))
    # Where the local backend keeps run directories (configs, results, logs, pids).
    local_state_dir: Path = field(default_factory=lambda: Path(os.environ.get(
        "RECOPS_LOCAL_STATE_DIR", str(Path.home() / ".local/state/recops/runs"))))
    # Port of the operator's Prometheus metrics (drift scores, reconcile counters); 0 disables.
    metrics_port: int = field(default_factory=lambda: _env_int("RECOPS_METRICS_PORT", 9090))
    # Port of the health endpoint (/healthz).
    health_port: int = field(default_factory=lambda: _env_int("RECOPS_HEALTH_PORT", 8081))
    # First port the local backend gives model servers.
    local_port_base: int = field(default_factory=lambda: _env_int("RECOPS_LOCAL_PORT_BASE", 18080))
    # Seconds to wait for an HTTP dependency (MLflow) when checking that it is reachable.
    http_timeout_seconds: int = field(default_factory=lambda: _env_int("RECOPS_HTTP_TIMEOUT", 3))

    # -- AWS: the ecs and sagemaker backends (docs/AWS.md). Credentials never appear here: boto3 reads them from
    # its standard chain (environment, web identity / IRSA, instance profile).
    aws_region: str = field(default_factory=lambda: _env("RECOPS_AWS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"))
    # An AWS-compatible endpoint for every AWS call (an emulator such as moto); empty means AWS itself.
    aws_endpoint_url: str = field(default_factory=lambda: _env("RECOPS_AWS_ENDPOINT_URL"))
    # `s3://bucket/prefix` where AWS jobs put their result document (and SageMaker its output).
    aws_result_uri: str = field(default_factory=lambda: _env("RECOPS_AWS_RESULT_URI").rstrip("/"))
    # Subnets and security groups of ECS tasks (required) and of SageMaker jobs and models (optional: VPC mode).
    aws_subnets: tuple[str, ...] = field(default_factory=lambda: _env_list("RECOPS_AWS_SUBNETS"))
    aws_security_groups: tuple[str, ...] = field(default_factory=lambda: _env_list("RECOPS_AWS_SECURITY_GROUPS"))
    # Where Secret keys referenced by a spec live in AWS, as an SSM parameter or Secrets Manager ARN template with
    # {namespace}, {secret} and {key}; ECS injects them (`secrets`), the operator never reads or sends the values.
    aws_secret_value_from: str = field(default_factory=lambda: _env("RECOPS_AWS_SECRET_VALUE_FROM"))
    ecs_cluster: str = field(default_factory=lambda: _env("RECOPS_ECS_CLUSTER"))
    # Role ECS uses to pull images, write logs and fetch `secrets`; the task role is what the job itself may do.
    ecs_execution_role_arn: str = field(default_factory=lambda: _env("RECOPS_ECS_EXECUTION_ROLE_ARN"))
    ecs_task_role_arn: str = field(default_factory=lambda: _env("RECOPS_ECS_TASK_ROLE_ARN"))
    # `ENABLED` only for subnets without a NAT gateway (public subnets); default `DISABLED`.
    ecs_assign_public_ip: str = field(default_factory=lambda: _env("RECOPS_ECS_ASSIGN_PUBLIC_IP",
                                                                   default="DISABLED").upper())
    # CloudWatch Logs group for task logs (awslogs driver); empty sends no logs anywhere.
    ecs_log_group: str = field(default_factory=lambda: _env("RECOPS_ECS_LOG_GROUP"))
    # The ELB target group each ECS model server registers with, as a name template with {namespace} and {name}
    # (the platform engineer creates it: target type ip, health check /readyz, on a listener); empty: none.
    ecs_target_group_name: str = field(default_factory=lambda: _env("RECOPS_ECS_TARGET_GROUP_NAME"))
    sagemaker_role_arn: str = field(default_factory=lambda: _env("RECOPS_SAGEMAKER_ROLE_ARN"))
    sagemaker_training_instance_type: str = field(default_factory=lambda: _env(
        "RECOPS_SAGEMAKER_TRAINING_INSTANCE_TYPE", default="ml.m5.large"))
    sagemaker_serving_instance_type: str = field(default_factory=lambda: _env(
        "RECOPS_SAGEMAKER_SERVING_INSTANCE_TYPE", default="ml.m5.large"))

    def missing_settings(self, backend: str) -> list[str]:
        """The environment variables an enabled AWS backend still needs (empty when it is usable)."""
        required: dict[str, bool] = {}
        if backend in ("ecs", "sagemaker"):
            required["RECOPS_AWS_REGION"] = bool(self.aws_region)
            required["RECOPS_AWS_RESULT_URI (an s3://bucket/prefix URI)"] = self.aws_result_uri.startswith("s3://") \
                and len(self.aws_result_uri) > len("s3://")
        if backend == "ecs":
            required["RECOPS_ECS_CLUSTER"] = bool(self.ecs_cluster)
            required["RECOPS_AWS_SUBNETS"] = bool(self.aws_subnets)
            required["RECOPS_AWS_SECURITY_GROUPS"] = bool(self.aws_security_groups)
            required["RECOPS_ECS_EXECUTION_ROLE_ARN"] = bool(self.ecs_execution_role_arn)
            required["RECOPS_ECS_ASSIGN_PUBLIC_IP (ENABLED or DISABLED)"] = \
                self.ecs_assign_public_ip in ("ENABLED", "DISABLED")
            required["RECOPS_ECS_TARGET_GROUP_NAME (empty, or a template with {name}, e.g. {namespace}-{name})"] = \
                not self.ecs_target_group_name or "{name}" in self.ecs_target_group_name
        if backend == "sagemaker":
            required["RECOPS_SAGEMAKER_ROLE_ARN"] = bool(self.sagemaker_role_arn)
        return [name for name, ok in required.items() if not ok]


def load() -> Config:
    return Config()

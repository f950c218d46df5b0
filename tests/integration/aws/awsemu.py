"""Helpers for the AWS tests: moto in server mode is an EMULATOR of the AWS APIs, not AWS (see conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recops.config import Config

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_REGION": "us-east-1"}
VENV_BIN = str(Path(sys.executable).parent)


@dataclass
class Aws:
    """One test's corner of the emulator: its own VPC, subnet, security group, ECS cluster and result bucket."""

    url: str
    config: Config
    bucket: str

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, endpoint_url=self.url, region_name="us-east-1")

    def settings_env(self) -> dict[str, str]:
        """The operator's environment for these settings (what a platform engineer would set)."""
        c = self.config
        return {"RECOPS_AWS_ENDPOINT_URL": self.url, "RECOPS_AWS_REGION": c.aws_region,
                "RECOPS_AWS_RESULT_URI": c.aws_result_uri, "RECOPS_AWS_SUBNETS": ",".join(c.aws_subnets),
                "RECOPS_AWS_SECURITY_GROUPS": ",".join(c.aws_security_groups), "RECOPS_ECS_CLUSTER": c.ecs_cluster,
                "RECOPS_ECS_EXECUTION_ROLE_ARN": c.ecs_execution_role_arn,
                "RECOPS_ECS_TASK_ROLE_ARN": c.ecs_task_role_arn, "RECOPS_SAGEMAKER_ROLE_ARN": c.sagemaker_role_arn,
                "RECOPS_AWS_SECRET_VALUE_FROM": c.aws_secret_value_from}

    def keys(self, prefix: str = "") -> list[str]:
        s3 = self.client("s3")
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def run_like_ecs(aws: Aws, task_arn: str, extra_env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Do what ECS would do with a task the emulator only records: resolve its `secrets` from (emulated) SSM, run
    its container command with its environment and overrides on this machine, then stop the task."""
    ecs, ssm = aws.client("ecs"), aws.client("ssm")
    cluster = aws.config.ecs_cluster
    task = ecs.describe_tasks(cluster=cluster, tasks=[task_arn])["tasks"][0]
    definition = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
    container = definition["containerDefinitions"][0]
    env = {"PATH": f"{VENV_BIN}:{os.environ['PATH']}", "HOME": str(cwd), "OPENBLAS_NUM_THREADS": "1", **extra_env}
    env.update({e["name"]: e["value"] for e in container.get("environment") or []})
    for override in (task.get("overrides") or {}).get("containerOverrides") or []:
        env.update({e["name"]: e["value"] for e in override.get("environment") or []})
    for secret in container.get("secrets") or []:
        name = secret["valueFrom"].split(":parameter", 1)[1]
        env[secret["name"]] = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    command = [sys.executable if c == "python" else c for c in container["command"]]
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    ecs.stop_task(cluster=cluster, task=task_arn, reason="Essential container in task exited")
    return done


def as_json(value: Any) -> str:
    return json.dumps(value, default=str)


def run_like_sagemaker(aws: Aws, model_name: str, port: int, cwd: Path) -> subprocess.Popen[bytes]:
    """Do what SageMaker hosting would do with a Model the emulator only records: start its image's program as
    `docker run IMAGE serve` would (the model-server image's entrypoint `recops-serve` with the argument `serve`)
    with the Model's container Environment, on this machine. Two changes keep it on this machine: RECOPS_HOST
    puts it on loopback instead of 0.0.0.0, and SAGEMAKER_BIND_TO_PORT (which SageMaker itself sets for
    multi-container endpoints) moves it from 8080 to `port`. Its output goes to cwd/serve.log."""
    model = aws.client("sagemaker").describe_model(ModelName=model_name)
    env = {"PATH": f"{VENV_BIN}:{os.environ['PATH']}", "HOME": str(cwd), "OPENBLAS_NUM_THREADS": "1",
           **model["PrimaryContainer"]["Environment"], "RECOPS_HOST": "127.0.0.1", "SAGEMAKER_BIND_TO_PORT": str(port)}
    with open(cwd / "serve.log", "wb") as log:
        return subprocess.Popen([str(Path(VENV_BIN) / "recops-serve"), "serve"], env=env, cwd=cwd, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)

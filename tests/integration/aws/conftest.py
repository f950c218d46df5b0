"""AWS for the ecs and sagemaker backends: moto in server mode, an EMULATOR of the AWS APIs, not AWS.

`moto_server -H 127.0.0.1 -p <free port>` runs as its own process for this directory's session and is stopped at
the end. What the emulator does not do, and the tests therefore do themselves (each test says where):
- it starts no container: an ECS task's lastStatus moves one step towards STOPPED on every DescribeTasks (STOPPED
  after four; tests/reliability/test_soak_aws.py sets moto's state manager to keep tasks RUNNING until StopTask),
  services never start tasks, and SageMaker training jobs report Completed and endpoints InService at once without
  running anything;
- StopTrainingJob and UpdateEndpoint answer HTTP 500 (not implemented).
`run_like_ecs` does what ECS would do with a task: resolve its `secrets` (from the emulated SSM), run its command
with its environment and overrides here, then stop it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from integration.operator.conftest import cluster, kubectl  # noqa: F401 (fixtures: the real apiserver + CRDs)
from recops.config import Config

sys.path.insert(0, str(Path(__file__).parent))  # this directory's helpers (pytest runs with --import-mode=importlib)
from awsemu import CREDENTIALS, VENV_BIN, Aws


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def aws_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of moto in server mode (an AWS emulator) on a free loopback port, stopped at the end of the session."""
    exe = shutil.which("moto_server", path=VENV_BIN) or shutil.which("moto_server")
    assert exe, "moto_server is missing: pip install 'moto[server]' (the dev extra)"
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"moto_server did not start: {log_path.read_text()[-2000:]}") from None
            time.sleep(0.2)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def aws(aws_emulator: str, monkeypatch: pytest.MonkeyPatch) -> Aws:
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=aws_emulator, region_name="us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})  # FARGATE RunTask needs it (moto)
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"recops-{uuid.uuid4().hex[:6]}", Description="recops tasks",
                                      VpcId=vpc)["GroupId"]
    tag = uuid.uuid4().hex[:8]
    ecs_cluster = f"recops-{tag}"
    boto3.client("ecs", endpoint_url=aws_emulator, region_name="us-east-1").create_cluster(clusterName=ecs_cluster)
    bucket = f"recops-results-{tag}"
    boto3.client("s3", endpoint_url=aws_emulator, region_name="us-east-1").create_bucket(Bucket=bucket)
    config = Config(enabled_backends=frozenset({"kubernetes", "ecs", "sagemaker"}), aws_region="us-east-1",
                    aws_endpoint_url=aws_emulator, aws_result_uri=f"s3://{bucket}/recops", aws_subnets=(subnet,),
                    aws_security_groups=(group,), ecs_cluster=ecs_cluster,
                    ecs_execution_role_arn="arn:aws:iam::123456789012:role/recops-exec",
                    ecs_task_role_arn="arn:aws:iam::123456789012:role/recops-task",
                    sagemaker_role_arn="arn:aws:iam::123456789012:role/recops-sagemaker",
                    aws_secret_value_from="arn:aws:ssm:us-east-1:123456789012:parameter/recops/{namespace}/{secret}/"
                                          "{key}")
    return Aws(aws_emulator, config, bucket)


@pytest.fixture
def lake(aws: Aws) -> str:
    """Generated clickstream (Parquet) in the emulated S3, as a data engineer's bucket would hold it."""
    from recops_features.datagen import GenerateSpec, generate, write_dataset

    spec = GenerateSpec(events=4000, days=14, seed=11)
    write_dataset(generate(spec), f"s3://{aws.bucket}/lake", fmt="parquet", client=aws.client("s3"), spec=spec)
    return f"s3://{aws.bucket}/lake"

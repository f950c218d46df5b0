"""Crash safety at the fault-injection points of `recops.faults` (`RECOPS_CRASH_AT=<point>:<n>` SIGKILLs the
process the n-th time that point is reached, right after the side effect).

* The boto3 points: the operator's own ECS submit runs in a process that is SIGKILLed right after
  RegisterTaskDefinition, after RunTask, and after submit returned, then runs again (what the restarted operator's
  next reconcile does) against moto in server mode, an EMULATOR of the AWS APIs (tests/integration/aws/conftest.py,
  started on a free port, no lab): exactly one task definition revision and one task remain.
* MLflow registration happens in the training job process, not the operator: a training attempt killed after
  creating its run, concurrent attempts, and a cut at model-version creation register exactly one version
  (tests/integration/training/test_train_mlflow.py, runKey idempotency); not repeated here.

No test here uses the lab; no lock needed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from integration.aws.conftest import aws, aws_emulator  # noqa: F401 (fixtures: moto in server mode, an emulator)
from recops.backends import aws as aws_backend
from recops.controllers.common import Owner

pytestmark = [pytest.mark.integration]

# -- the boto3 points: the ecs backend's submit against moto in server mode (an EMULATOR of ECS, S3) -------------------

SUBMIT = """
from recops.backends.aws import EcsBackend
from recops.backends.base import JobRequest
from recops.config import Config
from recops.controllers.common import Owner
owner = Owner(kind="FeaturePipeline", name="shop", namespace="team-a", uid="5b0c8f1e-2222-4a4a-9c9c-00000000c0de",
              generation=1)
EcsBackend(Config()).submit(JobRequest(owner=owner, name="shop-features-req-1", program="recops-features",
                                       config={"k": 1}, image="ghcr.io/recops/jobs:0.1"))
"""


@pytest.mark.parametrize("crash_at", ["aws-RegisterTaskDefinition:1", "aws-RunTask:1", "job-submitted:1"])
def test_ecs_submit_killed_after_a_boto3_call_leaves_no_duplicate_on_the_emulator(
        aws: Any, crash_at: str) -> None:  # noqa: F811 (the imported fixture)
    """The operator's own ECS submit, in a process SIGKILLed right after the boto3 call, then run again (what
    the restarted operator's next reconcile does): one task definition revision, one task, on the emulator."""
    from awsemu import CREDENTIALS

    env = {**CREDENTIALS, **aws.settings_env(), "RECOPS_BACKENDS": "kubernetes,ecs", "PATH": "/usr/bin:/bin"}
    started = time.monotonic()
    killed = subprocess.run([sys.executable, "-c", SUBMIT], env={**env, "RECOPS_CRASH_AT": crash_at},
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, f"not killed at {crash_at}: {killed.stderr[-2000:]}"
    again = subprocess.run([sys.executable, "-c", SUBMIT], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    seconds = time.monotonic() - started
    ecs = aws.client("ecs")
    tasks = [arn for status in ("RUNNING", "STOPPED")
             for arn in ecs.list_tasks(cluster=aws.config.ecs_cluster, desiredStatus=status)["taskArns"]]
    family = aws_backend.task_family(Owner(kind="FeaturePipeline", name="shop", namespace="team-a",
                                           uid="5b0c8f1e-2222-4a4a-9c9c-00000000c0de", generation=1), "job")
    revisions = {status: ecs.list_task_definitions(familyPrefix=family, status=status)["taskDefinitionArns"]
                 for status in ("ACTIVE", "INACTIVE")}
    assert len(tasks) == 1, f"{len(tasks)} emulated ECS tasks after the kill and rerun"
    assert len(revisions["ACTIVE"]) == 1 and not revisions["INACTIVE"], revisions
    print(f"\necs {crash_at}: survived; 1 task, 1 task definition after kill + rerun ({seconds:.1f}s)")


def test_crash_point_kills_on_the_nth_hit_only() -> None:
    """`RECOPS_CRASH_AT=name:n`: the n-th hit of that point SIGKILLs the process, other points and hits do not;
    `status-written` counts only when the body's status shows the conditions this process wrote."""
    script = ("from recops import faults\n"
              "faults.crash_point('other'); faults.crash_point('child-applied'); print('first', flush=True)\n"
              "faults.status_written({'conditions': [1]}, {'conditions': [2]}); print('differs', flush=True)\n"
              "faults.crash_point('child-applied'); print('second', flush=True)\n")
    got = subprocess.run([sys.executable, "-c", script], env={"RECOPS_CRASH_AT": "child-applied:2"},
                         capture_output=True, text=True, timeout=60)
    assert got.returncode == -signal.SIGKILL and got.stdout.split() == ["first", "differs"], got
    script = "from recops import faults\nfaults.status_written({'conditions': [1]}, {'conditions': [1]})\nprint('x')"
    got = subprocess.run([sys.executable, "-c", script], env={"RECOPS_CRASH_AT": "status-written"},
                         capture_output=True, text=True, timeout=60)
    assert got.returncode == -signal.SIGKILL and got.stdout == "", got
    got = subprocess.run([sys.executable, "-c", "from recops import faults\nfaults.crash_point('child-applied')"],
                         env={}, capture_output=True, text=True, timeout=60)
    assert got.returncode == 0, got

"""Create/delete soak on the AWS backends against moto in server mode, an EMULATOR of ECS, SageMaker and S3 (not
AWS; tests/integration/aws/conftest.py starts it on a free port), with the operator a real subprocess watching the
test's namespace on the lab's real kube-apiserver, and the lab's real MLflow behind the TrainingRuns.

Four kinds of object are created and deleted in rounds of BATCH each: RecommenderDeployments on `ecs` (an ECS
service and its task definition) and on `sagemaker` (model, endpoint config, endpoint), FeaturePipelines on `ecs`
(a Fargate task started right after creation, and its task definition) and TrainingRuns on `sagemaker` (a training
job). TrainingRuns have no `ecs` backend (docs/AWS.md). Rounds take turns: deleted once every object's emulated AWS
resource exists; the same, with the operator stopped first, so the deletes wait on its finalizer and the restarted
operator must clean up; deleted 0.5-1.5 s after create, racing the first reconcile. Afterwards: nothing stuck on a
finalizer, and on the emulator no ECS service that is not INACTIVE, no task whose desired status is RUNNING, no task
definition revision (active or inactive) of our families, no SageMaker model, endpoint config or endpoint of our
objects, no result document; SageMaker keeps training job records for good (AWS has no call to delete them), so
those are accounted for: each of one of our TrainingRuns, none in progress. A second test shows the check sees each kind
of resource (and that the backends' own deletes remove them).

What the emulator does not do (so this soak does not prove it): it starts no container, ECS services never start
tasks, training jobs report Completed and endpoints InService at once, and a real DeleteService drains for minutes.
moto moves a task's lastStatus one step per DescribeTasks (STOPPED after four) by default; for this test its state
manager keeps tasks RUNNING until StopTask, as a long feature job would run on ECS, so the delete must stop them.

Uses the lab (fixed ports): `flock /tmp/recops-lab.lock .venv/bin/pytest tests/reliability/test_soak_aws.py`.
`RECOPS_SOAK_AWS_CYCLES` (default 120) sets the cycles per kind.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.kube import Kubectl, create_all, temp_namespace
from fixtures.operator import operator_env, wait_for
from integration.aws.conftest import aws, aws_emulator  # noqa: F401 (fixtures: moto in server mode, an emulator)
from recops.backends import aws as aws_backend
from recops.backends.base import JobRequest, ServingRequest
from recops.controllers.common import Owner
from reliability.test_crash_safety import ScopedOperator

pytestmark = [pytest.mark.integration]

CYCLES = int(os.environ.get("RECOPS_SOAK_AWS_CYCLES", "120"))
BATCH = 10
# (short name, kind, backend): the objects that make emulated AWS resources.
KINDS = (("rde", "RecommenderDeployment", "ecs"), ("rds", "RecommenderDeployment", "sagemaker"),
         ("fpe", "FeaturePipeline", "ecs"), ("trs", "TrainingRun", "sagemaker"))
RECOPS_KINDS = "featurepipelines.recops.dev,trainingruns.recops.dev,recommenderdeployments.recops.dev"
GONE_WITHIN = 120.0  # seconds for a deleted round to disappear (AWS clean-up done, finalizers released)


@pytest.fixture
def namespace(cluster: Any) -> Iterator[Kubectl]:
    with temp_namespace(cluster, "sa") as k:
        yield k
        for obj in k.get_json(RECOPS_KINDS)["items"]:  # after a failure: let the namespace go
            k.run("patch", obj["kind"].lower(), obj["metadata"]["name"], "--type=merge", "-p",
                  '{"metadata":{"finalizers":null}}', check=False)


def _doc(short: str, kind: str, backend: str, name: str, mlflow: str) -> dict[str, Any]:
    """Minimal valid specs whose first reconcile creates the AWS resource at once (no Secrets, no MLflow alias)."""
    spec: dict[str, Any] = {
        "RecommenderDeployment": {"model": {"name": "soak", "version": "1", "trackingUri": mlflow}},
        "FeaturePipeline": {"schedule": "0 3 * * *", "sources": {"clickstream": {"uri": "s3://soak/events"}},
                            "output": {"uri": "s3://soak/snapshots"}},
        "TrainingRun": {"snapshot": {"uri": "s3://soak/snapshots/v1"}, "algorithm": {"name": "ease"},
                        "mlflow": {"trackingUri": mlflow, "experiment": "soak-aws", "modelName": "soak"}},
    }[kind]
    return {"apiVersion": "recops.dev/v1alpha1", "kind": kind, "metadata": {"name": name},
            "spec": {**spec, "backend": backend}}


def _create(k: Kubectl, docs: list[dict[str, Any]]) -> dict[str, Owner]:
    return {i["metadata"]["uid"]: Owner.from_body(i["kind"], i) for i in create_all(k, docs)}


def _pages(client: Any, operation: str, key: str, **kwargs: Any) -> list[Any]:
    return [x for page in client.get_paginator(operation).paginate(**kwargs) for x in page.get(key) or []]


class Emulated:
    """What exists on the emulator, read with the AWS APIs (paged), for the objects this test created."""

    def __init__(self, emulator: Any, namespace: str) -> None:
        self.ecs, self.sm = emulator.client("ecs"), emulator.client("sagemaker")
        self.emulator, self.cluster, self.namespace = emulator, emulator.config.ecs_cluster, namespace
        self.prefix = aws_backend.aws_name("recops", namespace)

    def services(self) -> dict[str, str]:
        """ECS service name -> status (the emulator keeps deleted services as INACTIVE)."""
        arns = _pages(self.ecs, "list_services", "serviceArns", cluster=self.cluster)
        found: dict[str, str] = {}
        for i in range(0, len(arns), 10):
            for svc in self.ecs.describe_services(cluster=self.cluster, services=arns[i:i + 10])["services"]:
                found[svc["serviceName"]] = svc["status"]
        return found

    def running_tasks(self) -> list[str]:
        """Task definition families of the tasks whose desired status is RUNNING (the cluster is this test's own)."""
        arns = _pages(self.ecs, "list_tasks", "taskArns", cluster=self.cluster, desiredStatus="RUNNING")
        tasks = [t for i in range(0, len(arns), 100)
                 for t in self.ecs.describe_tasks(cluster=self.cluster, tasks=arns[i:i + 100])["tasks"]]
        return [t["taskDefinitionArn"].rsplit("/", 1)[1].rsplit(":", 1)[0] for t in tasks]

    def tasks_run_until_stopped(self, until_stopped: bool) -> None:
        """moto's state manager: by default a task's lastStatus moves one step per DescribeTasks (STOPPED after
        four); set, a task stays RUNNING until StopTask, as a long feature job would on ECS."""
        import urllib.request

        action = "set" if until_stopped else "unset"
        body = {"model_name": "ecs::task", **({"transition": {"progression": "manual", "times": 10**9}}
                                              if until_stopped else {})}
        request = urllib.request.Request(f"{self.emulator.url}/moto-api/state-manager/{action}-transition",
                                         data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def task_definitions(self) -> list[str]:
        """Revisions (active or inactive) of our families (ListTaskDefinitions' familyPrefix is a whole family)."""
        families = _pages(self.ecs, "list_task_definition_families", "families", familyPrefix=self.prefix,
                          status="ALL")
        return [arn for family in families for status in ("ACTIVE", "INACTIVE") for arn in
                _pages(self.ecs, "list_task_definitions", "taskDefinitionArns", familyPrefix=family, status=status)]

    def sagemaker(self) -> dict[str, list[str]]:
        return {what: [x[name] for x in _pages(self.sm, f"list_{what}", key, NameContains=self.prefix)]
                for what, key, name in (("models", "Models", "ModelName"),
                                        ("endpoint_configs", "EndpointConfigs", "EndpointConfigName"),
                                        ("endpoints", "Endpoints", "EndpointName"),
                                        ("training_jobs", "TrainingJobSummaries", "TrainingJobName"))}

    def made(self, owners: dict[str, Owner]) -> list[str]:
        """The objects whose AWS resource does not exist yet (empty: every object's first reconcile acted)."""
        services = {n for n, s in self.services().items() if s == "ACTIVE"}
        running = set(self.running_tasks())
        sm = self.sagemaker()
        missing = []
        for owner in owners.values():
            prefix = aws_backend.owner_prefix(owner)
            have = {"rde": prefix in services, "fpe": aws_backend.task_family(owner, "job") in running,
                    "rds": prefix in sm["endpoints"],
                    "trs": aws_backend.training_job_name(owner) in sm["training_jobs"]}
            if not have[owner.name.split("-")[0]]:
                missing.append(owner.name)
        return missing

    def leftovers(self, trainingruns: set[str]) -> list[str]:
        """Everything of ours still on the emulator, except finished training job records of our TrainingRuns."""
        found = [f"ECS service {n} ({s})" for n, s in self.services().items() if s != "INACTIVE"]
        found += [f"ECS task of {family} not stopped (desired status RUNNING)" for family in self.running_tasks()]
        found += [f"ECS task definition {arn}" for arn in self.task_definitions()]
        sm = self.sagemaker()
        found += [f"SageMaker {what[:-1]} {name}" for what in ("models", "endpoint_configs", "endpoints")
                  for name in sm[what]]
        jobs = sm["training_jobs"]
        found += [f"training job {j} of no TrainingRun" for j in jobs if j not in trainingruns]
        if len(jobs) != len(set(jobs)):
            found.append(f"{len(jobs) - len(set(jobs))} duplicate training job names")
        found += [f"training job {j} in progress" for j in jobs
                  if self.sm.describe_training_job(TrainingJobName=j)["TrainingJobStatus"] == "InProgress"]
        found += [f"result document {key}" for key in self.emulator.keys(f"recops/{self.namespace}/")]
        return found


@pytest.mark.lab("k8s", "mlflow")
@pytest.mark.timeout(1200)
def test_create_delete_soak_on_the_aws_emulator_leaves_nothing_stuck_and_nothing_on_aws(
        cluster: Any, namespace: Kubectl, aws: Any, tmp_path: Path) -> None:  # noqa: F811 (the imported fixture)
    from awsemu import CREDENTIALS

    k, mlflow = namespace, cluster.mlflow_uri
    emulated = Emulated(aws, k.namespace)
    env = operator_env(cluster.env, tmp_path, RECOPS_RESYNC_SECONDS="3", RECOPS_BACKENDS="kubernetes,ecs,sagemaker",
                       **CREDENTIALS, **aws.settings_env())

    def operator() -> ScopedOperator:
        op = ScopedOperator(env, tmp_path / "operator.log", k.namespace)
        op.start()
        return op

    emulated.tasks_run_until_stopped(True)
    op = operator()
    deleted: dict[str, Owner] = {}
    done = dict.fromkeys((short for short, _, _ in KINDS), 0)
    down_rounds = down_deletes = at_once_deletes = 0
    made_times: list[float] = []
    gone_times: list[float] = []
    started = time.monotonic()
    try:
        for round_ in range(-(-CYCLES // BATCH)):
            size = min(BATCH, CYCLES - round_ * BATCH)
            docs = [_doc(short, kind, backend, f"{short}-{round_}-{i}", mlflow)
                    for short, kind, backend in KINDS for i in range(size)]
            t0 = time.monotonic()
            owners = _create(k, docs)
            last: list[str] = []

            def made(owners: dict[str, Owner] = owners) -> bool:
                nonlocal last
                last = emulated.made(owners)
                return not last

            at_once = round_ % 3 == 2  # deleted right away, racing the first reconcile
            if at_once:
                time.sleep(0.5 + round_ % 2)
                at_once_deletes += len(owners)
            else:
                try:
                    wait_for(made, 120, f"round {round_}: the AWS resource of each of {len(owners)} objects",
                             interval=1)
                except AssertionError:
                    statuses = {o["metadata"]["name"]: (o.get("status") or {}).get("conditions")
                                for o in k.get_json(RECOPS_KINDS)["items"] if o["metadata"]["name"] in last[:3]}
                    raise AssertionError(f"round {round_}: no AWS resource yet for {last}: {statuses}") from None
                made_times.append(time.monotonic() - t0)
            operator_down = round_ % 3 == 1
            if operator_down:
                op.stop()
            k.run("delete", "--wait=false", *[f"{o.kind}/{o.name}" for o in owners.values()])
            t0 = time.monotonic()
            if operator_down:
                time.sleep(2)
                waiting = [o for o in k.get_json(RECOPS_KINDS)["items"] if o["metadata"]["uid"] in owners]
                assert len(waiting) == len(owners) and all(o["metadata"].get("deletionTimestamp") for o in waiting), \
                    "with the operator down, deleted objects must wait on its finalizer"
                down_rounds, down_deletes = down_rounds + 1, down_deletes + len(owners)
                op = operator()
            try:
                wait_for(lambda owners=owners: not [o for o in k.get_json(RECOPS_KINDS)["items"]
                                                    if o["metadata"]["uid"] in owners],
                         GONE_WITHIN, "the deleted objects gone", interval=0.5)
            except AssertionError:
                stuck = [f"{o['kind']}/{o['metadata']['name']}" for o in k.get_json(RECOPS_KINDS)["items"]]
                raise AssertionError(f"round {round_}: {len(stuck)} stuck on the finalizer after {GONE_WITHIN}s, "
                                     f"e.g. {stuck[:10]}: {op.logs()[-3000:]}") from None
            gone_times.append(time.monotonic() - t0)
            deleted.update(owners)
            for short in done:
                done[short] += size
        soak_seconds = time.monotonic() - started
        trainingruns = {aws_backend.training_job_name(o) for o in deleted.values() if o.kind == "TrainingRun"}
        leaks = emulated.leftovers(trainingruns)
        job_records = len(emulated.sagemaker()["training_jobs"])
        inactive = sum(1 for s in emulated.services().values() if s == "INACTIVE")
    finally:
        op.stop()
        emulated.tasks_run_until_stopped(False)
    assert leaks == [], f"{len(leaks)} left on the emulator after the soak, e.g. {leaks[:20]}"
    assert k.get_json(RECOPS_KINDS)["items"] == []
    logs = op.logs()
    assert logs.count("Started the Recops operator") == 1 + down_rounds
    assert "Traceback" not in logs, logs[logs.index("Traceback") - 2000:][:5000]
    made_times.sort()
    gone_times.sort()
    print(f"\nAWS soak (emulator): {done} create/delete cycles ({sum(done.values())} objects) in {soak_seconds:.0f}s, "
          f"{down_deletes} of them deleted while the operator was down ({down_rounds} restarts), {at_once_deletes} "
          f"0.5-1.5s after create (racing the first reconcile); AWS resources made "
          f"after create: median {made_times[len(made_times) // 2]:.1f}s; rounds gone after delete: median "
          f"{gone_times[len(gone_times) // 2]:.1f}s, max {gone_times[-1]:.1f}s; left on the emulator: 0 services "
          f"(ACTIVE/DRAINING; {inactive} INACTIVE records), 0 running tasks, 0 task definitions, 0 SageMaker models/"
          f"endpoint configs/endpoints; {job_records} finished training job records for {len(trainingruns)} "
          f"TrainingRuns (AWS keeps them; the rest were deleted before their first reconcile)")
    assert done == {short: CYCLES for short, _, _ in KINDS}


def test_the_leftover_check_sees_each_kind_of_emulated_resource(aws: Any) -> None:  # noqa: F811 (the fixture)
    """The soak's zero means something: one resource of each kind the soak checks, made by the backends' own calls
    on the emulator (no lab, no operator), is reported by `Emulated.leftovers`, and is gone after the backends'
    own delete/cancel/release (what the operator's delete handler calls)."""
    emulated = Emulated(aws, "sa-check")
    owners = {kind: Owner(kind=kind, name=f"o-{kind.lower()[:2]}", namespace="sa-check",
                          uid=f"{i}b0c8f1e-2222-4a4a-9c9c-00000000c0de") for i, kind in
              enumerate(("RecommenderDeployment", "FeaturePipeline", "TrainingRun"))}
    rd, fp, tr = owners.values()
    ecs, sagemaker = aws_backend.EcsBackend(aws.config), aws_backend.SageMakerBackend(aws.config)
    serving = ServingRequest(owner=rd, name="serve", env={"RECOPS_MODEL_URI": "models:/m/1"}, image="x", version="1")
    emulated.tasks_run_until_stopped(True)
    try:
        ecs.apply(serving)
        sagemaker.apply(serving)
        ecs.submit(JobRequest(owner=fp, name="run-1", program="recops-features", config={}, image="x"))
        sagemaker.submit(JobRequest(owner=tr, name="train", program="recops-train", config={}, image="x"))
        found = emulated.leftovers(set())
        prefix = aws_backend.owner_prefix(rd)
        for what in (f"ECS service {prefix} (ACTIVE)", f"SageMaker endpoint {prefix}", "SageMaker model ",
                     "SageMaker endpoint_config ", "ECS task definition ", "ECS task of ",
                     f"training job {aws_backend.training_job_name(tr)} of no TrainingRun"):
            assert any(line.startswith(what) for line in found), (what, found)
        assert len([line for line in found if line.startswith("ECS task definition ")]) == 2, found
        ecs.delete(rd, "serve")
        sagemaker.delete(rd, "serve")
        ecs.cancel(fp, "run-1")
        ecs.release(fp)
        sagemaker.release(tr)
        assert emulated.leftovers({aws_backend.training_job_name(tr)}) == []
    finally:
        emulated.tasks_run_until_stopped(False)

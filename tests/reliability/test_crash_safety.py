"""Crash safety at the fault-injection points of `recops.faults` (`RECOPS_CRASH_AT=<point>:<n>` SIGKILLs the
process the n-th time that point is reached, right after the side effect), and at seeded random times.

* The kubernetes backend: the operator, a real subprocess against the lab's real kube-apiserver (kwok runs the
  pods), is SIGKILLed right after a child apply, a Job submit, a status write, and at 20 seeded random times while
  two objects of each kind reconcile; it is restarted without the fault and every object must converge with its
  children exactly as the operator's own builders want them: none duplicated, none orphaned, every owner reference
  pointing at a live object (children counted by owner reference).
* The boto3 points: the operator's own ECS submit runs in a process that is SIGKILLed right after
  RegisterTaskDefinition, after RunTask, and after submit returned, then runs again (what the restarted operator's
  next reconcile does) against moto in server mode, an EMULATOR of the AWS APIs (tests/integration/aws/conftest.py,
  started on a free port, no lab): exactly one task definition revision and one task remain.
* MLflow registration happens in the training job process (recops-train), not the operator: the job, against a
  real `mlflow server` on a free port (no lab), is SIGKILLed right after `mlflow.register_model` returned and right
  after the alias moved, then runs again with the same runKey: exactly one model version, the alias on it. (Killed
  after creating its run, and concurrent attempts: tests/integration/training/test_train_mlflow.py.)

Where "status written" falls: kopf patches the status after the handler returns, so the point sits at the start
of the next reconcile of that object and fires only once its body shows the conditions this process last wrote.

The kubernetes tests use the lab (fixed ports):
`flock /tmp/recops-lab.lock .venv/bin/pytest tests/reliability/test_crash_safety.py`.
"""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures.kube import ROOT, Kubectl, temp_namespace
from fixtures.operator import OperatorProcess, operator_env, wait_for
from integration.aws.conftest import aws, aws_emulator  # noqa: F401 (fixtures: moto in server mode, an emulator)
from integration.training.conftest import mlflow_home, mlflow_server, snapshot_dir  # noqa: F401 (fixtures)
from integration.training.jobs import client, config, job_env, run_train, versions_of
from recops.api.featurepipeline import FeaturePipelineSpec
from recops.api.recommenderdeployment import RecommenderDeploymentSpec
from recops.api.trainingrun import TrainingRunSpec
from recops.backends import aws as aws_backend
from recops.controllers import driftmonitor as dm
from recops.controllers import featurepipeline as fp
from recops.controllers import recommenderdeployment as rd
from recops.controllers import trainingrun as tr
from recops.controllers.common import Owner
from recops.controllers.schedule import request_run_name

pytestmark = [pytest.mark.integration]
LAB = pytest.mark.lab("k8s", "mlflow")

SECRETS = {"clickstream-s3": {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"},
           "profiles-db": {"dsn": "postgresql://u:p@127.0.0.1:1/db"}}
COUNTED = (("apps/v1", "deployments"), ("v1", "services"), ("batch/v1", "cronjobs"), ("batch/v1", "jobs"),
           ("v1", "configmaps"))
SUMMARY = {"FeaturePipeline": "Ready", "TrainingRun": "Succeeded", "RecommenderDeployment": "Ready",
           "DriftMonitor": "Ready"}
TOKEN = "crash-1"
RESULTS: list[tuple[str, int, float]] = []  # (point, kills survived, seconds to converge or to rerun)


@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    yield
    if RESULTS:
        print("\n\npoint | kills survived | convergence (or rerun) s")
        print("\n".join(f"{name} | {kills} | {secs:.1f}" for name, kills, secs in RESULTS))
        print(f"kills survived by the tests that passed: {sum(k for _, k, _ in RESULTS)}")


def manifests(ns: str, mlflow: str, suffix: str = "") -> list[dict[str, Any]]:
    """One object of each kind on the kubernetes backend; FP and DM carry a run request so they start a Job."""
    fp_doc = yaml.safe_load((ROOT / "examples" / "featurepipeline.yaml").read_text())
    fp_doc["metadata"] = {"name": f"fp{suffix}", "namespace": ns, "annotations": {"recops.dev/run-requested": TOKEN}}
    rd_doc = {"apiVersion": "recops.dev/v1alpha1", "kind": "RecommenderDeployment",
              "metadata": {"name": f"rd{suffix}", "namespace": ns},
              "spec": {"model": {"name": "m", "version": "1", "trackingUri": mlflow},
                       "payloadLogging": {"uri": "s3://payload/logs"}}}
    tr_doc = {"apiVersion": "recops.dev/v1alpha1", "kind": "TrainingRun",
              "metadata": {"name": f"tr{suffix}", "namespace": ns},
              "spec": {"snapshot": {"uri": "s3://features/snapshots/v1"}, "algorithm": {"name": "ease"},
                       "mlflow": {"trackingUri": mlflow, "experiment": "crash", "modelName": "m"}}}
    dm_doc = {"apiVersion": "recops.dev/v1alpha1", "kind": "DriftMonitor",
              "metadata": {"name": f"dm{suffix}", "namespace": ns, "annotations": {"recops.dev/run-requested": TOKEN}},
              # once a year: only the first scheduled check (at creation) and the requested one run in a test
              "spec": {"target": {"deploymentRef": {"name": f"rd{suffix}"}}, "sources": ["PayloadLogs"],
                       "schedule": "0 0 1 1 *"}}
    return [fp_doc, rd_doc, tr_doc, dm_doc]


def expected_children(obj: dict[str, Any]) -> set[tuple[str, str]]:
    """(kind, name) of the counted children the operator's own pure builders want for this object."""
    kind, spec, status = obj["kind"], obj.get("spec") or {}, obj.get("status") or {}
    owner = Owner.from_body(kind, obj)
    if kind == "FeaturePipeline":
        children = fp.build_children(FeaturePipelineSpec.model_validate(spec), owner)
        children.append({"kind": "Job", "metadata": {"name": request_run_name(fp.cronjob_name(owner), TOKEN)}})
    elif kind == "RecommenderDeployment":
        children = rd.build_children(RecommenderDeploymentSpec.model_validate(spec), owner, monitoring_crds=True)
    elif kind == "TrainingRun":
        children = tr.build_children(TrainingRunSpec.model_validate(spec), owner, status["snapshotUri"])
    else:  # one ConfigMap + Job per check its status records: the requested one and the first scheduled one
        checks = [request_run_name(dm.check_base_name(owner), TOKEN)] if status.get("lastRunRequest") == TOKEN else []
        checks += [status["lastScheduledCheck"]] if status.get("lastScheduledCheck") else []
        children = [c for check in checks for c in dm.check_children(owner, check, {}, {}, [])]
    kinds = {"Deployment", "Service", "CronJob", "Job", "ConfigMap"}
    return {(c["kind"], c["metadata"]["name"]) for c in children if c["kind"] in kinds}


class Cluster:
    def __init__(self, kubectl: Kubectl) -> None:
        self.k = kubectl

    def ours(self) -> list[dict[str, Any]]:
        got = self.k.get_json("featurepipelines,trainingruns,recommenderdeployments,driftmonitors")
        return list(got["items"])

    def children(self) -> list[dict[str, Any]]:
        items = self.k.get_json(",".join(plural for _, plural in COUNTED))["items"]
        return [i for i in items if any(r.get("apiVersion") == "recops.dev/v1alpha1"
                                        for r in i["metadata"].get("ownerReferences") or [])]

    def problems(self) -> list[str]:
        """Empty when every object converged and its children are exactly the desired ones."""
        out: list[str] = []
        objects = self.ours()
        by_uid = {o["metadata"]["uid"]: o for o in objects}
        have: dict[str, list[tuple[str, str]]] = {uid: [] for uid in by_uid}
        for child in self.children():
            refs = [r for r in child["metadata"].get("ownerReferences") or []
                    if r.get("apiVersion") == "recops.dev/v1alpha1"]
            name = f"{child['kind']}/{child['metadata']['name']}"
            if len(refs) != 1 or not refs[0].get("controller"):
                out.append(f"{name}: {len(refs)} recops owner references, want 1 controller reference")
            for ref in refs:
                owner = by_uid.get(ref["uid"])
                if owner is None or owner["kind"] != ref["kind"] or owner["metadata"]["name"] != ref["name"]:
                    out.append(f"{name}: orphaned (owner {ref['kind']}/{ref['name']} uid {ref['uid']} is not live)")
                else:
                    have[ref["uid"]].append((child["kind"], child["metadata"]["name"]))
        for uid, obj in by_uid.items():
            label = f"{obj['kind']}/{obj['metadata']['name']}"
            status = obj.get("status") or {}
            if status.get("observedGeneration") != obj["metadata"]["generation"]:
                out.append(f"{label}: observedGeneration {status.get('observedGeneration')} != "
                           f"{obj['metadata']['generation']}")
                continue
            if not any(c.get("type") == SUMMARY[obj["kind"]] for c in status.get("conditions") or []):
                out.append(f"{label}: no {SUMMARY[obj['kind']]} condition")
                continue
            if obj["kind"] == "DriftMonitor" and status.get("lastRunRequest") != TOKEN:
                out.append(f"{label}: the requested check has not been submitted yet")
                continue
            if obj["kind"] == "TrainingRun" and not status.get("snapshotUri"):
                out.append(f"{label}: not started")
                continue
            got = have[uid]
            if len(got) != len(set(got)) or set(got) != expected_children(obj):
                out.append(f"{label}: children {sorted(got)} != desired {sorted(expected_children(obj))}")
        return out


def converge(cluster: Cluster, timeout: float = 90) -> float:
    started = time.monotonic()
    last: list[str] = []

    def ok() -> bool:
        nonlocal last
        last = cluster.problems()
        return not last

    try:
        wait_for(ok, timeout, "convergence", interval=0.5)
    except AssertionError:
        raise AssertionError(f"not converged after {timeout}s: {last}") from None
    return time.monotonic() - started


@pytest.fixture
def namespace(cluster: Any) -> Iterator[Kubectl]:
    with temp_namespace(cluster, "crash") as k:
        for name, data in SECRETS.items():
            k.run("create", "secret", "generic", name, *[f"--from-literal={a}={b}" for a, b in data.items()])
        yield k
        # No operator watches this namespace any more: drop our finalizers so the namespace can go.
        for obj in Cluster(k).ours():
            k.run("patch", obj["kind"].lower(), obj["metadata"]["name"], "--type=merge", "-p",
                  '{"metadata":{"finalizers":null}}', check=False)


class ScopedOperator(OperatorProcess):
    """The operator watching one namespace only, so crash points count this test's objects only."""

    def __init__(self, env: dict[str, str], log: Path, namespace: str) -> None:
        super().__init__(env, log)
        self.namespace = namespace

    def start(self) -> None:
        out = open(self.log, "ab")  # noqa: SIM115 (kept open for the child's lifetime)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.proc = subprocess.Popen([sys.executable, "-m", "recops.cli", "operator", "--health-port", str(port),
                                      "--namespace", self.namespace],
                                     env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _operator(cluster: Any, tmp: Path, ns: str, crash_at: str | None, **extra: str) -> OperatorProcess:
    env = operator_env(cluster.env, tmp, RECOPS_RESYNC_SECONDS="2", **extra)
    if crash_at:
        env["RECOPS_CRASH_AT"] = crash_at
    op = ScopedOperator(env, tmp / "operator.log", ns)
    op.start()
    return op


def _wait_killed(op: OperatorProcess, timeout: float) -> None:
    assert op.proc is not None
    try:
        code = op.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        op.stop()
        raise AssertionError(f"the crash point was never reached in {timeout}s: {op.logs()[-3000:]}") from None
    assert code == -signal.SIGKILL, f"exit {code}, not SIGKILL: {op.logs()[-3000:]}"


POINTS = ["child-applied:1", "child-applied:4", "job-submitted:1", "job-submitted:2", "status-written:1",
          "status-written:3"]


@LAB
@pytest.mark.parametrize("crash_at", POINTS)
def test_killed_after_a_side_effect_converges_without_duplicates(
        cluster: Any, namespace: Kubectl, tmp_path: Path, crash_at: str) -> None:
    for doc in manifests(namespace.namespace, cluster.mlflow_uri):
        namespace.run("create", "-f", "-", stdin=yaml.safe_dump(doc))
    op = _operator(cluster, tmp_path, namespace.namespace, crash_at)
    _wait_killed(op, 60)
    op = _operator(cluster, tmp_path, namespace.namespace, None)
    try:
        seconds = converge(Cluster(namespace))
        time.sleep(4)  # two more resyncs: still exactly as desired
        assert Cluster(namespace).problems() == []
    finally:
        op.stop()
    RESULTS.append((crash_at, 1, seconds))
    print(f"\n{crash_at}: survived, converged {seconds:.1f}s after the restart")


def _started(log: Path, offset: int) -> bool:
    return "Activity 'configure' succeeded" in log.read_text(errors="replace")[offset:]


DONE = ("Handler 'reconcile' succeeded", "Timer 'resync' succeeded")


@LAB
def test_twenty_seeded_random_kills_during_a_reconcile_storm(
        cluster: Any, namespace: Kubectl, tmp_path: Path) -> None:
    """Before each kill every FeaturePipeline and RecommenderDeployment gets a spec change, so each new operator
    has children to update; the kill falls a seeded random 0-1.5 s after the operator has started (its startup
    activity logged). Per kill the test counts the reconciles that process finished: fewer than the objects means
    the kill fell inside its first pass over them."""
    rng = random.Random(20261129)
    for suffix in ("-a", "-b"):
        for doc in manifests(namespace.namespace, cluster.mlflow_uri, suffix):
            namespace.run("create", "-f", "-", stdin=yaml.safe_dump(doc))
    objects = len(Cluster(namespace).ours())
    delays = [round(rng.uniform(0.0, 1.5), 2) for _ in range(20)]
    log = tmp_path / "operator.log"
    finished: list[int] = []
    for i, delay in enumerate(delays, 1):
        for suffix in ("-a", "-b"):  # new work for this round's operator
            namespace.run("patch", "fp", f"fp{suffix}", "--type=merge", "-p",
                          f'{{"spec":{{"window":{{"days":{20 + i}}}}}}}')
            namespace.run("patch", "rd", f"rd{suffix}", "--type=merge", "-p", f'{{"spec":{{"replicas":{1 + i % 3}}}}}')
        offset = len(log.read_text(errors="replace")) if log.exists() else 0
        op = _operator(cluster, tmp_path, namespace.namespace, None)
        wait_for(lambda off=offset: _started(log, off), 60, f"kill {i}: the operator to start", interval=0.05)
        time.sleep(delay)
        assert op.proc is not None and op.proc.poll() is None, f"kill {i}: the operator died by itself"
        op.stop(signal.SIGKILL)
        assert op.proc.returncode == -signal.SIGKILL
        text = log.read_text(errors="replace")[offset:]
        finished.append(sum(text.count(line) for line in DONE))
    namespace.run("patch", "fp", "fp-a", "--type=merge", "-p", '{"spec":{"window":{"days":7}}}')  # work for the last
    op = _operator(cluster, tmp_path, namespace.namespace, None)
    try:
        seconds = converge(Cluster(namespace), timeout=120)
        time.sleep(4)
        assert Cluster(namespace).problems() == []
    finally:
        op.stop()
    mid_pass = sum(1 for n in finished if n < objects)
    print(f"\n20 random kills {min(delays)}-{max(delays)}s after start-up; reconciles finished before each kill: "
          f"{finished}; {mid_pass} of 20 fell inside the first pass over the {objects} objects")
    assert mid_pass >= 3, f"only {mid_pass} of 20 kills fell while the operator was reconciling: timing is off"
    RESULTS.append((f"seeded random ({mid_pass} inside the first pass)", len(delays), seconds))


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
    RESULTS.append((f"ecs {crash_at} (emulator)", 1, seconds))
    print(f"\necs {crash_at}: survived; 1 task, 1 task definition after kill + rerun ({seconds:.1f}s)")


# -- MLflow registration: the training job (where registration happens) against a real `mlflow server` -------------

KILLED_TRAINING = """
import functools, os, runpy, signal, sys
import mlflow
from mlflow.tracking import MlflowClient
owner, name = sys.argv.pop(1).split(".")
target = mlflow if owner == "mlflow" else MlflowClient
original = getattr(target, name)

@functools.wraps(original)
def then_die(*args, **kwargs):
    got = original(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)  # right after the registry call returned
    return got

setattr(target, name, then_die)
sys.argv = ["recops-train", *sys.argv[1:]]
runpy.run_module("recops_training", run_name="__main__")
"""


@pytest.mark.parametrize("call", ["mlflow.register_model", "MlflowClient.set_registered_model_alias"])
def test_training_killed_after_an_mlflow_registry_call_registers_one_version(
        tmp_path: Path, mlflow_server: str, snapshot_dir: Path, call: str) -> None:  # noqa: F811 (fixtures)
    """recops-train (the process that registers models; the operator does not) is SIGKILLed right after the
    registry call returned (the model version created; the alias moved), then runs again with the same runKey,
    as the Job's retry does: exactly one version, and the alias on it."""
    model = f"crash-{call.rsplit('.', 1)[1].replace('_', '-')}"
    cfg = config(snapshot_dir, model, f"uid-{model}")
    cfg_path = tmp_path / "killed.json"
    cfg_path.write_text(json.dumps(cfg))
    started = time.monotonic()
    killed = subprocess.run([sys.executable, "-c", KILLED_TRAINING, call, "run", "--config", str(cfg_path),
                             "--result-file", str(tmp_path / "killed.result.json")],
                            env=job_env(mlflow_server), capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, f"not killed after {call}: {killed.stderr[-3000:]}"
    c: Any = client(mlflow_server)
    assert versions_of(c, model) == [1], "the killed attempt did not get as far as registering"
    code, res, err, _ = run_train(tmp_path, cfg, mlflow_server, "again")
    seconds = time.monotonic() - started
    assert code == 0, (res, err[-3000:])
    assert versions_of(c, model) == [1] and res["modelVersion"] == "1", (versions_of(c, model), res)
    alias = cfg.get("promotion", {}).get("alias") or "champion"
    assert c.get_model_version_by_alias(model, alias).version == "1"
    RESULTS.append((f"training {call}", 1, seconds))
    print(f"\ntraining killed after {call}: survived; 1 model version, alias {alias} on it ({seconds:.1f}s)")


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

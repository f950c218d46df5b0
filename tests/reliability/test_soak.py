"""Create/delete soak: 200 cycles of each kind against the lab's real kube-apiserver (with its real
kube-controller-manager garbage collector and kwok fake nodes), the operator a real subprocess, the lab's real
MLflow server behind the TrainingRuns' trackingUri (the operator checks it before it creates the training Job).

Objects are created and deleted in rounds of BATCH per kind; in every third round the operator is stopped, the
round is deleted while it is down (the objects must wait on the finalizer), and a new operator process is started
that must let them go. Afterwards: no object left (nothing stuck on a finalizer, each round gone within a bound)
and nothing leaked (no child with an ownerReference to a deleted owner: Jobs, CronJobs, Deployments, ReplicaSets,
Pods, Services, ConfigMaps, PDBs, HPAs, ServiceMonitors, PrometheusRules, TrainingRuns).

All kinds use the kubernetes backend here: its delete removes nothing outside the cluster (children go by owner
reference), so no snapshot or result clean-up applies. Deleting objects of an AWS backend this operator has not
configured is tested below (the finalizer lets go with a Warning Event).

Uses the lab (fixed ports): `flock /tmp/recops-lab.lock .venv/bin/pytest tests/reliability/test_soak.py`.
`RECOPS_SOAK_CYCLES` (default 200) sets the cycles per kind.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.kube import Kubectl, create_all, temp_namespace
from fixtures.operator import OperatorProcess, operator_env, run_operator, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.lab("k8s", "mlflow"), pytest.mark.timeout(1200)]

CYCLES = int(os.environ.get("RECOPS_SOAK_CYCLES", "200"))
BATCH = 20
KINDS = ("FeaturePipeline", "TrainingRun", "RecommenderDeployment", "DriftMonitor")
RECOPS_KINDS = ",".join(f"{k.lower()}s.recops.dev" for k in KINDS)
# The children the operator (or the cluster's controllers, for ReplicaSets and Pods) create, by owner reference.
CHILD_KINDS = ("jobs", "cronjobs", "deployments", "replicasets", "pods", "services", "configmaps",
               "poddisruptionbudgets", "horizontalpodautoscalers", "servicemonitors.monitoring.coreos.com",
               "prometheusrules.monitoring.coreos.com", "trainingruns.recops.dev")
# What each kind's first reconcile creates: the proof that the operator acted on it before it is deleted.
FIRST_CHILD = {"FeaturePipeline": "cronjobs", "TrainingRun": "jobs", "RecommenderDeployment": "deployments",
               "DriftMonitor": "prometheusrules.monitoring.coreos.com"}
GONE_WITHIN = 90.0  # seconds for a deleted round to disappear (finalizers released)


@pytest.fixture
def namespace(cluster: Any) -> Iterator[Kubectl]:
    with temp_namespace(cluster, "soak") as k:
        yield k


def _doc(kind: str, name: str, mlflow: str) -> dict[str, Any]:
    """Minimal valid specs whose first reconcile creates children at once (no Secrets, no snapshot to wait for)."""
    spec: dict[str, Any] = {
        "FeaturePipeline": {"schedule": "0 3 * * *", "sources": {"clickstream": {"uri": "s3://soak/events"}},
                            "output": {"uri": "s3://soak/snapshots"}},
        "TrainingRun": {"snapshot": {"uri": "s3://soak/snapshots/v1"}, "algorithm": {"name": "ease"},
                        "mlflow": {"trackingUri": mlflow, "experiment": "soak", "modelName": "soak"},
                        "backoffLimit": 0},
        "RecommenderDeployment": {"model": {"name": "soak", "version": "1", "trackingUri": mlflow},
                                  "autoscaling": {"minReplicas": 1, "maxReplicas": 2}},
        "DriftMonitor": {"target": {"deploymentRef": {"name": "soak-target"}}, "schedule": "0 * * * *"},
    }[kind]
    return {"apiVersion": "recops.dev/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def _create(k: Kubectl, docs: list[dict[str, Any]]) -> dict[str, str]:
    items = create_all(k, docs)
    return {i["metadata"]["uid"]: f"{i['kind']}/{i['metadata']['name']}" for i in items}


def _items(k: Kubectl, kinds: str) -> list[dict[str, Any]]:
    return list(k.get_json(kinds)["items"])


def _owned(items: list[dict[str, Any]], uids: set[str]) -> list[dict[str, Any]]:
    return [i for i in items if {r["uid"] for r in i["metadata"].get("ownerReferences") or []} & uids]


def _children_made(k: Kubectl, uids: dict[str, str]) -> bool:
    """Every object of the round has the finalizer and the first child its kind's reconcile creates."""
    objects = [o for o in _items(k, RECOPS_KINDS) if o["metadata"]["uid"] in uids]
    if len(objects) < len(uids) or not all("recops.dev/finalizer" in (o["metadata"].get("finalizers") or [])
                                           for o in objects):
        return False
    owners: set[str] = set()
    for resource in set(FIRST_CHILD.values()):
        owners |= {r["uid"] for i in _items(k, resource) for r in i["metadata"].get("ownerReferences") or []}
    return set(uids) <= owners


def test_create_delete_soak_leaves_nothing_stuck_and_nothing_leaked(
        cluster: Any, namespace: Kubectl, tmp_path: Path) -> None:
    k, mlflow = namespace, cluster.mlflow_uri
    env = operator_env(cluster.env, tmp_path, RECOPS_RESYNC_SECONDS="30")
    op = OperatorProcess(env, tmp_path / "operator.log")
    op.start()
    target = _create(k, [_doc("RecommenderDeployment", "soak-target", mlflow)])  # the DriftMonitors' target
    deleted: dict[str, str] = {}
    done = dict.fromkeys(KINDS, 0)
    down_rounds = down_deletes = 0
    gone_times: list[float] = []
    started = time.monotonic()
    try:
        for round_ in range(-(-CYCLES // BATCH)):
            size = min(BATCH, CYCLES - round_ * BATCH)
            docs = [_doc(kind, f"{kind.lower()[:2]}-{round_}-{i}", mlflow) for kind in KINDS for i in range(size)]
            uids = _create(k, docs)
            wait_for(lambda uids=uids: _children_made(k, uids), 120,
                     f"round {round_}: finalizers and first children on {len(uids)} objects", interval=1)
            names = sorted(uids.values())
            operator_down = round_ % 3 == 1
            if operator_down:
                op.stop()
            k.run("delete", "--wait=false", *names)
            t0 = time.monotonic()
            if operator_down:
                time.sleep(2)
                waiting = [o for o in _items(k, RECOPS_KINDS) if o["metadata"]["uid"] in uids]
                assert len(waiting) == len(uids) and all(o["metadata"].get("deletionTimestamp") for o in waiting), \
                    "with the operator down, deleted objects must wait on its finalizer"
                down_rounds, down_deletes = down_rounds + 1, down_deletes + len(uids)
                op = OperatorProcess(env, tmp_path / "operator.log")
                op.start()
            wait_for(lambda uids=uids: not [o for o in _items(k, RECOPS_KINDS) if o["metadata"]["uid"] in uids],
                     GONE_WITHIN, f"round {round_}: all {len(uids)} deleted objects gone (finalizers released)",
                     interval=0.5)
            gone_times.append(time.monotonic() - t0)
            deleted.update(uids)
            for kind in KINDS:
                done[kind] += size
        soak_seconds = time.monotonic() - started

        def leftovers() -> list[str]:
            found = [f"{i['kind']}/{i['metadata']['name']}" for resource in CHILD_KINDS
                     for i in _owned(_items(k, resource), set(deleted))]
            # ReplicaSets and Pods are owned by the Deployments and Jobs, not by our objects: none may remain
            # except the DriftMonitors' target's own.
            target_deployments = {i["metadata"]["uid"] for i in _owned(_items(k, "deployments"), set(target))}
            target_rs = {i["metadata"]["uid"] for i in _owned(_items(k, "replicasets"), target_deployments)}
            found += [f"ReplicaSet/{i['metadata']['name']}" for i in _items(k, "replicasets")
                      if i["metadata"]["uid"] not in target_rs]
            found += [f"Pod/{i['metadata']['name']}" for i in _items(k, "pods")
                      if not {r["uid"] for r in i["metadata"].get("ownerReferences") or []} & target_rs]
            found += [f"{o['kind']}/{o['metadata']['name']}" for o in _items(k, RECOPS_KINDS)
                      if o["metadata"]["uid"] not in target]
            return found

        gc_started = time.monotonic()
        try:
            wait_for(lambda: not leftovers(), 180, "the garbage collector to remove every child", interval=2)
        except AssertionError:
            leaks = leftovers()
            raise AssertionError(f"{len(leaks)} leaked after the soak, e.g. {leaks[:20]}") from None
        gc_seconds = time.monotonic() - gc_started
    finally:
        op.stop()
    total = time.monotonic() - started
    assert op.logs().count("Started the Recops operator") == 1 + down_rounds
    assert "Traceback" not in op.logs(), op.logs()[-3000:]
    gone_times.sort()
    print(f"\nsoak: {done} create/delete cycles ({sum(done.values())} objects) in {soak_seconds:.0f}s, "
          f"{down_deletes} of them deleted while the operator was down ({down_rounds} restarts); "
          f"rounds gone after delete: median {gone_times[len(gone_times) // 2]:.1f}s, max {gone_times[-1]:.1f}s; "
          f"children garbage-collected {gc_seconds:.1f}s after the last round; 0 stuck, 0 leaked; total {total:.0f}s")
    assert done == dict.fromkeys(KINDS, CYCLES)


# -- AWS backends this operator has not configured ------------------------------------------------------------------

@pytest.mark.parametrize("backends", ["kubernetes", "kubernetes,ecs,sagemaker"])
def test_delete_on_an_unconfigured_aws_backend_lets_go_with_a_warning(
        cluster: Any, namespace: Kubectl, tmp_path: Path, backends: str) -> None:
    """No RECOPS_AWS_* settings: the AWS backends are either not enabled or enabled but not configured. Objects
    on them were never started there by this operator; deleting them must not hang on the finalizer, and a
    Warning Event must say that nothing remote was cleaned up and why."""
    k, mlflow = namespace, cluster.mlflow_uri
    docs = [_doc("FeaturePipeline", "fp-ecs", mlflow), _doc("TrainingRun", "tr-sagemaker", mlflow),
            _doc("RecommenderDeployment", "rd-sagemaker", mlflow), _doc("RecommenderDeployment", "rd-ecs", mlflow)]
    for doc, backend in zip(docs, ("ecs", "sagemaker", "sagemaker", "ecs"), strict=True):
        doc["spec"]["backend"] = backend
    ops = run_operator(cluster.env, tmp_path, RECOPS_BACKENDS=backends)
    op = next(ops)
    try:
        uids = _create(k, docs)
        wait_for(lambda: all("recops.dev/finalizer" in (o["metadata"].get("finalizers") or [])
                             for o in _items(k, RECOPS_KINDS)) and len(_items(k, RECOPS_KINDS)) == len(docs), 60,
                 "finalizers on the AWS-backend objects")
        conds = {o["metadata"]["name"]: {c["type"]: c for c in (o.get("status") or {}).get("conditions") or []}
                 for o in _items(k, RECOPS_KINDS)}
        assert all(c.get("Ready", c.get("Succeeded", {})).get("reason") == "BackendUnavailable"
                   for c in conds.values()), conds
        t0 = time.monotonic()
        k.run("delete", "--wait=false", *uids.values())
        wait_for(lambda: not _items(k, RECOPS_KINDS), 30, "the deleted objects gone (finalizers released)")
        seconds = time.monotonic() - t0

        def warnings() -> dict[str, str]:
            events = _items(k, "events")
            return {e["involvedObject"]["name"]: e["message"] for e in events
                    if e.get("reason") == "CleanupSkipped" and e.get("type") == "Warning"}

        seen = wait_for(lambda: len(warnings()) == len(docs) and warnings(), 30, "a CleanupSkipped Warning per object")
    finally:
        op.stop()
    for name, message in seen.items():
        backend = name.split("-")[1]
        assert f"nothing on the {backend} backend could be cleaned up" in message, message
        setting = "RECOPS_BACKENDS" if backends == "kubernetes" else "RECOPS_AWS_REGION"
        assert setting in message, message
    print(f"\n{backends}: {len(docs)} AWS-backend objects deleted in {seconds:.1f}s; e.g. {next(iter(seen.values()))}")

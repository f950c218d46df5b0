"""Rendered children match reviewed golden files, and carry what every child must carry.

Regenerate the golden files after an intended change with `RECOPS_UPDATE_GOLDEN=1 pytest tests/unit`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from recops.api import DriftMonitorSpec, FeaturePipelineSpec, RecommenderDeploymentSpec, TrainingRunSpec
from recops.controllers import driftmonitor, featurepipeline, recommenderdeployment, trainingrun
from recops.controllers.common import Owner

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
GOLDEN = Path(__file__).parent / "golden"


def _spec(file: str) -> dict[str, Any]:
    return dict(yaml.safe_load((EXAMPLES / file).read_text())["spec"])


def _owner(kind: str, name: str) -> Owner:
    return Owner(kind=kind, name=name, namespace="shop", uid="0000-uid", generation=1)


def _rendered() -> dict[str, list[dict[str, Any]]]:
    fp = FeaturePipelineSpec.model_validate(_spec("featurepipeline.yaml"))
    tr = TrainingRunSpec.model_validate(_spec("trainingrun.yaml"))
    rd = RecommenderDeploymentSpec.model_validate(_spec("recommenderdeployment.yaml"))
    dm = DriftMonitorSpec.model_validate(_spec("driftmonitor.yaml"))
    return {
        "featurepipeline": featurepipeline.build_children(fp, _owner("FeaturePipeline", "shop-features")),
        "trainingrun": trainingrun.build_children(tr, _owner("TrainingRun", "shop-ease-x1"), "s3://b/snap/abc"),
        "recommenderdeployment": recommenderdeployment.build_children(
            rd, _owner("RecommenderDeployment", "shop-recommender"), monitoring_crds=True),
        "driftmonitor": driftmonitor.build_children(dm, _owner("DriftMonitor", "shop-drift"), monitoring_crds=True),
    }


RENDERED = _rendered()


@pytest.mark.parametrize("kind", sorted(RENDERED))
def test_children_match_golden(kind: str) -> None:
    text = yaml.safe_dump_all(RENDERED[kind], sort_keys=True)
    path = GOLDEN / f"{kind}.yaml"
    if os.environ.get("RECOPS_UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.read_text() == text, f"{kind} children changed; review and regenerate {path}"


@pytest.mark.parametrize("kind", sorted(RENDERED))
def test_children_are_owned_and_labelled(kind: str) -> None:
    for child in RENDERED[kind]:
        meta = child["metadata"]
        assert meta["ownerReferences"][0]["uid"] == "0000-uid" and meta["ownerReferences"][0]["controller"]
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "recops-operator"
        assert meta["namespace"] == "shop"


def _pod_specs(children: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pods = []
    for child in children:
        spec = child.get("spec") or {}
        if child["kind"] == "CronJob":
            pods.append(spec["jobTemplate"]["spec"]["template"]["spec"])
        elif child["kind"] in ("Job", "Deployment"):
            pods.append(spec["template"]["spec"])
    return pods


@pytest.mark.parametrize("kind", ["featurepipeline", "trainingrun", "recommenderdeployment"])
def test_pods_meet_restricted_pod_security(kind: str) -> None:
    pods = _pod_specs(RENDERED[kind])
    assert pods
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize("kind", ["featurepipeline", "trainingrun", "recommenderdeployment"])
def test_credentials_only_from_secret_refs(kind: str) -> None:
    text = yaml.safe_dump_all(RENDERED[kind])
    for pod in _pod_specs(RENDERED[kind]):
        for env in pod["containers"][0]["env"]:
            if any(s in env["name"] for s in ("SECRET", "TOKEN", "DSN", "ACCESS_KEY")):
                assert "valueFrom" in env and "value" not in env, env
    assert "postgresql://" not in text


def test_deployment_rolls_out_without_unavailability() -> None:
    deployment = RENDERED["recommenderdeployment"][0]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert "replicas" not in deployment["spec"], "the HPA owns replicas when autoscaling is set"
    kinds = [c["kind"] for c in RENDERED["recommenderdeployment"]]
    assert kinds == ["Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ServiceMonitor",
                     "PrometheusRule"]


def test_no_monitoring_children_without_the_crds() -> None:
    rd = RecommenderDeploymentSpec.model_validate(_spec("recommenderdeployment.yaml"))
    children = recommenderdeployment.build_children(rd, _owner("RecommenderDeployment", "x"), monitoring_crds=False)
    assert {c["kind"] for c in children} == {"Deployment", "Service", "PodDisruptionBudget",
                                              "HorizontalPodAutoscaler"}

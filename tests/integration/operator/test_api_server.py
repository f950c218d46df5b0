"""The generated CRDs in a real kube-apiserver: examples apply, bad specs are rejected with the field named,
and kubectl shows useful columns and descriptions."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures.kube import ROOT, Kubectl

pytestmark = [pytest.mark.integration, pytest.mark.lab("k8s")]

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def _example(kind_file: str) -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "examples" / kind_file).read_text()))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_applies(kubectl: Kubectl, path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    doc["metadata"]["namespace"] = kubectl.namespace
    out = kubectl.run("create", "-f", "-", stdin=yaml.safe_dump(doc)).stdout
    assert "created" in out


def test_full_loop_examples_apply(kubectl: Kubectl) -> None:
    docs = [d for p in sorted((ROOT / "examples" / "full-loop").glob("*.yaml"))
            for d in yaml.safe_load_all(p.read_text()) if d]
    assert {d["kind"] for d in docs} >= {"FeaturePipeline", "TrainingRun", "RecommenderDeployment", "DriftMonitor"}
    for doc in docs:
        doc["metadata"]["namespace"] = kubectl.namespace
    kubectl.run("create", "-f", "-", stdin=yaml.safe_dump_all(docs))


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    node = doc
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return doc


_DELETE = object()

# (example file, field path, bad value, text the API server's message must contain)
INVALID = [
    ("featurepipeline.yaml", "spec.schedule", "every day at 3", "spec.schedule"),
    ("featurepipeline.yaml", "spec.window.days", "28", "spec.window.days"),
    ("featurepipeline.yaml", "spec.window.days", 0, "spec.window.days"),
    ("featurepipeline.yaml", "spec.features.eventWeights.0.weight", 1.5, "spec.features.eventWeights[0].weight"),
    ("featurepipeline.yaml", "spec.features.eventWeights.0.weight", "1,5", "spec.features.eventWeights[0].weight"),
    ("featurepipeline.yaml", "spec.sources", _DELETE, "spec.sources"),
    ("featurepipeline.yaml", "spec.backend", "airflow", "spec.backend"),
    ("featurepipeline.yaml", "spec.sources.clickstream.uri", "ftp://x/y", "spec.sources.clickstream.uri"),
    ("featurepipeline.yaml", "spec.quality.maxNullFraction.0.max", "1.5", "spec.quality.maxNullFraction[0].max"),
    ("featurepipeline.yaml", "spec.backend", "ecs", "spec.output.uri"),  # CEL: ecs publishes to S3 only (s3 ok)
    ("trainingrun.yaml", "spec.algorithm.name", "deep-magic", "spec.algorithm.name"),
    ("trainingrun.yaml", "spec.snapshot.uri", "s3://b/x", "exactly one of snapshot.featurePipelineRef or snapshot.uri"),
    ("trainingrun.yaml", "spec.promotion.metric", "accuracy", "spec.promotion.metric"),
    ("trainingrun.yaml", "spec.promotion.minImprovement", 0.01, "spec.promotion.minImprovement"),
    ("trainingrun.yaml", "spec.mlflow", _DELETE, "spec.mlflow"),
    ("recommenderdeployment.yaml", "spec.model.version", "3", "exactly one of model.alias or model.version"),
    ("recommenderdeployment.yaml", "spec.autoscaling.minReplicas", 9, "minReplicas must not exceed maxReplicas"),
    ("recommenderdeployment.yaml", "spec.serving.maxK", 5000, "spec.serving.maxK"),
    ("recommenderdeployment.yaml", "spec.backend", "lambda", "spec.backend"),
    ("driftmonitor.yaml", "spec.features.0.threshold", 0.2, "spec.features[0].threshold"),
    ("driftmonitor.yaml", "spec.features.0.method", "vibes", "spec.features[0].method"),
    ("driftmonitor.yaml", "spec.onDrift.trainingRunTemplate", _DELETE, "onDrift.action Retrain needs"),
    ("driftmonitor.yaml", "spec.window.duration", "1 day", "spec.window.duration"),
    ("driftmonitor.yaml", "spec.target.deploymentRef.name", "Not_A_Name", "spec.target.deploymentRef.name"),
]


@pytest.mark.parametrize(("file", "path", "value", "expected"), INVALID,
                         ids=[f"{f.split('.')[0]}:{p}={v if v is not _DELETE else 'missing'}"
                              for f, p, v, _ in INVALID])
def test_invalid_manifest_is_rejected_naming_the_field(kubectl: Kubectl, file: str, path: str, value: Any,
                                                       expected: str) -> None:
    doc = _example(file)
    doc["metadata"]["namespace"] = kubectl.namespace
    if file == "featurepipeline.yaml" and value == "ecs":
        doc = _set(doc, "spec.output.uri", "/data/snapshots")
    bad = _set(doc, path, value)
    proc = kubectl.run("create", "-f", "-", stdin=yaml.safe_dump(bad), check=False)
    assert proc.returncode != 0, f"accepted an invalid manifest ({path}={value!r})"
    assert expected in proc.stderr, proc.stderr


def test_trainingrun_spec_is_immutable(kubectl: Kubectl) -> None:
    doc = _example("trainingrun.yaml")
    doc["metadata"] = {"name": "immutable", "namespace": kubectl.namespace}
    kubectl.run("create", "-f", "-", stdin=yaml.safe_dump(doc))
    proc = kubectl.run("patch", "tr", "immutable", "--type=merge", "-p",
                       '{"spec":{"algorithm":{"name":"puresvd"}}}', check=False)
    assert proc.returncode != 0
    assert "spec is immutable: create a new TrainingRun" in proc.stderr


def test_schema_defaults_are_applied(kubectl: Kubectl) -> None:
    doc = _example("recommenderdeployment.yaml")
    doc["metadata"]["namespace"] = kubectl.namespace
    kubectl.run("create", "-f", "-", stdin=yaml.safe_dump(doc))
    spec = kubectl.get_json("rd", "shop-recommender")["spec"]
    assert spec["backend"] == "kubernetes" and spec["port"] == 8080
    assert spec["monitoring"]["serviceMonitor"] == "Enabled"


def test_kubectl_get_shows_columns_and_category(kubectl: Kubectl) -> None:
    for path in EXAMPLES:
        doc = yaml.safe_load(path.read_text())
        doc["metadata"]["namespace"] = kubectl.namespace
        kubectl.run("create", "-f", "-", stdin=yaml.safe_dump(doc))
    out = kubectl.run("get", "fp,tr,rd,dm").stdout
    for header in ("SCHEDULE", "SNAPSHOT", "ROWS", "QUALITY", "LAST RUN", "ALGORITHM", "NDCG@10", "VERSION",
                   "PROMOTED", "MODEL", "READY", "URL", "TARGET", "DRIFT", "SCORE", "DRIFTED", "SAMPLES",
                   "LAST CHECK"):
        assert header in out, f"{header} missing from:\n{out}"
    assert "0 3 * * *" in out and "ease" in out and "shop-recommender" in out
    everything = kubectl.run("get", "recops").stdout
    for kind in ("featurepipeline.recops.dev/shop-features", "trainingrun.recops.dev/shop-ease-",
                 "recommenderdeployment.recops.dev/shop-recommender", "driftmonitor.recops.dev/shop-drift"):
        assert kind in everything
    short = kubectl.run("get", "dm").stdout.splitlines()[0].split()
    assert short[:6] == ["NAME", "TARGET", "DRIFT", "SCORE", "DRIFTED", "SAMPLES"]


def test_kubectl_explain_describes_fields(kubectl: Kubectl) -> None:
    out = kubectl.run("explain", "driftmonitor.spec", namespaced=False).stdout
    assert "The desired monitoring." in out
    for field in ("onDrift", "features", "window", "target", "schedule"):
        assert field in out
    deep = kubectl.run("explain", "driftmonitor.spec.onDrift.cooldown", namespaced=False).stdout
    assert "Minimum time between two retrainings" in deep


def test_scale_subresource(kubectl: Kubectl) -> None:
    doc = _example("recommenderdeployment.yaml")
    doc["metadata"]["namespace"] = kubectl.namespace
    del doc["spec"]["autoscaling"]
    kubectl.run("create", "-f", "-", stdin=yaml.safe_dump(doc))
    kubectl.run("scale", "rd", "shop-recommender", "--replicas=3")
    assert kubectl.get_json("rd", "shop-recommender")["spec"]["replicas"] == 3

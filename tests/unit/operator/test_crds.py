"""The generated CRDs are structural, current, and carry what users see in kubectl."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from recops import crdgen

ROOT = Path(__file__).resolve().parents[3]
RENDERED = crdgen.render_all()


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = []
    if isinstance(node, dict):
        out.append((path, node))
        for key, value in node.get("properties", {}).items():
            out += _walk(value, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            out += _walk(node["items"], f"{path}[]")
    return out


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_crds_are_not_stale(name: str) -> None:
    for target in (ROOT / "crds", ROOT / "charts" / "recops" / "crds"):
        assert (target / name).read_text() == RENDERED[name], f"{target / name} is stale: run `make crds`"


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_schema_is_structural(name: str) -> None:
    crd = yaml.safe_load(RENDERED[name])
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    text = RENDERED[name]
    assert "$ref" not in text and "anyOf" not in text and "allOf" not in text and "title:" not in text
    for path, node in _walk(schema):
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{name}{path}: no type"
        assert node.get("additionalProperties") is not False, f"{name}{path}"


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_no_floats_and_every_spec_field_described(name: str) -> None:
    crd = yaml.safe_load(RENDERED[name])
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for path, node in _walk(spec, "spec"):
        assert node.get("type") != "number", f"{name}: {path} is a float"
        if not path.endswith("[]"):  # array items are described by their field
            assert node.get("description"), f"{name}: {path} has no description"


def test_names_columns_and_subresources() -> None:
    crds = {yaml.safe_load(t)["spec"]["names"]["kind"]: yaml.safe_load(t) for t in RENDERED.values()}
    assert {k: c["spec"]["names"]["shortNames"] for k, c in crds.items()} == {
        "FeaturePipeline": ["fp"], "TrainingRun": ["tr"], "RecommenderDeployment": ["rd"], "DriftMonitor": ["dm"]}
    for crd in crds.values():
        assert crd["spec"]["names"]["categories"] == ["recops"]
        assert "status" in crd["spec"]["versions"][0]["subresources"]
    assert crds["RecommenderDeployment"]["spec"]["versions"][0]["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector"}
    columns = [c["name"] for c in crds["DriftMonitor"]["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns == ["Target", "Drift", "Score", "Drifted", "Samples", "Last Check", "Age"]


def test_trainingrun_spec_is_immutable_by_cel() -> None:
    crd = yaml.safe_load(RENDERED["recops.dev_trainingruns.yaml"])
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert any(v["rule"] == "self == oldSelf" for v in spec["x-kubernetes-validations"])


def test_nested_defaults_are_in_the_schema() -> None:
    crd = yaml.safe_load(RENDERED["recops.dev_featurepipelines.yaml"])
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["window"]["default"] == {"days": 28}
    weights = spec["properties"]["features"]["properties"]["eventWeights"]["default"]
    assert {"event": "purchase", "weight": "5"} in weights

"""The configs the operator builds from each example spec are accepted by the job programs' own models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from recops.api import DriftMonitorSpec, FeaturePipelineSpec, TrainingRunSpec
from recops.controllers import driftmonitor, featurepipeline, trainingrun
from recops.controllers.common import Owner
from recops_drift.config import DriftCheckConfig
from recops_features.config import FeaturePipelineConfig
from recops_training.config import TrainConfig

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _docs(kind: str) -> list[dict[str, Any]]:
    docs = [d for p in sorted(EXAMPLES.rglob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    return [d for d in docs if d["kind"] == kind]


def _owner(kind: str) -> Owner:
    return Owner(kind=kind, name="x", namespace="ns", uid="uid-1", generation=2)


@pytest.mark.parametrize("doc", _docs("FeaturePipeline"), ids=lambda d: d["metadata"]["name"])
def test_feature_job_accepts_the_operator_config(doc: dict[str, Any]) -> None:
    config = featurepipeline.job_config(FeaturePipelineSpec.model_validate(doc["spec"]), _owner("FeaturePipeline"))
    parsed = FeaturePipelineConfig.model_validate(config)
    assert parsed.sources.events.uri == doc["spec"]["sources"]["clickstream"]["uri"]


@pytest.mark.parametrize("doc", _docs("TrainingRun"), ids=lambda d: d["metadata"].get("name", "generated"))
def test_training_job_accepts_the_operator_config(doc: dict[str, Any]) -> None:
    spec = TrainingRunSpec.model_validate(doc["spec"])
    parsed = TrainConfig.model_validate(trainingrun.job_config(spec, _owner("TrainingRun"), "s3://b/snapshots"))
    assert parsed.run_key == "uid-1-2"
    assert parsed.algorithm.name == spec.algorithm.name


@pytest.mark.parametrize("doc", _docs("DriftMonitor"), ids=lambda d: d["metadata"]["name"])
def test_drift_check_accepts_the_operator_config(doc: dict[str, Any]) -> None:
    spec = DriftMonitorSpec.model_validate(doc["spec"])
    rd = _docs("RecommenderDeployment")[0]["spec"]
    fp = _docs("FeaturePipeline")[0]["spec"]
    target = driftmonitor.Target(deployment_spec=rd, served_version="3", pipeline_spec=fp)
    config = driftmonitor.check_config(spec, _owner("DriftMonitor"), target)
    assert config is not None
    parsed = DriftCheckConfig.model_validate(config)
    assert parsed.reference.mlflow is not None and parsed.reference.mlflow.model_version == "3"


def test_no_drift_check_without_a_served_version() -> None:
    spec = DriftMonitorSpec.model_validate(_docs("DriftMonitor")[0]["spec"])
    target = driftmonitor.Target(deployment_spec=_docs("RecommenderDeployment")[0]["spec"], served_version=None)
    assert driftmonitor.check_config(spec, _owner("DriftMonitor"), target) is None

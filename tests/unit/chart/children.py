"""The children the operator's pure builders produce for the examples: what RBAC and Pod Security must allow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]

PLURALS = {"ConfigMap": "configmaps", "Service": "services", "Deployment": "deployments", "CronJob": "cronjobs",
           "Job": "jobs", "PodDisruptionBudget": "poddisruptionbudgets",
           "HorizontalPodAutoscaler": "horizontalpodautoscalers", "ServiceMonitor": "servicemonitors",
           "PrometheusRule": "prometheusrules", "TrainingRun": "trainingruns"}


def example(kind: str) -> dict[str, Any]:
    for path in sorted(Path(ROOT / "examples").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if doc["kind"] == kind:
            return dict(doc)
    raise LookupError(kind)


def built_children(namespace: str = "default") -> list[dict[str, Any]]:
    """Every child object the builders make for the four examples (monitoring CRDs present)."""
    from recops.api.driftmonitor import DriftMonitorSpec
    from recops.api.featurepipeline import FeaturePipelineSpec
    from recops.api.recommenderdeployment import RecommenderDeploymentSpec
    from recops.api.trainingrun import TrainingRunSpec
    from recops.controllers import driftmonitor as dm
    from recops.controllers import featurepipeline as fp
    from recops.controllers import recommenderdeployment as rd
    from recops.controllers import trainingrun as tr
    from recops.controllers.common import Owner

    def owner(kind: str) -> Owner:
        return Owner(kind=kind, name=f"shop-{kind.lower()}", namespace=namespace,
                     uid="00000000-0000-4000-8000-000000000000")

    def spec(model: Any, kind: str) -> Any:
        return model.model_validate(example(kind)["spec"])

    out: list[dict[str, Any]] = []
    out += fp.build_children(spec(FeaturePipelineSpec, "FeaturePipeline"), owner("FeaturePipeline"))
    out += tr.build_children(spec(TrainingRunSpec, "TrainingRun"), owner("TrainingRun"),
                             "s3://shop-features/snapshots/sha256-0")
    out += rd.build_children(spec(RecommenderDeploymentSpec, "RecommenderDeployment"),
                             owner("RecommenderDeployment"), monitoring_crds=True)
    out += dm.build_children(spec(DriftMonitorSpec, "DriftMonitor"), owner("DriftMonitor"), monitoring_crds=True)
    return out

"""DriftMonitor: alert rules and status, as pure functions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from recops.api.base import Toggle
from recops.api.driftmonitor import DriftMonitorSpec
from recops.conditions import Verdict
from recops.controllers.common import Owner, child_meta
from recops.controllers.references import ObjectNeed

COMPONENT = "recops-drift-monitor"


def object_needs(spec: DriftMonitorSpec) -> list[ObjectNeed]:
    needs = [ObjectNeed("spec.target.deploymentRef", "RecommenderDeployment", spec.target.deployment_ref.name)]
    if spec.target.feature_pipeline_ref:
        needs.append(ObjectNeed("spec.target.featurePipelineRef", "FeaturePipeline",
                                spec.target.feature_pipeline_ref.name))
    return needs


def drift_alert_rules(spec: DriftMonitorSpec, owner: Owner) -> list[dict[str, Any]]:
    sel = f'namespace="{owner.namespace}",monitor="{owner.name}"'
    runbook = spec.alerting.runbook_url or "https://recops.dev/runbooks/drift"
    return [
        {"alert": "RecopsDriftDetected", "expr": f"max(recops_drift_detected{{{sel}}}) == 1", "for": "0m",
         "labels": {"severity": spec.alerting.severity},
         "annotations": {"summary": f"Drift detected by {owner.namespace}/{owner.name}",
                         "description": "The live inputs or outputs of "
                                        f"{spec.target.deployment_ref.name} drifted from the training reference: "
                                        "see `kubectl get dm " + owner.name + "` for the drifted features.",
                         "runbook_url": runbook}},
        {"alert": "RecopsDriftCheckStale",
         "expr": f"time() - max(recops_drift_last_check_timestamp_seconds{{{sel}}}) > 3 * 3600",
         "for": "15m", "labels": {"severity": "warning"},
         "annotations": {"summary": f"Drift checks of {owner.namespace}/{owner.name} stopped",
                         "description": "No drift check finished for 3 hours: check the operator and the "
                                        "monitor's conditions.", "runbook_url": runbook}},
    ]


def build_children(spec: DriftMonitorSpec, owner: Owner, *, monitoring_crds: bool) -> list[dict[str, Any]]:
    if not monitoring_crds or spec.alerting.prometheus_rule != Toggle.ENABLED:
        return []
    return [{
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": child_meta(owner, f"{owner.name}-drift", COMPONENT),
        "spec": {"groups": [{"name": f"recops-drift-{owner.namespace}-{owner.name}",
                             "rules": drift_alert_rules(spec, owner)}]},
    }]


@dataclass(frozen=True)
class Observed:
    backend: Verdict
    references: Verdict
    result: Mapping[str, Any] | None = None


def decide(observed: Observed) -> tuple[dict[str, Verdict], dict[str, Any]]:
    status: dict[str, Any] = {}
    drift = Verdict.unknown("NoCheckYet", "no drift check has finished yet")
    result = observed.result
    if result is not None:
        status.update({k: result[k] for k in ("samples", "score") if result.get(k) is not None})
        if result.get("checkedAt"):
            status["lastCheckTime"] = result["checkedAt"]
        features = list(result.get("features") or [])
        status["features"] = features
        status["driftedFeatures"] = ",".join(str(f["name"]) for f in features if f.get("drifted"))
        if result.get("reason") == "InsufficientData":
            drift = Verdict.unknown("InsufficientData", str(result.get("message", "")))
        elif result.get("ok"):
            drift = (Verdict.ok("DriftDetected", f"drifted: {status['driftedFeatures']}") if result.get("drifted")
                     else Verdict.fail("NoDrift", "no feature drifted beyond its threshold"))
    for blocker in (observed.backend, observed.references):
        if not blocker.is_true:
            return {"Ready": blocker, "DriftDetected": drift}, status
    return {"Ready": Verdict.ok("Monitoring", "checks are scheduled"), "DriftDetected": drift}, status

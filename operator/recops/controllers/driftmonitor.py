"""DriftMonitor: alert rules and status, as pure functions."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from recops_drift.prometheus import rule_group

from recops.api.base import API_VERSION, ResourceRequirements, Toggle
from recops.api.driftmonitor import DataSource, DriftAction, DriftMonitorSpec
from recops.conditions import Verdict
from recops.controllers.common import (
    CONFIG_FILE,
    POD_FAILURE_POLICY,
    Owner,
    SecretEnv,
    child_meta,
    config_map,
    dns_name,
    job_pod_spec,
    owner_reference,
    s3_env,
)
from recops.controllers.references import ObjectNeed
from recops.controllers.schedule import duration_seconds, period_seconds

COMPONENT = "recops-drift-monitor"
PROGRAM = "recops-drift"
DRIFT_IMAGE = "ghcr.io/recops/drift:0.1.0"
CHECK_BACKOFF_LIMIT = 1  # retries of a failed check, on every backend (exit codes 2 and 3 are never retried)
_DEFAULT_RESOURCES = ResourceRequirements()


def check_base_name(owner: Owner) -> str:
    return dns_name(owner.name, "drift", limit=40)


@dataclass(frozen=True)
class Target:
    """What the edge found of the monitored objects (their specs and statuses as plain mappings)."""

    deployment_spec: Mapping[str, Any]
    served_version: str | None
    pipeline_spec: Mapping[str, Any] | None = None


def check_config(spec: DriftMonitorSpec, owner: Owner, target: Target) -> dict[str, Any] | None:
    """The drift check's config (see drift/recops_drift/config.py), or None when there is no reference yet."""
    model = target.deployment_spec.get("model") or {}
    if not target.served_version or not model.get("name"):
        return None
    current: dict[str, Any] = {}
    payload = target.deployment_spec.get("payloadLogging")
    if DataSource.PAYLOAD_LOGS in spec.sources and payload:
        current["payloadLogs"] = {"uri": payload["uri"], "duration": spec.window.duration,
                                  "modelVersion": target.served_version}
    if DataSource.FEATURE_SNAPSHOT in spec.sources and target.pipeline_spec:
        current["snapshot"] = {"uri": target.pipeline_spec["output"]["uri"]}
    if not current:
        return None
    return {
        "monitor": owner.name,
        "namespace": owner.namespace,
        "reference": {"mlflow": {"modelName": model["name"], "modelVersion": target.served_version}},
        "current": current,
        "features": [{"name": r.name, "method": r.method, "threshold": r.threshold} for r in spec.features],
        "defaultRule": {"name": "*", "method": spec.default_rule.method, "threshold": spec.default_rule.threshold},
        "driftShare": spec.drift_share,
        "minSamples": spec.window.min_samples,
        "report": {"mlflow": {"attachTo": "MonitoringRun", "experiment": "recops-drift"}},
    }


def check_env(target: Target) -> tuple[dict[str, str], list[SecretEnv]]:
    """MLflow and S3 settings for the check, credentials from the targets' own Secret references."""
    model = target.deployment_spec.get("model") or {}
    env = {"MLFLOW_TRACKING_URI": str(model.get("trackingUri", ""))}
    secrets: list[SecretEnv] = []
    if model.get("tokenSecretRef"):
        ref = model["tokenSecretRef"]
        secrets.append(SecretEnv("MLFLOW_TRACKING_TOKEN", ref["name"], ref["key"]))
    s3 = ((target.deployment_spec.get("payloadLogging") or {}).get("s3")
          or ((target.pipeline_spec or {}).get("output") or {}).get("s3") or {})
    env.update(s3_env(s3.get("endpointUrl"), s3.get("region", "us-east-1")))
    if s3.get("credentialsSecretRef"):
        name = s3["credentialsSecretRef"]["name"]
        secrets += [SecretEnv(k, name, k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
    return env, secrets


def check_children(owner: Owner, name: str, config: Mapping[str, Any], env: Mapping[str, str],
                   secrets: Sequence[SecretEnv]) -> list[dict[str, Any]]:
    """A ConfigMap + Job for one check on the kubernetes backend."""
    cm_name = dns_name(name, "config")
    pod = job_pod_spec(image=DRIFT_IMAGE, command=[PROGRAM, "run", "--config", CONFIG_FILE], plain_env=env,
                       secret_env=list(secrets), config_map=cm_name,
                       resource_spec=_DEFAULT_RESOURCES)
    meta = child_meta(owner, name, COMPONENT)
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
           "spec": {"backoffLimit": CHECK_BACKOFF_LIMIT, "podFailurePolicy": POD_FAILURE_POLICY,
                    "activeDeadlineSeconds": 3600,
                    "ttlSecondsAfterFinished": 86400,
                    "template": {"metadata": {"labels": dict(meta["labels"])}, "spec": pod}}}
    return [config_map(owner, cm_name, COMPONENT, config), job]


def retrain_verdict(spec: DriftMonitorSpec, now: dt.datetime, started: Sequence[dt.datetime]) -> Verdict:
    """May this monitor start a retraining now? Cooldown and a daily cap keep drift from causing a storm."""
    if spec.on_drift.action != DriftAction.RETRAIN or spec.on_drift.training_run_template is None:
        return Verdict.fail("RetrainingDisabled", "onDrift.action is None")
    cooldown = dt.timedelta(seconds=duration_seconds(spec.on_drift.cooldown))
    if started and now - max(started) < cooldown:
        return Verdict.fail("CoolingDown", f"the last retraining started less than {spec.on_drift.cooldown} ago")
    last_day = [t for t in started if now - t < dt.timedelta(days=1)]
    if len(last_day) >= spec.on_drift.max_runs_per_day:
        return Verdict.fail("DailyCapReached", f"{len(last_day)} retrainings in the last 24 h "
                            f"(onDrift.maxRunsPerDay {spec.on_drift.max_runs_per_day})")
    return Verdict.ok("RetrainingAllowed")


def retraining_run(spec: DriftMonitorSpec, owner: Owner, check_name: str) -> dict[str, Any]:
    """The TrainingRun a drifted check starts. Its name comes from the check, so a crash between creating
    it and recording it in status never creates a second one."""
    template = spec.on_drift.training_run_template
    assert template is not None
    prefix = template.generate_name or f"{owner.name}-retrain-"
    suffix = hashlib.sha256(f"{owner.uid}/{check_name}".encode()).hexdigest()[:6]
    return {
        "apiVersion": API_VERSION,
        "kind": "TrainingRun",
        "metadata": {"name": f"{prefix}{suffix}", "namespace": owner.namespace,
                     "labels": {"recops.dev/driftmonitor": owner.name, "app.kubernetes.io/managed-by":
                                "recops-operator"},
                     "annotations": {"recops.dev/triggered-by-check": check_name},
                     "ownerReferences": [{**owner_reference(owner), "controller": False}]},
        "spec": template.spec.to_wire(),
    }


def object_needs(spec: DriftMonitorSpec) -> list[ObjectNeed]:
    needs = [ObjectNeed("spec.target.deploymentRef", "RecommenderDeployment", spec.target.deployment_ref.name)]
    if spec.target.feature_pipeline_ref:
        needs.append(ObjectNeed("spec.target.featurePipelineRef", "FeaturePipeline",
                                spec.target.feature_pipeline_ref.name))
    return needs


def _stale_after(schedule: str) -> str:
    """Checks count as stale after three schedule periods (at least an hour)."""
    return f"{max(3600, 3 * period_seconds(schedule))}s"


def build_children(spec: DriftMonitorSpec, owner: Owner, *, monitoring_crds: bool) -> list[dict[str, Any]]:
    if not monitoring_crds or spec.alerting.prometheus_rule != Toggle.ENABLED:
        return []
    return [{
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": child_meta(owner, f"{owner.name}-drift", COMPONENT),
        "spec": {"groups": [rule_group(monitor=owner.name, namespace=owner.namespace,
                                       severity=spec.alerting.severity, runbook_url=spec.alerting.runbook_url,
                                       detected_for="0m", stale_after=_stale_after(spec.schedule))]},
    }]


@dataclass(frozen=True)
class Observed:
    backend: Verdict
    references: Verdict
    result: Mapping[str, Any] | None = None
    waiting: Verdict | None = None


def decide(observed: Observed) -> tuple[dict[str, Verdict], dict[str, Any]]:
    status: dict[str, Any] = {}
    drift = Verdict.unknown("NoCheckYet", "no drift check has finished yet")
    result = observed.result
    if result is not None:
        status.update({k: result[k] for k in ("samples", "score") if result.get(k) is not None})
        if result.get("checkedAt"):
            status["lastCheckTime"] = result["checkedAt"]
        features = [{"name": str(f.get("name")), "method": str(f.get("method")), "score": str(f.get("score")),
                     "threshold": str(f.get("threshold")), "drifted": bool(f.get("drifted"))}
                    for f in result.get("features") or []]
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
    if observed.waiting is not None and result is None:
        return {"Ready": observed.waiting, "DriftDetected": drift}, status
    if result is not None and not result.get("ok") and result.get("reason") != "InsufficientData":
        return {"Ready": Verdict.fail(str(result.get("reason") or "CheckFailed"), str(result.get("message", ""))),
                "DriftDetected": drift}, status
    return {"Ready": Verdict.ok("Monitoring", "checks are scheduled"), "DriftDetected": drift}, status

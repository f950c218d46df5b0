"""FeaturePipeline: desired children (ConfigMap + CronJob) and status, as pure functions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from recops.api.featurepipeline import FeaturePipelineSpec, S3Connection
from recops.conditions import Verdict
from recops.controllers.common import (
    CONFIG_FILE,
    POD_FAILURE_POLICY,
    Owner,
    SecretEnv,
    child_meta,
    config_digest,
    config_map,
    dns_name,
    job_pod_spec,
    s3_env,
)
from recops.controllers.references import SecretNeed
from recops.controllers.schedule import duration_seconds

COMPONENT = "recops-feature-job"
PROGRAM = "recops-features"


def cronjob_name(owner: Owner) -> str:
    return dns_name(owner.name, "features", limit=52)  # CronJob names are capped at 52 characters


def config_map_name(owner: Owner) -> str:
    return dns_name(owner.name, "features-config")


def secret_needs(spec: FeaturePipelineSpec) -> list[SecretNeed]:
    needs = []
    for path, s3 in (("spec.sources.clickstream.s3", spec.sources.clickstream.s3), ("spec.output.s3", spec.output.s3)):
        if s3.credentials_secret_ref:
            needs += [SecretNeed(f"{path}.credentialsSecretRef", s3.credentials_secret_ref.name, key)
                      for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
    if spec.sources.profiles:
        ref = spec.sources.profiles.dsn_secret_ref
        needs.append(SecretNeed("spec.sources.profiles.dsnSecretRef", ref.name, ref.key))
    return needs


def secret_env(spec: FeaturePipelineSpec) -> list[SecretEnv]:
    """Credentials as environment variables from Secrets: never in the config, argv or logs."""
    env: list[SecretEnv] = []
    s3: S3Connection | None = next((c for c in (spec.sources.clickstream.s3, spec.output.s3)
                                    if c.credentials_secret_ref), None)
    if s3 and s3.credentials_secret_ref:
        env += [SecretEnv(k, s3.credentials_secret_ref.name, k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
    if spec.sources.profiles:
        ref = spec.sources.profiles.dsn_secret_ref
        env.append(SecretEnv("RECOPS_POSTGRES_DSN", ref.name, ref.key))
    return env


def plain_env(spec: FeaturePipelineSpec) -> dict[str, str]:
    s3 = spec.sources.clickstream.s3
    return s3_env(s3.endpoint_url, s3.region)


TRANSFORM_MODES = {"Replace": "custom", "After": "builtinThenCustom"}
EVENT_FORMATS = {"parquet": "parquet", "jsonl": "jsonl", "csv": "auto"}


def job_config(spec: FeaturePipelineSpec, owner: Owner) -> dict[str, Any]:
    """The feature job's own config (feature-jobs/recops_features/config.py), without any credential."""
    sources: dict[str, Any] = {"events": {"uri": spec.sources.clickstream.uri,
                                          "format": EVENT_FORMATS[spec.sources.clickstream.format]}}
    if spec.sources.catalog:
        sources["catalog"] = {"uri": spec.sources.catalog.uri}
    if spec.sources.profiles:
        sources["profiles"] = {"table": spec.sources.profiles.table}
    q = spec.quality
    quality: dict[str, Any] = {
        "minRows": [{"table": "interactions", "min": q.min_rows}],
        "maxNullFraction": [{"table": m.table, "column": m.column, "max": m.max} for m in q.max_null_fraction],
        "uniqueKeys": [{"table": "interactions", "columns": list(q.unique_keys)}] if q.unique_keys else [],
    }
    tables = sorted({c.table for c in q.expected_columns})
    if tables:
        quality["schema"] = [{"table": t, "columns": [{"name": c.name, "type": c.type}
                                                      for c in q.expected_columns if c.table == t]}
                             for t in tables]
    if q.max_event_age:
        quality["maxEventAge"] = q.max_event_age
    config: dict[str, Any] = {
        "name": f"{owner.namespace}.{owner.name}",
        "sources": sources,
        "window": {"lastDays": spec.window.days},
        "features": {"eventWeights": [{"eventType": w.event, "weight": w.weight}
                                      for w in spec.features.event_weights],
                     "halfLifeDays": f"{duration_seconds(spec.features.decay_half_life) / 86400:g}"},
        "output": {"uri": spec.output.uri},
        "quality": quality,
    }
    if spec.features.transform:
        config["transform"] = {"mode": TRANSFORM_MODES[spec.features.transform.mode],
                               "function": spec.features.transform.function}
    return config


def build_children(spec: FeaturePipelineSpec, owner: Owner) -> list[dict[str, Any]]:
    """Desired children on the kubernetes backend: the job's ConfigMap and its CronJob."""
    config = job_config(spec, owner)
    cm_name = config_map_name(owner)
    pod = job_pod_spec(image=spec.image, command=[PROGRAM, "run", "--config", CONFIG_FILE],
                       plain_env=plain_env(spec), secret_env=secret_env(spec), config_map=cm_name,
                       resource_spec=spec.resources)
    meta = child_meta(owner, cronjob_name(owner), COMPONENT)
    template_labels = dict(meta["labels"])
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": meta,
        "spec": {
            "schedule": spec.schedule,
            "suspend": spec.suspend,
            "concurrencyPolicy": spec.concurrency_policy,
            "successfulJobsHistoryLimit": spec.successful_runs_history_limit,
            "failedJobsHistoryLimit": spec.failed_runs_history_limit,
            "jobTemplate": {
                "metadata": {"labels": template_labels,
                             "annotations": {"recops.dev/config-digest": config_digest(config)}},
                "spec": {
                    "backoffLimit": spec.backoff_limit,
                    "podFailurePolicy": POD_FAILURE_POLICY,
                    "activeDeadlineSeconds": spec.active_deadline_seconds,
                    "ttlSecondsAfterFinished": 7 * 24 * 3600,
                    "template": {"metadata": {"labels": template_labels}, "spec": pod},
                },
            },
        },
    }
    return [config_map(owner, cm_name, COMPONENT, config), cronjob]


@dataclass(frozen=True)
class Observed:
    """What the edge found for one FeaturePipeline."""

    backend: Verdict
    references: Verdict
    children_ready: bool
    last_run: Mapping[str, Any] | None = None
    result: Mapping[str, Any] | None = None
    previous_status: Mapping[str, Any] = field(default_factory=dict)


def decide(observed: Observed) -> tuple[dict[str, Verdict], dict[str, Any]]:
    """Conditions and status fields from what was observed."""
    status: dict[str, Any] = {}
    if observed.last_run is not None:
        status["lastRun"] = dict(observed.last_run)
    result = observed.result
    quality = Verdict.unknown("NoRunYet", "no run has finished yet")
    if result is not None:
        status["quality"] = [{"name": str(q.get("name")), "passed": bool(q.get("passed")),
                              "observed": str(q.get("observed", "")), "threshold": str(q.get("threshold", ""))}
                             for q in result.get("quality") or []]
        if result.get("ok"):
            status["latestSnapshot"] = {k: result[k] for k in ("version", "uri", "rows", "users", "items")
                                        if result.get(k) is not None}
            if observed.last_run and observed.last_run.get("finishedAt"):
                status["latestSnapshot"]["createdAt"] = observed.last_run["finishedAt"]
            quality = Verdict.ok("QualityGatesPassed", "the last run passed every quality gate")
        elif result.get("reason") == "QualityGateFailed":
            quality = Verdict.fail("QualityGateFailed", str(result.get("message", "")))
        else:
            quality = Verdict.unknown(str(result.get("reason") or "RunFailed"), str(result.get("message", "")))
    if not observed.backend.is_true:
        ready = observed.backend
    elif not observed.references.is_true:
        ready = observed.references
    elif not observed.children_ready:
        ready = Verdict.fail("ChildrenPending", "the job's CronJob is being created")
    elif result is not None and not result.get("ok") and result.get("reason") != "QualityGateFailed":
        ready = Verdict.fail(str(result.get("reason") or "RunFailed"), str(result.get("message", "")))
    else:
        ready = Verdict.ok("Scheduled", "runs are scheduled")
    return {"Ready": ready, "QualityPassed": quality}, status

"""TrainingRun: the training Job and the status it leads to, as pure functions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from recops.api.trainingrun import TrainingRunSpec
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
    s3_env,
)
from recops.controllers.references import ObjectNeed, SecretNeed

COMPONENT = "recops-training-job"
PROGRAM = "recops-train"


def job_name(owner: Owner) -> str:
    return dns_name(owner.name, "train")


def config_map_name(owner: Owner) -> str:
    return dns_name(owner.name, "train-config")


def run_key(owner: Owner) -> str:
    """Identifies this training across retries and operator restarts: one run, one model version."""
    return f"{owner.uid}-{owner.generation}"


def object_needs(spec: TrainingRunSpec) -> list[ObjectNeed]:
    ref = spec.snapshot.feature_pipeline_ref
    return [ObjectNeed("spec.snapshot.featurePipelineRef", "FeaturePipeline", ref.name)] if ref else []


def secret_needs(spec: TrainingRunSpec) -> list[SecretNeed]:
    ref = spec.mlflow.token_secret_ref
    return [SecretNeed("spec.mlflow.tokenSecretRef", ref.name, ref.key)] if ref else []


def secret_env(spec: TrainingRunSpec) -> list[SecretEnv]:
    ref = spec.mlflow.token_secret_ref
    return [SecretEnv("MLFLOW_TRACKING_TOKEN", ref.name, ref.key)] if ref else []


def resolve_snapshot(spec: TrainingRunSpec, pipeline_status: Mapping[str, Any] | None) -> tuple[Verdict, str | None]:
    """The snapshot URI to train on, or why there is none yet."""
    if spec.snapshot.uri:
        return Verdict.ok("SnapshotGiven"), spec.snapshot.uri
    latest = (pipeline_status or {}).get("latestSnapshot") or {}
    if not latest.get("uri"):
        return Verdict.unknown("WaitingForSnapshot", "the FeaturePipeline has not published a snapshot yet"), None
    if spec.snapshot.version and latest.get("version") != spec.snapshot.version:
        return Verdict.fail("SnapshotVersionMismatch",
                            f"spec.snapshot.version {spec.snapshot.version} is not the pipeline's latest "
                            f"({latest.get('version')}); use snapshot.uri to pin an older one"), None
    return Verdict.ok("SnapshotResolved"), str(latest["uri"])


PROMOTION_POLICIES = {"Gated": "ifBetter", "Never": "never"}


def snapshot_access(spec: TrainingRunSpec, pipeline_spec: Mapping[str, Any] | None
                    ) -> tuple[dict[str, str], list[SecretEnv]]:
    """S3 endpoint and credentials to read the snapshot: the pipeline's output connection, or the spec's own."""
    if spec.snapshot.feature_pipeline_ref:
        s3 = ((pipeline_spec or {}).get("output") or {}).get("s3") or {}
        endpoint, region = s3.get("endpointUrl"), s3.get("region", "us-east-1")
        secret = (s3.get("credentialsSecretRef") or {}).get("name")
    else:
        conn = spec.snapshot.s3
        endpoint = conn.endpoint_url if conn else None
        region = conn.region if conn else "us-east-1"
        secret = conn.credentials_secret_ref.name if conn and conn.credentials_secret_ref else None
    env = {"MLFLOW_TRACKING_URI": spec.mlflow.tracking_uri, **s3_env(endpoint, region)}
    secrets = secret_env(spec)
    if secret:
        secrets += [SecretEnv(k, secret, k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
    return env, secrets


def job_config(spec: TrainingRunSpec, owner: Owner, snapshot_uri: str) -> dict[str, Any]:
    """The training job's own config (training/recops_training/config.py)."""
    snapshot: dict[str, Any] = {"uri": snapshot_uri}
    if spec.snapshot.version:
        snapshot["version"] = spec.snapshot.version
    return {
        "runKey": run_key(owner),
        "snapshot": snapshot,
        "algorithm": {"name": spec.algorithm.name, "params": {p.name: p.value for p in spec.algorithm.params}},
        "evaluation": {"holdoutDays": spec.evaluation.holdout_days, "ks": list(spec.evaluation.k)},
        "promotion": {"policy": PROMOTION_POLICIES[spec.promotion.policy], "alias": spec.promotion.alias,
                      "metric": spec.promotion.metric, "margin": spec.promotion.min_improvement},
        "mlflow": {"experimentName": spec.mlflow.experiment, "registeredModelName": spec.mlflow.model_name,
                   "runName": f"{owner.namespace}/{owner.name}",
                   "tags": {"recops.dev/trainingrun": f"{owner.namespace}/{owner.name}"}},
    }


def build_children(spec: TrainingRunSpec, owner: Owner, snapshot_uri: str,
                   pipeline_spec: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    config = job_config(spec, owner, snapshot_uri)
    cm_name = config_map_name(owner)
    env, secrets = snapshot_access(spec, pipeline_spec)
    pod = job_pod_spec(image=spec.image, command=[PROGRAM, "run", "--config", CONFIG_FILE], plain_env=env,
                       secret_env=secrets, config_map=cm_name, resource_spec=spec.resources)
    meta = child_meta(owner, job_name(owner), COMPONENT)
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "backoffLimit": spec.backoff_limit,
            "podFailurePolicy": POD_FAILURE_POLICY,
            "activeDeadlineSeconds": spec.active_deadline_seconds,
            "template": {"metadata": {"labels": dict(meta["labels"])}, "spec": pod},
        },
    }
    return [config_map(owner, cm_name, COMPONENT, config), job]


@dataclass(frozen=True)
class Observed:
    backend: Verdict
    references: Verdict
    snapshot: Verdict
    job_state: str | None  # None (not started), "Running", "Succeeded", "Failed"
    result: Mapping[str, Any] | None
    job_message: str = ""
    attempts: int | None = None  # attempts of the job so far (1 + retries), when the backend knows


def decide(observed: Observed) -> tuple[dict[str, Verdict], dict[str, Any]]:
    status: dict[str, Any] = {}
    promoted = Verdict.unknown("NotEvaluated", "the run has not finished")
    if observed.attempts:
        status["attempts"] = observed.attempts
    for blocker in (observed.backend, observed.references, observed.snapshot):
        if not blocker.is_true:
            return {"Succeeded": (blocker if blocker.status == "False" else Verdict.unknown(blocker.reason,
                                                                                            blocker.message)),
                    "Promoted": promoted}, status
    result = observed.result
    if result:
        for key, target in (("runId", None), ("modelVersion", "modelVersion"), ("snapshotVersion", "snapshotVersion"),
                            ("promotionReason", "promotionReason")):
            if target and result.get(key) is not None:
                status[target] = str(result[key])
        if result.get("runId"):
            status["mlflowRun"] = {k: str(result[s]) for k, s in (("runId", "runId"), ("experimentId", "experimentId"),
                                                                   ("url", "runUrl")) if result.get(s)}
        metrics = result.get("metrics") or {}
        status["metrics"] = [{"name": k, "value": str(v)} for k, v in sorted(metrics.items())]
        status["baselineMetrics"] = [{"name": k, "value": str(v)}
                                     for k, v in sorted((result.get("baselineMetrics") or {}).items())]
        if "ndcg_at_10" in metrics:
            status["ndcgAt10"] = str(metrics["ndcg_at_10"])
        if result.get("promoted") is not None:
            status["promoted"] = bool(result["promoted"])
            reason = str(result.get("promotionReason") or "")
            promoted = (Verdict.ok("GatePassed", reason) if result["promoted"]
                        else Verdict.fail("GateNotPassed", reason))
    if observed.job_state in (None, "Pending"):
        return {"Succeeded": Verdict.unknown("Pending", "the training job is starting"), "Promoted": promoted}, status
    if observed.job_state == "Running":
        running = f"the training job is running ({observed.job_message})" if observed.job_message else \
            "the training job is running"
        return {"Succeeded": Verdict.unknown("Running", running), "Promoted": promoted}, status
    # A run the gate refused is a finished training, not a failure (exit code 3, reason PromotionRefused).
    if observed.job_state == "Succeeded" or (result is not None and result.get("reason") == "PromotionRefused"):
        if result is None:
            return {"Succeeded": Verdict.fail("NoResult", "the job finished without reporting a result; check its "
                                              "logs (is the image the Recops training image?)"),
                    "Promoted": promoted}, status
        return {"Succeeded": Verdict.ok("Trained", str(result.get("message", "trained and evaluated"))),
                "Promoted": promoted}, status
    reason = str((result or {}).get("reason") or "JobFailed")
    message = str((result or {}).get("message") or observed.job_message or "the training job failed")
    return {"Succeeded": Verdict.fail(reason, message), "Promoted": promoted}, status

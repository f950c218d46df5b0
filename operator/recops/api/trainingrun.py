"""TrainingRun: train a recommender on a snapshot, evaluate it, track it in MLflow, promote it behind a gate.

Owned by ML scientists. The spec is immutable: a new training is a new object (use generateName).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from .base import (
    DECIMAL_PATTERN,
    ApiModel,
    Backend,
    KindInfo,
    LocalObjectRef,
    NamedValue,
    PrinterColumn,
    ResourceRequirements,
    SecretKeyRef,
    StatusBase,
    cel,
)
from .featurepipeline import S3Connection

# Names of offline metrics: `<metric>_at_<k>` plus catalogue-level metrics.
# Names of offline metrics: `<metric>_at_<k>`, optionally `_repeat` (repeat purchases count as hits).
METRIC_PATTERN = r"^(hr|precision|recall|ndcg|map|coverage|popularity_bias)_at_[1-9][0-9]{0,2}(_repeat)?$"


class TrainingBackend(StrEnum):
    """Backends that can run a training job."""

    KUBERNETES = Backend.KUBERNETES.value
    LOCAL = Backend.LOCAL.value
    SAGEMAKER = Backend.SAGEMAKER.value


class Algorithm(StrEnum):
    POPULARITY = "popularity"
    ITEMKNN = "itemknn"
    PURESVD = "puresvd"
    EASE = "ease"
    RP3BETA = "rp3beta"


class AlgorithmSpec(ApiModel):
    """Which recommender to train and with which parameters."""

    name: Algorithm = Field(description="`popularity`, `itemknn`, `puresvd`, `ease` or `rp3beta`.")
    params: list[NamedValue] = Field(
        default_factory=list, max_length=32,
        description="Algorithm parameters as named strings, e.g. `{name: factors, value: \"64\"}` (puresvd: "
        "factors, iterations; itemknn: neighbors, shrink; ease: l2, maxItems; rp3beta: alpha, beta, neighbors). "
        "Unknown names are reported in the Succeeded condition.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]})


class SnapshotSelector(ApiModel):
    """Which feature snapshot to train on."""

    feature_pipeline_ref: LocalObjectRef | None = Field(
        None, description="Use the latest snapshot of this FeaturePipeline (resolved once, at start).")
    uri: str | None = Field(None, description="Or an explicit snapshot URI (`s3://...` or a local path).",
                            pattern=r"^(s3://.+|/.+)$", max_length=2048)
    version: str | None = Field(None, description="Expected snapshot version (content digest), checked if set.",
                                pattern=r"^[0-9a-f]{8,64}$")
    s3: S3Connection | None = Field(None, description="S3 connection for `uri`; with featurePipelineRef the "
                                    "pipeline's output connection is used.")


class Evaluation(ApiModel):
    """Offline evaluation on a temporal holdout."""

    holdout_days: int = Field(7, ge=1, le=365, description="The last N days of events are held out.")
    k: list[Annotated[int, Field(ge=1, le=1000)]] = Field(
        default_factory=lambda: [5, 10, 20], min_length=1, max_length=8,
        description="Cut-offs at which ranking metrics are computed, each within 1..1000 (recops-train's bound).")


class MLflowSettings(ApiModel):
    """Where runs and models are tracked."""

    tracking_uri: str = Field(description="MLflow tracking server URL.", pattern=r"^https?://", max_length=2048)
    experiment: str = Field("recops", description="Experiment name.", min_length=1, max_length=256)
    model_name: str = Field(description="Registered model name.", min_length=1, max_length=256)
    token_secret_ref: SecretKeyRef | None = Field(None, description="Secret key with an MLflow token.")


class PromotionPolicy(StrEnum):
    GATED = "Gated"
    NEVER = "Never"


class Promotion(ApiModel):
    """When the new version becomes the one served."""

    policy: PromotionPolicy = Field(PromotionPolicy.GATED,
                                    description="`Gated`: move the alias when the gate passes; `Never`.")
    alias: str = Field("champion", description="Registry alias to move.", pattern=r"^[a-z][a-z0-9_-]{0,62}$")
    metric: str = Field("ndcg_at_10", description="Metric the gate compares.", pattern=METRIC_PATTERN)
    min_improvement: str = Field("0", pattern=DECIMAL_PATTERN,
                                 description="How much the run must beat the current champion by (absolute).")


class TrainingRunSpec(ApiModel):
    """The desired training. Immutable once created."""

    backend: TrainingBackend = Field(TrainingBackend.KUBERNETES,
                                     description="Where the job runs: `kubernetes`, `local` or `sagemaker`.")
    snapshot: SnapshotSelector = Field(description="The feature snapshot to train on.",
                                       json_schema_extra={"x-kubernetes-validations": [
                                           cel("has(self.featurePipelineRef) != has(self.uri)",
                                               "set exactly one of snapshot.featurePipelineRef or snapshot.uri")]})
    algorithm: AlgorithmSpec = Field(description="Recommender algorithm and parameters.")
    evaluation: Evaluation = Field(default_factory=Evaluation, description="Offline evaluation.")
    mlflow: MLflowSettings = Field(description="MLflow tracking and registry.")
    promotion: Promotion = Field(default_factory=Promotion, description="Promotion gate.")
    image: str = Field("ghcr.io/recops/training:0.1.0", description="Job image.", max_length=512)
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements,
                                            description="Resources of the job container.")
    active_deadline_seconds: int = Field(7200, ge=60, le=172800, description="Kill the run after this long.")
    backoff_limit: int = Field(1, ge=0, le=10, description="Retries of a failed job; exit codes 2 (invalid input) "
                               "and 3 (the promotion gate refused) are never retried.")


class MLflowRunRef(ApiModel):
    """The MLflow run that tracks this training."""

    run_id: str = Field(description="MLflow run id.")
    experiment_id: str | None = Field(None, description="MLflow experiment id.")
    url: str | None = Field(None, description="Link to the run in the MLflow UI.")


class TrainingRunStatus(StatusBase):
    """The observed state of a TrainingRun."""

    job_name: str | None = Field(None, description="Job (or local run) doing the work.")
    snapshot_uri: str | None = Field(None, description="Snapshot actually trained on (resolved once, at start).")
    snapshot_version: str | None = Field(None, description="Snapshot version actually trained on.")
    mlflow_run: MLflowRunRef | None = Field(None, description="The MLflow run.")
    model_version: str | None = Field(None, description="Registered model version.")
    metrics: list[NamedValue] = Field(default_factory=list, description="Key offline metrics (strings).")
    baseline_metrics: list[NamedValue] = Field(default_factory=list, description="Popularity baseline metrics.")
    ndcg_at10: str | None = Field(None, alias="ndcgAt10", description="NDCG@10, for `kubectl get`.")
    promoted: bool | None = Field(None, description="Whether this version got the alias.")
    promotion_reason: str | None = Field(None, description="Why it was or was not promoted.")
    started_at: str | None = Field(None, description="When the job started.")
    completed_at: str | None = Field(None, description="When the job finished.")
    attempts: int | None = Field(None, description="Attempts so far: 1 + retries (`spec.backoffLimit` caps retries).")


class TrainingRun(ApiModel):
    """Trains a recommender on a feature snapshot, evaluates it offline, tracks it in MLflow, registers the
    model and promotes it when it beats the champion and the popularity baseline."""

    spec: TrainingRunSpec
    status: TrainingRunStatus | None = None


TRAINING_RUN = KindInfo(
    kind="TrainingRun",
    plural="trainingruns",
    singular="trainingrun",
    short_names=["tr"],
    owner="ML scientists",
    description=TrainingRun.__doc__ or "",
    printer_columns=[
        PrinterColumn(name="Algorithm", type="string", json_path=".spec.algorithm.name"),
        PrinterColumn(name="NDCG@10", type="string", json_path=".status.ndcgAt10"),
        PrinterColumn(name="Version", type="string", json_path=".status.modelVersion"),
        PrinterColumn(name="Succeeded", type="string",
                      json_path='.status.conditions[?(@.type=="Succeeded")].status'),
        PrinterColumn(name="Promoted", type="string",
                      json_path='.status.conditions[?(@.type=="Promoted")].status'),
        PrinterColumn(name="Reason", type="string", json_path=".status.promotionReason", priority=1),
        PrinterColumn(name="Age", type="date", json_path=".metadata.creationTimestamp"),
    ],
    spec_validations=[
        cel("self == oldSelf", "spec is immutable: create a new TrainingRun instead (metadata.generateName helps)",
            reason="FieldValueForbidden"),
    ],
)

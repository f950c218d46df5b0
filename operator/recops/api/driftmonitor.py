"""DriftMonitor: compare live inputs/outputs with the training reference; alert and optionally retrain.

Owned by ML scientists.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field

from .base import (
    DECIMAL_PATTERN,
    DURATION_PATTERN,
    FRACTION_PATTERN,
    ApiModel,
    Backend,
    KindInfo,
    LocalObjectRef,
    PrinterColumn,
    Schedule,
    StatusBase,
    Toggle,
    cel,
    matches,
    pattern_rule,
)
from .trainingrun import TrainingRunSpec

DRIFT_SHARE_MESSAGE = 'driftShare must be a decimal string in [0, 1], such as "0.3"'
# maxLength bounds the CEL rule's cost.
DriftShare = Annotated[str, AfterValidator(matches(FRACTION_PATTERN, DRIFT_SHARE_MESSAGE)),
                       Field(max_length=32, json_schema_extra=pattern_rule(FRACTION_PATTERN, DRIFT_SHARE_MESSAGE))]


class DriftBackend(StrEnum):
    """Backends that can run a drift check."""

    KUBERNETES = Backend.KUBERNETES.value
    LOCAL = Backend.LOCAL.value


class DriftMethod(StrEnum):
    PSI = "psi"
    JENSEN_SHANNON = "jensenshannon"
    KS = "ks"
    CHI2 = "chi2"


class DataSource(StrEnum):
    PAYLOAD_LOGS = "PayloadLogs"
    FEATURE_SNAPSHOT = "FeatureSnapshot"


class FeatureRule(ApiModel):
    """How one feature is compared."""

    name: str = Field(description="Feature (column) name, or `output.popularity` / `output.category`.",
                      min_length=1, max_length=128)
    method: DriftMethod = Field(DriftMethod.PSI, description="`psi`, `jensenshannon`, `ks` or `chi2`.")
    threshold: str = Field("0.2", pattern=DECIMAL_PATTERN,
                           description="Drift when the score exceeds this. psi/jensenshannon: the divergence; "
                           "ks: the KS statistic D; chi2: Cohen's w (sqrt(chi2/n), independent of sample size). "
                           "ks and chi2 "
                           "also need p < 0.05.")


class Target(ApiModel):
    """What is monitored."""

    deployment_ref: LocalObjectRef = Field(description="The RecommenderDeployment whose served model is the "
                                           "reference and whose payload logs are the current window.")
    feature_pipeline_ref: LocalObjectRef | None = Field(
        None, description="A FeaturePipeline whose newest snapshot is compared too (source FeatureSnapshot).")


class Window(ApiModel):
    """The current window."""

    duration: str = Field("24h", pattern=DURATION_PATTERN, description="How far back payload logs are read.")
    min_samples: int = Field(500, ge=1, le=100_000_000,
                             description="Fewer samples than this -> `InsufficientData`, never a false alarm.")


class DriftAction(StrEnum):
    NONE = "None"
    RETRAIN = "Retrain"


class TrainingRunTemplate(ApiModel):
    """The TrainingRun to create when drift is detected."""

    generate_name: str | None = Field(None, description="Name prefix of created runs; defaults to `<monitor>-`.",
                                      pattern=r"^[a-z0-9]([-a-z0-9]*)?$", max_length=58)
    spec: TrainingRunSpec = Field(description="Spec of created TrainingRuns (snapshot resolved at creation).")


class OnDrift(ApiModel):
    """What happens when drift is detected."""

    action: DriftAction = Field(DriftAction.NONE, description="`None` (report only) or `Retrain`.")
    refresh_features: Toggle = Field(Toggle.DISABLED,
                                     description="`Enabled`: request a FeaturePipeline run before retraining.")
    training_run_template: TrainingRunTemplate | None = Field(None, description="Template for retraining.")
    cooldown: str = Field("6h", pattern=DURATION_PATTERN,
                          description="Minimum time between two retrainings started by this monitor.")
    max_runs_per_day: int = Field(3, ge=1, le=100, description="Cap on retrainings started per 24 h.")


class Alerting(ApiModel):
    """Prometheus alert rules for drift."""

    prometheus_rule: Toggle = Field(Toggle.ENABLED,
                                    description="Create a PrometheusRule (needs the prometheus-operator CRDs).")
    severity: str = Field("warning", pattern=r"^(info|warning|critical)$", description="Alert severity label.")
    runbook_url: str | None = Field(None, pattern=r"^https?://", description="Runbook linked from alerts.")


class DriftMonitorSpec(ApiModel):
    """The desired monitoring."""

    backend: DriftBackend = Field(DriftBackend.KUBERNETES, description="Where checks run: `kubernetes` or `local`.")
    target: Target = Field(description="What is monitored.")
    schedule: Schedule = Field("*/15 * * * *", description="Cron schedule of checks.")
    sources: list[DataSource] = Field(default_factory=lambda: [DataSource.PAYLOAD_LOGS], min_length=1,
                                      max_length=2, description="What the current window is read from.")
    window: Window = Field(default_factory=Window, description="The current window.")
    features: list[FeatureRule] = Field(
        default_factory=list, max_length=200,
        description="Per-feature rules; features not listed use `defaultRule`.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]})
    default_rule: FeatureRule = Field(default_factory=lambda: FeatureRule(name="*"),
                                      description="Rule for every feature not listed.")
    drift_share: DriftShare = Field("0.3", description="Overall drift when this share of features drifted "
                                    "(decimal in [0, 1]).")
    on_drift: OnDrift = Field(default_factory=OnDrift, description="What happens on drift.")
    alerting: Alerting = Field(default_factory=Alerting, description="Prometheus alerts.")


class FeatureDrift(ApiModel):
    """The result for one feature."""

    name: str = Field(description="Feature.")
    method: str = Field(description="Method.")
    score: str = Field(description="Score.")
    threshold: str = Field(description="Threshold.")
    drifted: bool = Field(description="Whether the score exceeded the threshold.")


class RetrainingRecord(ApiModel):
    """A TrainingRun started by this monitor."""

    name: str = Field(description="TrainingRun name.")
    created_at: str = Field(description="When it was created.")
    check: str | None = Field(None, description="The drift check that started it.")


class DriftMonitorStatus(StatusBase):
    """The observed state of a DriftMonitor."""

    last_check_time: str | None = Field(None, description="When the last check finished.")
    samples: int | None = Field(None, description="Samples in the last current window.")
    score: str | None = Field(None, description="Overall drift score (share of drifted features).")
    drifted_features: str | None = Field(None, description="Comma-separated drifted features, for `kubectl get`.")
    features: list[FeatureDrift] = Field(default_factory=list, description="Per-feature results.")
    reference_version: str | None = Field(None, description="Model version whose reference was used.")
    report_url: str | None = Field(None, description="Where the HTML drift report is.")
    retraining_runs: list[RetrainingRecord] = Field(default_factory=list,
                                                    description="TrainingRuns started by this monitor.")
    retraining_blocked: str | None = Field(None, description="Why drift did not start a retraining (cooldown ...).")
    last_check: str | None = Field(None, description="Name of the latest check run.")
    last_scheduled_check: str | None = Field(None, description="Latest scheduled check started.")
    last_run_request: str | None = Field(None, description="Last handled on-demand check request token.")


class DriftMonitor(ApiModel):
    """Compares live inputs and outputs of a RecommenderDeployment with its training reference, reports drift
    in status, metrics and alerts, and can start a retraining TrainingRun."""

    spec: DriftMonitorSpec
    status: DriftMonitorStatus | None = None


DRIFT_MONITOR = KindInfo(
    kind="DriftMonitor",
    plural="driftmonitors",
    singular="driftmonitor",
    short_names=["dm"],
    owner="ML scientists",
    description=DriftMonitor.__doc__ or "",
    printer_columns=[
        PrinterColumn(name="Target", type="string", json_path=".spec.target.deploymentRef.name"),
        PrinterColumn(name="Drift", type="string",
                      json_path='.status.conditions[?(@.type=="DriftDetected")].status'),
        PrinterColumn(name="Score", type="string", json_path=".status.score"),
        PrinterColumn(name="Drifted", type="string", json_path=".status.driftedFeatures"),
        PrinterColumn(name="Samples", type="integer", json_path=".status.samples"),
        PrinterColumn(name="Last Check", type="date", json_path=".status.lastCheckTime"),
        PrinterColumn(name="Age", type="date", json_path=".metadata.creationTimestamp"),
    ],
    spec_validations=[
        cel("self.onDrift.action != 'Retrain' || has(self.onDrift.trainingRunTemplate)",
            "onDrift.action Retrain needs onDrift.trainingRunTemplate", field_path=".onDrift.trainingRunTemplate"),
        cel("self.onDrift.refreshFeatures != 'Enabled' || has(self.target.featurePipelineRef)",
            "onDrift.refreshFeatures needs target.featurePipelineRef", field_path=".onDrift.refreshFeatures"),
    ],
)

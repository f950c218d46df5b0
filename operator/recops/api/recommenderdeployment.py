"""RecommenderDeployment: serve a registered model version over HTTP, scale it, monitor it, roll it out.

Owned by software / platform engineers.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from .base import (
    DNS_LABEL_PATTERN,
    ApiModel,
    Backend,
    KindInfo,
    PrinterColumn,
    ResourceRequirements,
    SecretKeyRef,
    StatusBase,
    Toggle,
    cel,
)
from .featurepipeline import S3Connection


class ServingBackend(StrEnum):
    """Backends that can serve a model."""

    KUBERNETES = Backend.KUBERNETES.value
    LOCAL = Backend.LOCAL.value
    ECS = Backend.ECS.value
    SAGEMAKER = Backend.SAGEMAKER.value


class ModelRef(ApiModel):
    """Which registered model version to serve: by alias (follows promotions) or pinned version."""

    name: str = Field(description="Registered model name in MLflow.", min_length=1, max_length=256)
    alias: str | None = Field(None, description="Registry alias to follow, e.g. `champion`.",
                              pattern=r"^[a-z][a-z0-9_-]{0,62}$")
    version: str | None = Field(None, description="A pinned version number instead of an alias.",
                                pattern=r"^[1-9][0-9]*$")
    tracking_uri: str = Field(description="MLflow tracking server URL.", pattern=r"^https?://", max_length=2048)
    token_secret_ref: SecretKeyRef | None = Field(None, description="Secret key with an MLflow token.")


class Autoscaling(ApiModel):
    """A HorizontalPodAutoscaler for the server (kubernetes backend)."""

    min_replicas: int = Field(1, ge=1, le=1000, description="Lower bound of replicas.")
    max_replicas: int = Field(description="Upper bound of replicas.", ge=1, le=1000)
    target_cpu_utilization_percent: int = Field(70, ge=10, le=100, description="Target average CPU, percent.")


class Serving(ApiModel):
    """Behaviour of the model server."""

    default_k: int = Field(10, ge=1, le=1000, description="k when a request does not say.")
    max_k: int = Field(100, ge=1, le=1000, description="Largest k a request may ask for.")
    max_concurrency: int = Field(64, ge=1, le=100000,
                                 description="Requests in flight per replica before 503 + Retry-After.")
    reload_interval_seconds: int = Field(30, ge=5, le=86400,
                                         description="How often the server checks whether the alias moved.")


class PayloadLogging(ApiModel):
    """Sampled request/response logs for DriftMonitor."""

    sample_percent: int = Field(10, ge=0, le=100, description="Percent of requests logged (0 disables).")
    uri: str = Field(description="`s3://bucket/prefix` or an absolute local path (local backend).",
                     pattern=r"^(s3://.+|/.+)$", max_length=2048)
    s3: S3Connection = Field(default_factory=S3Connection, description="Connection settings for `s3://` URIs.")


class Monitoring(ApiModel):
    """Prometheus integration (needs the prometheus-operator CRDs in the cluster)."""

    service_monitor: Toggle = Field(Toggle.ENABLED, description="Create a ServiceMonitor.")
    alert_rules: Toggle = Field(Toggle.ENABLED, description="Create a PrometheusRule with serving alerts.")
    latency_p99_threshold_ms: int = Field(100, ge=1, le=60000, description="Alert when p99 latency exceeds it.")
    error_rate_threshold_percent: int = Field(1, ge=0, le=100, description="Alert when 5xx rate exceeds it.")
    fallback_rate_threshold_percent: int = Field(50, ge=0, le=100,
                                                 description="Alert when cold-start fallbacks exceed it.")


class RecommenderDeploymentSpec(ApiModel):
    """The desired state of a RecommenderDeployment."""

    backend: ServingBackend = Field(ServingBackend.KUBERNETES,
                                    description="Where it is served: `kubernetes`, `local`, `ecs` or `sagemaker`.")
    model: ModelRef = Field(description="The registered model to serve.",
                            json_schema_extra={"x-kubernetes-validations": [
                                cel("has(self.alias) != has(self.version)",
                                    "set exactly one of model.alias or model.version")]})
    replicas: int = Field(1, ge=0, le=1000, description="Replicas when autoscaling is not set.")
    autoscaling: Autoscaling | None = Field(None, description="Autoscale between bounds instead of `replicas`.",
                                            json_schema_extra={"x-kubernetes-validations": [
                                                cel("self.minReplicas <= self.maxReplicas",
                                                    "autoscaling.minReplicas must not exceed maxReplicas")]})
    serving: Serving = Field(default_factory=Serving, description="Server behaviour.")
    payload_logging: PayloadLogging | None = Field(None, description="Sampled payload logs for drift monitoring.")
    monitoring: Monitoring = Field(default_factory=Monitoring, description="Metrics and alerts.")
    image: str = Field("ghcr.io/recops/model-server:0.1.0", description="Server image.", max_length=512)
    port: int = Field(8080, ge=1024, le=65535, description="Container port of the server.")
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements,
                                            description="Resources of the server container.")
    service_name: str | None = Field(None, pattern=DNS_LABEL_PATTERN, max_length=63,
                                     description="Name of the Service; defaults to the object's name.")


class RecommenderDeploymentStatus(StatusBase):
    """The observed state of a RecommenderDeployment."""

    served_version: str | None = Field(None, description="Model version the ready replicas actually serve.")
    desired_version: str | None = Field(None, description="Model version the alias points to now.")
    replicas: int | None = Field(None, description="Total replicas (scale subresource).")
    ready_replicas: int | None = Field(None, description="Ready replicas.")
    ready: str | None = Field(None, description="`ready/desired`, for `kubectl get`.")
    selector: str | None = Field(None, description="Label selector of the pods (scale subresource).")
    url: str | None = Field(None, description="Where to send requests.")


class RecommenderDeployment(ApiModel):
    """Serves a registered model version as a FastAPI top-k recommendation service with metrics,
    alert rules, autoscaling and safe rollouts."""

    spec: RecommenderDeploymentSpec
    status: RecommenderDeploymentStatus | None = None


RECOMMENDER_DEPLOYMENT = KindInfo(
    kind="RecommenderDeployment",
    plural="recommenderdeployments",
    singular="recommenderdeployment",
    short_names=["rd"],
    owner="software / platform engineers",
    description=RecommenderDeployment.__doc__ or "",
    printer_columns=[
        PrinterColumn(name="Model", type="string", json_path=".spec.model.name"),
        PrinterColumn(name="Version", type="string", json_path=".status.servedVersion"),
        PrinterColumn(name="Ready", type="string", json_path=".status.ready"),
        PrinterColumn(name="URL", type="string", json_path=".status.url"),
        PrinterColumn(name="Backend", type="string", json_path=".spec.backend", priority=1),
        PrinterColumn(name="Age", type="date", json_path=".metadata.creationTimestamp"),
    ],
    scale={
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    },
)

"""Server settings: environment variables with the ``RECOPS_`` prefix (pydantic-settings)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServerSettings(BaseSettings):
    """Every field is read from ``RECOPS_<FIELD NAME IN UPPER CASE>``, e.g. ``RECOPS_MODEL_URI``.

    Credentials are never settings: MLflow reads ``MLFLOW_TRACKING_URI`` / ``MLFLOW_TRACKING_TOKEN``,
    boto3 reads ``AWS_*`` from the environment itself.
    """

    model_config = SettingsConfigDict(env_prefix="RECOPS_", extra="ignore", frozen=True)

    model_uri: str = Field(
        default="",
        description="Where the model comes from: a local model directory (written by "
        "recops_model.save_model, or an MLflow model directory holding one), 'models:/<name>@<alias>' or "
        "'models:/<name>/<version>' from the MLflow registry (MLFLOW_TRACKING_URI).",
    )
    model_version: str | None = Field(
        default=None,
        description="Pin this registry version instead of following the alias (the operator sets it so that "
        "an alias move rolls out through the Deployment, gated by readiness). Ignored for local dirs.",
    )
    deployment: str | None = Field(default=None, description="namespace/name, reported by /readyz and payload logs.")
    model_name: str | None = Field(
        default=None,
        description="Name reported in responses and metrics; defaults to the registry name or dir name.",
    )
    host: str = "0.0.0.0"  # noqa: S104 - a server in a pod listens on all interfaces
    port: int = Field(default=8080, ge=1, le=65535)
    default_k: int = Field(default=10, ge=1, le=1000, description="k when a request gives none.")
    max_k: int = Field(default=1000, ge=1, le=1000, description="Largest k a request may ask for.")
    max_concurrency: int = Field(
        default=64, ge=1, description="In-flight /v1 requests; the excess is answered 503 with Retry-After."
    )
    retry_after_seconds: int = Field(default=1, ge=0)
    max_batch_requests: int = Field(default=1000, ge=1, description="Max entries in one batch request.")
    scoring_in_threadpool: bool = Field(
        default=True,
        description="Score large work (batch requests; micro-batches of more than 2M user x item scores) in the "
        "worker thread pool, so the event loop stays free for probes and metrics; small micro-batches are scored "
        "on the event loop either way. False scores everything on the event loop.",
    )
    reload_interval_seconds: float = Field(
        default=30.0,
        ge=0,
        description="How often the alias (or local directory) is polled for a new version; 0 = never.",
    )
    download_dir: str | None = Field(default=None, description="Where registry artifacts are downloaded (temp dir).")
    payload_log_dir: str | None = Field(default=None, description="Local directory for sampled payload logs.")
    payload_log_s3_uri: str | None = Field(default=None, description="s3://bucket/prefix for sampled payload logs.")
    payload_log_uri: str | None = Field(
        default=None, description="Where payload logs go: s3://bucket/prefix, or a local directory (file:// allowed)."
    )
    payload_sample_percent: int | None = Field(
        default=None, ge=0, le=100, description="Percent of responses logged (overrides payload_log_sample_rate)."
    )
    payload_log_sample_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    payload_log_flush_seconds: float = Field(default=5.0, gt=0)
    payload_log_max_records_per_file: int = Field(default=5000, ge=1)
    payload_log_queue_size: int = Field(default=20000, ge=1)
    drain_seconds: float = Field(
        default=0.0,
        ge=0,
        description="After SIGTERM keep serving (readyz 503) this long before shutting down.",
    )
    graceful_timeout_seconds: float = Field(default=25.0, ge=0, description="Max wait for in-flight requests.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = False

    @field_validator("payload_log_s3_uri")
    @classmethod
    def _s3(cls, v: str | None) -> str | None:
        if v and not v.startswith("s3://"):
            raise ValueError("payload_log_s3_uri must look like s3://bucket/prefix")
        return v or None

    @model_validator(mode="after")
    def _k(self) -> ServerSettings:
        if self.default_k > self.max_k:
            raise ValueError(f"default_k ({self.default_k}) must not exceed max_k ({self.max_k})")
        return self

    def payload_targets(self) -> tuple[str | None, str | None]:
        """(local directory, s3 URI) for payload logs, from payload_log_uri or the two explicit settings."""
        local, s3 = self.payload_log_dir, self.payload_log_s3_uri
        uri = self.payload_log_uri
        if uri:
            if uri.startswith("s3://"):
                s3 = uri
            else:
                local = uri.removeprefix("file://")
        return local, s3

    def payload_rate(self) -> float:
        if self.payload_sample_percent is not None:
            return self.payload_sample_percent / 100.0
        return self.payload_log_sample_rate

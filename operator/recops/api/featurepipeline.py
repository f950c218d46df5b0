"""FeaturePipeline: clickstream (S3) + user profiles (PostgreSQL) -> versioned feature snapshots.

Owned by data / analytics engineers.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from .base import (
    DECIMAL_PATTERN,
    DURATION_PATTERN,
    ApiModel,
    Backend,
    KindInfo,
    PrinterColumn,
    ResourceRequirements,
    Schedule,
    SecretKeyRef,
    SecretRef,
    StatusBase,
    cel,
)


class FeaturePipelineBackend(StrEnum):
    """Backends that can run a feature job."""

    KUBERNETES = Backend.KUBERNETES.value
    LOCAL = Backend.LOCAL.value
    ECS = Backend.ECS.value


class FileFormat(StrEnum):
    PARQUET = "parquet"
    JSONL = "jsonl"
    CSV = "csv"


class S3Connection(ApiModel):
    """How to reach an S3-compatible object store."""

    endpoint_url: str | None = Field(
        None, description="Endpoint of an S3-compatible store (MinIO, Ceph...); unset means AWS S3.",
        pattern=r"^https?://", max_length=2048)
    region: str = Field("us-east-1", description="Region of the bucket.", max_length=64)
    credentials_secret_ref: SecretRef | None = Field(
        None,
        description="Secret with keys `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`; unset means the "
        "workload's own identity (IRSA, instance profile).")


class ClickstreamSource(ApiModel):
    """Where the raw events are: date-partitioned files under a prefix (`date=YYYY-MM-DD/`)."""

    uri: str = Field(description="`s3://bucket/prefix` of the events, or an absolute local path (local backend).",
                     pattern=r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?|/.+)$", max_length=2048)
    format: FileFormat = Field(FileFormat.PARQUET, description="File format of the event files.")
    s3: S3Connection = Field(default_factory=S3Connection, description="Connection settings for `s3://` URIs.")


class ProfilesSource(ApiModel):
    """User profiles in PostgreSQL."""

    dsn_secret_ref: SecretKeyRef = Field(
        description="Secret key holding a libpq connection string (`postgresql://user:pass@host:5432/db`).")
    table: str = Field("user_profiles", description="Table (optionally `schema.table`) with one row per user.",
                       pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$", max_length=127)


class CatalogSource(ApiModel):
    """The item catalogue (item_id, category, price ...): one file or a prefix of files."""

    uri: str = Field(description="`s3://bucket/key-or-prefix` or an absolute local path; read with the "
                     "clickstream's S3 connection.", pattern=r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?|/.+)$",
                     max_length=2048)


class Sources(ApiModel):
    """The inputs of the feature job."""

    clickstream: ClickstreamSource = Field(description="The event log.")
    catalog: CatalogSource | None = Field(None, description="The item catalogue; unset means item features come "
                                          "from the events alone.")
    profiles: ProfilesSource | None = Field(None, description="User profiles; unset means none are joined.")


class Window(ApiModel):
    """Which events a run reads: the last `days` days before the run."""

    days: int = Field(28, ge=1, le=3650, description="Length of the window in days, ending at the run time.")


class EventWeight(ApiModel):
    """How much one event type counts towards a user x item interaction strength."""

    event: str = Field(description="Event type, e.g. `view`, `add_to_cart`, `purchase`.", min_length=1,
                       max_length=64)
    weight: str = Field(description="Weight as a decimal string, e.g. `\"3\"`.", pattern=DECIMAL_PATTERN)


class TransformMode(StrEnum):
    REPLACE = "Replace"
    AFTER = "After"


class CustomTransform(ApiModel):
    """A user-supplied pandas transform shipped in the job image."""

    function: str = Field(description="`module:function` importable in the job image.",
                          pattern=r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$")
    mode: TransformMode = Field(TransformMode.AFTER,
                                description="`Replace` the built-in features or run `After` them.")


def _default_weights() -> list[EventWeight]:
    return [EventWeight(event="view", weight="1"), EventWeight(event="add_to_cart", weight="3"),
            EventWeight(event="purchase", weight="5")]


class Features(ApiModel):
    """How features are computed."""

    event_weights: list[EventWeight] = Field(
        default_factory=_default_weights, min_length=1, max_length=32,
        description="Weight per event type for interaction strengths.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["event"]})
    decay_half_life: str = Field("14d", pattern=DURATION_PATTERN,
                                 description="Half-life of the exponential time decay of interactions.")
    transform: CustomTransform | None = Field(None, description="Optional custom transform.")


class Output(ApiModel):
    """Where snapshots are published."""

    uri: str = Field(description="`s3://bucket/prefix` or absolute local path under which snapshots go.",
                     pattern=r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?|/.+)$", max_length=2048)
    s3: S3Connection = Field(default_factory=S3Connection, description="Connection settings for `s3://` URIs.")


class SnapshotTable(StrEnum):
    """The tables of a snapshot."""

    INTERACTIONS = "interactions"
    USERS = "users"
    ITEMS = "items"


class MaxNullFraction(ApiModel):
    """An upper bound on the fraction of nulls in one column of a snapshot table."""

    table: SnapshotTable = Field(SnapshotTable.INTERACTIONS, description="`interactions`, `users` or `items`.")
    column: str = Field(description="Column name, or `*` for every column.", min_length=1, max_length=128)
    max: str = Field(description="Largest allowed fraction, a decimal string in [0, 1], e.g. `\"0.01\"`.",
                     pattern=r"^(0(\.[0-9]+)?|1(\.0+)?)$")


class ExpectedColumn(ApiModel):
    """A column a snapshot table must have."""

    table: SnapshotTable = Field(SnapshotTable.INTERACTIONS, description="`interactions`, `users` or `items`.")
    name: str = Field(description="Column name.", min_length=1, max_length=128)
    type: str = Field("any", description="Type family: `int`, `float`, `number`, `string`, `bool`, `timestamp`, "
                      "`date`, `category` or `any`.",
                      pattern=r"^(int|float|number|string|bool|timestamp|date|category|any)$")


class QualityGates(ApiModel):
    """Checks a snapshot must pass before it is published. A failing gate publishes nothing new."""

    min_rows: int = Field(1, ge=0, description="Minimum number of interaction rows.")
    max_null_fraction: list[MaxNullFraction] = Field(
        default_factory=list, max_length=128, description="Per-column null bounds.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["table", "column"]})
    expected_columns: list[ExpectedColumn] = Field(
        default_factory=list, max_length=128, description="Columns (and types) the snapshot tables must have.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["table", "name"]})
    max_event_age: str | None = Field(None, pattern=DURATION_PATTERN,
                                      description="Freshness: the newest event must be younger than this.")
    unique_keys: list[str] = Field(default_factory=lambda: ["user_id", "item_id"], max_length=8,
                                   description="Columns that must identify an interactions row uniquely.")


class ConcurrencyPolicy(StrEnum):
    ALLOW = "Allow"
    FORBID = "Forbid"
    REPLACE = "Replace"


class FeaturePipelineSpec(ApiModel):
    """The desired state of a FeaturePipeline."""

    backend: FeaturePipelineBackend = Field(FeaturePipelineBackend.KUBERNETES,
                                            description="Where the job runs: `kubernetes`, `local` or `ecs`.")
    schedule: Schedule = Field("@daily", description="Cron schedule of runs (five fields or an @-macro).")
    suspend: bool = Field(False, description="Stop scheduled runs; on-demand runs still happen.")
    concurrency_policy: ConcurrencyPolicy = Field(ConcurrencyPolicy.FORBID,
                                                  description="What to do when a run is due while one runs.")
    successful_runs_history_limit: int = Field(3, ge=0, le=100, description="Finished runs to keep.")
    failed_runs_history_limit: int = Field(3, ge=0, le=100, description="Failed runs to keep.")
    sources: Sources = Field(description="Clickstream and profile inputs.")
    window: Window = Field(default_factory=Window, description="Which events each run reads.")
    features: Features = Field(default_factory=Features, description="How features are computed.")
    output: Output = Field(description="Where snapshots are published.")
    quality: QualityGates = Field(default_factory=QualityGates, description="Quality gates.")
    image: str = Field("ghcr.io/recops/feature-jobs:0.1.0", description="Job image.", max_length=512)
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements,
                                            description="Resources of the job container.")
    active_deadline_seconds: int = Field(3600, ge=60, le=86400, description="Kill a run after this long.")
    backoff_limit: int = Field(2, ge=0, le=10, description="Retries of a failed run before it counts as failed; exit "
                               "codes 2 (invalid input) and 3 (a gate refused) are never retried.")


class SnapshotRef(ApiModel):
    """A published feature snapshot."""

    version: str = Field(description="Content digest (the snapshot's version).")
    uri: str = Field(description="Where the snapshot lives.")
    rows: int | None = Field(None, description="Interaction rows.")
    users: int | None = Field(None, description="Distinct users.")
    items: int | None = Field(None, description="Distinct items.")
    created_at: str | None = Field(None, description="When it was published (RFC 3339).")


class QualityResult(ApiModel):
    """The outcome of one quality gate."""

    name: str = Field(description="Gate name.")
    passed: bool = Field(description="Whether it passed.")
    observed: str = Field("", description="Observed value.")
    threshold: str = Field("", description="Threshold it was held to.")


class RunRecord(ApiModel):
    """The last run of a job."""

    name: str = Field(description="Name of the run (Job name or local run id).")
    result: str = Field(description="`Running`, `Succeeded`, `Failed` or `QualityFailed`.")
    started_at: str | None = Field(None, description="Start time (RFC 3339).")
    finished_at: str | None = Field(None, description="Finish time (RFC 3339).")
    duration_seconds: int | None = Field(None, description="Duration in whole seconds.")
    message: str = Field("", description="What happened.")
    attempts: int | None = Field(None, description="Attempts so far: 1 + retries (`spec.backoffLimit` caps retries).")


class FeaturePipelineStatus(StatusBase):
    """The observed state of a FeaturePipeline."""

    latest_snapshot: SnapshotRef | None = Field(None, description="The newest snapshot that passed its gates.")
    last_run: RunRecord | None = Field(None, description="The most recent run.")
    quality: list[QualityResult] = Field(default_factory=list, description="Gate results of the last run.")
    last_run_request: str | None = Field(None, description="Last handled on-demand run request token.")
    last_scheduled_run: str | None = Field(None, description="Latest scheduled run started (local backend).")


class FeaturePipeline(ApiModel):
    """Reads clickstream from S3 and profiles from PostgreSQL, computes features with pandas and publishes
    versioned, quality-checked snapshots on a schedule or on demand."""

    spec: FeaturePipelineSpec
    status: FeaturePipelineStatus | None = None


FEATURE_PIPELINE = KindInfo(
    kind="FeaturePipeline",
    plural="featurepipelines",
    singular="featurepipeline",
    short_names=["fp"],
    owner="data / analytics engineers",
    description=FeaturePipeline.__doc__ or "",
    printer_columns=[
        PrinterColumn(name="Schedule", type="string", json_path=".spec.schedule"),
        PrinterColumn(name="Snapshot", type="string", json_path=".status.latestSnapshot.version",
                      description="Version (content digest) of the latest snapshot."),
        PrinterColumn(name="Rows", type="integer", json_path=".status.latestSnapshot.rows"),
        PrinterColumn(name="Quality", type="string",
                      json_path='.status.conditions[?(@.type=="QualityPassed")].status'),
        PrinterColumn(name="Last Run", type="date", json_path=".status.lastRun.finishedAt"),
        PrinterColumn(name="Ready", type="string", json_path='.status.conditions[?(@.type=="Ready")].status',
                      priority=1),
        PrinterColumn(name="Age", type="date", json_path=".metadata.creationTimestamp"),
    ],
    spec_validations=[
        cel("self.backend != 'ecs' || self.sources.clickstream.uri.startsWith('s3://')",
            "the ecs backend reads from S3: set sources.clickstream.uri to an s3:// URI",
            field_path=".sources.clickstream.uri"),
        cel("self.backend == 'local' || self.output.uri.startsWith('s3://')",
            "only the local backend can publish to a local path: set output.uri to an s3:// URI",
            field_path=".output.uri"),
    ],
)

"""The drift check's configuration: one JSON document (camelCase keys, unknown keys rejected).

The operator maps a ``DriftMonitor`` spec onto :class:`DriftCheckConfig` and runs
``recops-drift run --config FILE``. Credentials never appear here: S3 keys and endpoint come from
``AWS_*``, MLflow from ``MLFLOW_TRACKING_URI`` / ``MLFLOW_TRACKING_TOKEN``.

Minimal example::

    {
      "monitor": "recs-drift", "namespace": "shop",
      "reference": {"mlflow": {"modelName": "recs", "modelVersion": "3"}},
      "current": {"payloadLogs": {"uri": "s3://logs/recs/payloads", "duration": "24h"}},
      "features": [{"name": "output.popularity", "method": "ks", "threshold": "0.1"}],
      "defaultRule": {"method": "psi", "threshold": "0.2"},
      "driftShare": "0.3", "minSamples": 500,
      "report": {"mlflow": {"attachTo": "ReferenceRun"}}
    }
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from . import stats as S

_DURATION = re.compile(r"^\s*([1-9][0-9]*)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DECIMAL = r"^(0|[1-9][0-9]*)(\.[0-9]+)?$"


def parse_duration(value: str) -> timedelta:
    """``"90s"``, ``"30m"``, ``"24h"``, ``"7d"``, ``"2w"`` -> timedelta."""
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a duration; use a whole number and a unit s/m/h/d/w such as '24h'")
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def parse_time(value: str) -> datetime:
    """ISO-8601 (``2026-11-29T04:00:00Z``); naive times are UTC."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an ISO-8601 time such as '2026-11-29T04:00:00Z'") from exc
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class MlflowReference(_Model):
    """The reference profile logged with the served model version's MLflow run."""

    run_id: str | None = Field(None, description="MLflow run id holding the profile artifact.")
    model_name: str | None = Field(None, description="Registered model name (with modelVersion or modelAlias).")
    model_version: str | None = Field(None, description='Registered model version, e.g. "3".')
    model_alias: str | None = Field(None, description='Registered model alias, e.g. "champion".')
    artifact_path: str = Field("reference_profile.json", description="Artifact path of the profile in the run.")

    @model_validator(mode="after")
    def _one_way(self) -> MlflowReference:
        if self.run_id is None and self.model_name is None:
            raise ValueError("reference.mlflow needs runId, or modelName with modelVersion or modelAlias")
        if self.model_name is not None and (self.model_version is None) == (self.model_alias is None):
            raise ValueError("reference.mlflow.modelName needs exactly one of modelVersion or modelAlias")
        return self


class Reference(_Model):
    """Where the reference comes from: exactly one of ``mlflow``, ``profileUri``, ``snapshotUri``."""

    mlflow: MlflowReference | None = Field(None, description="The profile artifact of the model's MLflow run.")
    profile_uri: str | None = Field(None, description="A profile JSON file: local path or s3://bucket/key.")
    snapshot_uri: str | None = Field(
        None,
        description="A feature snapshot (directory or s3:// prefix holding manifest.json, or an output root "
        "with latest.json): its manifest statistics are the reference.",
    )
    item_lookup_uri: str | None = Field(
        None,
        description="Optional recops model directory (item_ids.npy, item_categories.npy, popularity.npy, "
        "MANIFEST.json) for output features when the profile has no itemLookup.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Reference:
        given = [n for n in ("mlflow", "profile_uri", "snapshot_uri") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "reference needs exactly one of mlflow, profileUri or snapshotUri (got "
                f"{', '.join(to_camel(g) for g in given) or 'none'})"
            )
        return self


class PayloadLogs(_Model):
    """Model server payload logs: JSON lines under ``<uri>/date=YYYY-MM-DD/*.jsonl``."""

    uri: str = Field(description="Local directory or s3://bucket/prefix the model server writes payload logs to.")
    duration: str = Field("24h", description="Window length ending at `end` (s/m/h/d/w).")
    end: str | None = Field(None, description="Window end (ISO-8601); default: now.")
    model_version: str | None = Field(
        None,
        description="Only records served by this model version (default: the reference's version, if known).",
    )
    max_records: int = Field(2_000_000, ge=1, le=100_000_000, description="Newest records read at most.")

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("end")
    @classmethod
    def _end(cls, value: str | None) -> str | None:
        if value is not None:
            parse_time(value)
        return value


class SnapshotSource(_Model):
    """The newest feature snapshot (its Parquet tables are the current window)."""

    uri: str = Field(description="FeaturePipeline output root (latest.json) or one snapshot (manifest.json).")
    tables: list[str] | None = Field(None, description="Tables to read (default: those the reference profiles).")


class Current(_Model):
    """The current window: payload logs and/or the newest feature snapshot."""

    payload_logs: PayloadLogs | None = Field(None, description="Model server payload logs.")
    snapshot: SnapshotSource | None = Field(None, description="The newest feature snapshot.")

    @model_validator(mode="after")
    def _some(self) -> Current:
        if self.payload_logs is None and self.snapshot is None:
            raise ValueError("current needs payloadLogs and/or snapshot")
        return self


class Rule(_Model):
    """How one feature is compared (``name: "*"`` for the default rule)."""

    name: str = Field("*", min_length=1, max_length=128)
    method: Literal["psi", "jensenshannon", "ks", "chi2"] = Field("psi")
    threshold: str = Field("0.2", pattern=_DECIMAL, description="Decimal string; drift when score > threshold.")


class MlflowReport(_Model):
    """Log the HTML report to MLflow."""

    attach_to: Literal["ReferenceRun", "MonitoringRun"] = Field(
        "ReferenceRun", description="Log under the reference model's run, or a run in `experiment`."
    )
    experiment: str = Field("recops-drift", description="Experiment of monitoring runs (attachTo MonitoringRun).")
    artifact_dir: str = Field("drift", description="Artifact directory of the report.")


class ReportOut(_Model):
    """Where the HTML report goes (both allowed; neither = no report)."""

    path: str | None = Field(None, description="Local file or s3://bucket/key for the HTML report.")
    mlflow: MlflowReport | None = Field(None, description="Log the report to MLflow.")


class DriftCheckConfig(_Model):
    """``recops-drift run --config FILE``."""

    monitor: str = Field("drift", min_length=1, max_length=253, description="DriftMonitor name (metric label).")
    namespace: str = Field("default", min_length=1, max_length=63, description="Namespace (metric label).")
    reference: Reference
    current: Current
    features: list[Rule] = Field(default_factory=list, max_length=500, description="Per-feature rules.")
    default_rule: Rule = Field(
        default_factory=lambda: Rule.model_validate({}), description="Rule for features not listed."
    )
    only_listed: bool = Field(False, description="Check only the features listed in `features`.")
    drift_share: str = Field("0.3", pattern=_DECIMAL, description="Window drifted when this share of features did.")
    min_samples: int = Field(500, ge=1, le=100_000_000, description="Fewer current values -> InsufficientData.")
    min_reference_samples: int = Field(100, ge=1, le=100_000_000)
    significance: str = Field("0.05", pattern=_DECIMAL, description="Drift also needs the p-value below this.")
    report: ReportOut = Field(default_factory=lambda: ReportOut.model_validate({}))
    checked_at: str | None = Field(None, description="Override the check time (ISO-8601), for reproducible runs.")

    @model_validator(mode="after")
    def _valid_spec(self) -> DriftCheckConfig:
        S.validate_spec(self.spec())
        return self

    def spec(self) -> S.DriftSpec:
        return S.DriftSpec(
            rules=[S.FeatureRule(r.name, r.method, r.threshold) for r in self.features],
            default_rule=S.FeatureRule("*", self.default_rule.method, self.default_rule.threshold),
            drift_share=self.drift_share,
            min_samples=self.min_samples,
            min_reference_samples=self.min_reference_samples,
            significance=self.significance,
            features=[r.name for r in self.features] if self.only_listed else None,
        )

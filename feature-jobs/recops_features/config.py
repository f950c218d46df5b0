"""The FeaturePipeline job's configuration: one JSON document (camelCase keys, unknown keys rejected).

The operator maps a ``FeaturePipeline`` spec onto :class:`FeaturePipelineConfig` and passes it as
``recops-features run --config FILE``. Credentials never appear here: S3 keys and the endpoint come
from ``AWS_*`` environment variables, the PostgreSQL DSN from ``RECOPS_POSTGRES_DSN``.

Numbers may be given as JSON numbers or as strings (``"0.05"``), so a CRD without floats maps 1:1.

Minimal example::

    {
      "name": "clickstream-features",
      "sources": {
        "events": {"uri": "s3://lake/clickstream/events"},
        "catalog": {"uri": "s3://lake/clickstream/catalog/items.parquet"},
        "profiles": {"table": "user_profiles"}
      },
      "window": {"lastDays": 28},
      "output": {"uri": "s3://features/clickstream"},
      "quality": {"minRows": [{"table": "interactions", "min": 1000}], "maxEventAge": "36h"}
    }
"""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

BUILTIN_TABLES = ("interactions", "users", "items")
"""The tables the built-in transform produces, in snapshot order."""

DEFAULT_KEYS: dict[str, list[str]] = {
    "interactions": ["user_id", "item_id"],
    "users": ["user_id"],
    "items": ["item_id"],
}
"""Natural keys of the built-in tables (checked by the duplicate-key gate)."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")


def parse_duration(value: str) -> timedelta:
    """Parse ``"90s"``, ``"30m"``, ``"36h"``, ``"7d"``, ``"2w"`` into a timedelta."""
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a duration; use a number and a unit s/m/h/d/w, e.g. '36h' or '7d'")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def parse_time(value: str | datetime) -> datetime:
    """Parse an ISO-8601 time (``2026-11-01``, ``2026-11-01T06:00:00Z``); naive times are UTC."""
    if isinstance(value, datetime):
        parsed = value
    else:
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an ISO-8601 time such as '2026-11-01T00:00:00Z'") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, coerce_numbers_to_str=False
    )


NonNegFloat = Annotated[float, Field(ge=0)]


class EventsSource(_Model):
    """Where the clickstream lives."""

    uri: str = Field(
        description="Root of the date-partitioned clickstream: `s3://bucket/prefix` or a local directory. "
        "Files are read from `<uri>/date=YYYY-MM-DD/*.parquet|*.jsonl|*.json|*.jsonl.gz`; only the "
        "partitions overlapping the window are listed."
    )
    format: Literal["auto", "parquet", "jsonl"] = Field(
        "auto", description="File format; `auto` decides per file from its extension."
    )


class CatalogSource(_Model):
    """The item catalogue (item_id, category, price, ...)."""

    uri: str = Field(
        description="A Parquet or JSON-lines file (`s3://bucket/key` or a local path), or a directory/prefix "
        "whose files are concatenated. Needs `item_id`; `category` and `price` feed item features."
    )


class ProfilesSource(_Model):
    """User profiles: a PostgreSQL table (DSN from env `RECOPS_POSTGRES_DSN`) or a file."""

    table: str | None = Field(
        None,
        description="PostgreSQL table (optionally `schema.table`) with a `user_id` column; the DSN comes from "
        "env RECOPS_POSTGRES_DSN.",
    )
    uri: str | None = Field(None, description="Alternatively a Parquet/JSON-lines file with a `user_id` column.")
    columns: list[str] | None = Field(
        None, description="Profile columns to join onto user features (default: all columns of the table)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> ProfilesSource:
        if (self.table is None) == (self.uri is None):
            raise ValueError("set exactly one of profiles.table (PostgreSQL) or profiles.uri (file)")
        if self.table is not None and not _IDENTIFIER.match(self.table):
            raise ValueError(f"profiles.table {self.table!r} is not a plain SQL identifier like 'user_profiles'")
        return self


class Sources(_Model):
    """The job's inputs."""

    events: EventsSource = Field(description="The clickstream (required).")
    catalog: CatalogSource | None = Field(None, description="The item catalogue (optional).")
    profiles: ProfilesSource | None = Field(None, description="User profiles (optional).")


class Window(_Model):
    """The event-time window ``[start, end)``: either explicit ``start``/``end`` or ``lastDays``.

    With ``lastDays`` the end is ``referenceTime`` (default: now) truncated to ``truncateTo`` so
    reruns within the same hour (default) see the same window and produce the same version.
    The time decay and recency features are measured from the window end.
    """

    start: str | None = Field(None, description="Inclusive start (ISO-8601, UTC if no offset).")
    end: str | None = Field(None, description="Exclusive end (ISO-8601, UTC if no offset).")
    last_days: int | None = Field(
        None, ge=1, le=3650, description="Window length in days ending at the reference time."
    )
    reference_time: str | None = Field(
        None, description="End of a `lastDays` window before truncation (ISO-8601); default: the current time."
    )
    truncate_to: Literal["none", "hour", "day"] = Field(
        "hour", description="Truncate the `lastDays` end to a whole hour/day (reproducible reruns)."
    )

    @model_validator(mode="after")
    def _explicit_or_relative(self) -> Window:
        explicit = self.start is not None or self.end is not None
        if explicit and self.last_days is not None:
            raise ValueError("window: set either start/end or lastDays, not both")
        if explicit and (self.start is None or self.end is None):
            raise ValueError("window: an explicit window needs both start and end")
        if not explicit and self.last_days is None:
            raise ValueError("window: set start and end, or lastDays")
        if explicit and parse_time(self.start or "") >= parse_time(self.end or ""):
            raise ValueError(f"window: start {self.start} must be before end {self.end}")
        if self.reference_time is not None:
            parse_time(self.reference_time)
        return self

    @field_validator("start", "end", "reference_time")
    @classmethod
    def _iso(cls, value: str | None) -> str | None:
        if value is not None:
            parse_time(value)
        return value

    def resolve(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        """Return the concrete ``(start, end)`` in UTC."""
        if self.last_days is None:
            return parse_time(self.start or ""), parse_time(self.end or "")
        ref = parse_time(self.reference_time) if self.reference_time else (now or datetime.now(UTC))
        if self.truncate_to == "hour":
            ref = ref.replace(minute=0, second=0, microsecond=0)
        elif self.truncate_to == "day":
            ref = ref.replace(hour=0, minute=0, second=0, microsecond=0)
        return ref - timedelta(days=self.last_days), ref

    def freshness_reference(self, now: datetime | None = None) -> datetime:
        """The time the newest event's age is measured against (untruncated reference, or the explicit end)."""
        if self.last_days is None:
            return parse_time(self.end or "")
        return parse_time(self.reference_time) if self.reference_time else (now or datetime.now(UTC))


class EventWeight(_Model):
    """Weight of one event type in the interaction strength."""

    event_type: str = Field(description="Value of the events' `event_type` column, e.g. `purchase`.")
    weight: NonNegFloat = Field(description="Strength added per event of this type (before decay).")


def _default_weights() -> list[EventWeight]:
    return [
        EventWeight(event_type="view", weight=1.0),
        EventWeight(event_type="add_to_cart", weight=3.0),
        EventWeight(event_type="purchase", weight=5.0),
    ]


class Features(_Model):
    """Parameters of the built-in transform."""

    event_weights: list[EventWeight] = Field(
        default_factory=_default_weights,
        description="Per event type weight; event types not listed weigh 0 (still counted in activity).",
    )
    half_life_days: NonNegFloat = Field(
        7.0, description="Exponential time-decay half-life in days, measured from the window end; 0 = no decay."
    )
    price_bands: list[NonNegFloat] = Field(
        default_factory=lambda: [10.0, 25.0, 50.0, 100.0, 250.0],
        description="Ascending price edges for the item `price_band` feature (band i is [edge i-1, edge i)).",
    )

    @field_validator("event_weights")
    @classmethod
    def _unique_types(cls, value: list[EventWeight]) -> list[EventWeight]:
        names = [w.event_type for w in value]
        if len(set(names)) != len(names):
            raise ValueError(f"eventWeights lists an event type twice: {names}")
        return value

    @field_validator("price_bands")
    @classmethod
    def _ascending(cls, value: list[float]) -> list[float]:
        if any(b <= a for a, b in itertools.pairwise(value)):
            raise ValueError(f"priceBands must be strictly ascending, got {value}")
        return value


class Transform(_Model):
    """Which transform computes the snapshot tables."""

    mode: Literal["builtin", "custom", "builtinThenCustom"] = Field(
        "builtin",
        description="`builtin`: the standard features. `custom`: only `function`, given the input frames "
        "(events, catalog, profiles). `builtinThenCustom`: `function` gets the built-in tables plus the inputs.",
    )
    function: str | None = Field(
        None,
        description="`package.module:function` taking `(frames: dict[str, DataFrame], context)` (or just "
        "`frames`) and returning `dict[str, DataFrame]` of output tables.",
    )

    @model_validator(mode="after")
    def _function_when_custom(self) -> Transform:
        if self.mode != "builtin" and not self.function:
            raise ValueError(f"transform.function is required when transform.mode is {self.mode!r}")
        if self.function and not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", self.function):
            raise ValueError(f"transform.function {self.function!r} must look like 'package.module:function'")
        return self


class Output(_Model):
    """Where snapshots are published."""

    uri: str = Field(
        description="`s3://bucket/prefix` or a local directory; snapshots go to `<uri>/<version>/` and the "
        "pointer to the newest to `<uri>/latest.json`."
    )
    update_latest: bool = Field(True, description="Move `latest.json` to this snapshot after a successful publish.")


class MinRows(_Model):
    """Gate: a table must have at least ``min`` rows."""

    table: str = Field(description="Output table name, e.g. `interactions`.")
    min: int = Field(ge=0, description="Minimum number of rows.")


class MaxNullFraction(_Model):
    """Gate: at most ``max`` of a column's values may be null."""

    table: str = Field(description="Output table name.")
    column: str = Field("*", description="Column name, or `*` for every column of the table.")
    max: float = Field(ge=0, le=1, description='Maximum null fraction, 0..1 (e.g. `"0.05"`).')


class ColumnType(_Model):
    """An expected column and its type family."""

    name: str = Field(description="Column name.")
    type: Literal["int", "float", "number", "string", "bool", "timestamp", "date", "category", "any"] = Field(
        "any", description="Type family; `number` accepts int or float, `string` accepts categoricals."
    )


class TableSchema(_Model):
    """Gate: a table has (at least, or exactly) these columns with these types."""

    table: str = Field(description="Output table name.")
    columns: list[ColumnType] = Field(description="Expected columns.")
    allow_extra_columns: bool = Field(True, description="Whether columns not listed are accepted.")


class UniqueKey(_Model):
    """Gate: the key columns identify rows uniquely."""

    table: str = Field(description="Output table name.")
    columns: list[str] = Field(min_length=1, description="Key columns.")


class Quality(_Model):
    """Quality gates. A failing gate publishes nothing, keeps `latest.json` unchanged and exits 3."""

    min_rows: list[MinRows] = Field(
        default_factory=lambda: [MinRows(table="interactions", min=1)], description="Minimum rows per table."
    )
    max_null_fraction: list[MaxNullFraction] = Field(default_factory=list, description="Null-fraction limits.")
    schema_: list[TableSchema] = Field(
        default_factory=list, alias="schema", description="Expected columns and types per table."
    )
    max_event_age: str | None = Field(
        None,
        description="Freshness: the newest event in the window may be at most this old (e.g. `36h`), measured "
        "from the reference time (lastDays windows) or the window end (explicit windows).",
    )
    unique_keys: list[UniqueKey] | None = Field(
        None,
        description="Keys that must be unique; default: the built-in keys of the built-in tables present "
        "(interactions user_id+item_id, users user_id, items item_id). `[]` disables the check.",
    )

    @field_validator("max_event_age")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


class FeaturePipelineConfig(_Model):
    """The whole job configuration (`recops-features run --config FILE`)."""

    name: str = Field("features", description="Pipeline name, used in logs and the manifest.")
    sources: Sources = Field(description="Inputs.")
    window: Window = Field(description="Event-time window.")
    features: Features = Field(default_factory=Features, description="Built-in transform parameters.")
    transform: Transform = Field(default_factory=Transform, description="Built-in and/or custom transform.")
    output: Output = Field(description="Where to publish snapshots.")
    quality: Quality = Field(default_factory=Quality, description="Quality gates.")


def load_config(data: dict[str, Any]) -> FeaturePipelineConfig:
    """Validate a parsed JSON document (raises ``pydantic.ValidationError``)."""
    return FeaturePipelineConfig.model_validate(data)

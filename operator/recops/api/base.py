"""Building blocks shared by the four kinds: the API base model, references, conditions.

Conventions (Kubernetes API conventions, see ARCHITECTURE.md): camelCase JSON names, every field
described, no floats in a spec (decimals are strings), lists of named items rather than maps,
defaults in the schema, and status carrying `observedGeneration` and `conditions[]`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "recops.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
FINALIZER = f"{GROUP}/finalizer"
ANNOTATION_PREFIX = GROUP
CATEGORY = "recops"

# A decimal written as a string ("0.2", "1", "12.5"): floats never appear in a spec.
DECIMAL_PATTERN = r"^(0|[1-9][0-9]*)(\.[0-9]+)?$"
# A duration such as "90s", "15m", "6h", "7d".
DURATION_PATTERN = r"^[1-9][0-9]*(s|m|h|d)$"


def _cron_field(value: str) -> str:
    """One cron field as CronJob parses it: `*`, `?`, a value or a range, each with an optional step, listed
    with commas. No backslashes, so the same text is a Python, pydantic and CEL (RE2) regex."""
    item = f"([*?]|{value}(-{value})?)(/[1-9][0-9]*)?"
    return f"{item}(,{item})*"


_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
_DAYS = "SUN|MON|TUE|WED|THU|FRI|SAT"
# A five-field cron expression with every value in its range (minute 0-59, hour 0-23, day of month 1-31,
# month 1-12 or JAN-DEC, day of week 0-6 or SUN-SAT), or one of the @-macros CronJob understands.
CRON_PATTERN = (
    "^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|" + " +".join(_cron_field(value) for value in (
        "[0-5]?[0-9]", "([01]?[0-9]|2[0-3])", "(0?[1-9]|[12][0-9]|3[01])", f"(0?[1-9]|1[0-2]|{_MONTHS})",
        f"(0?[0-6]|{_DAYS})")) + ")$"
)
CRON_MESSAGE = ("schedule must be five cron fields within range (minute 0-59, hour 0-23, day of month 1-31, "
                "month 1-12 or JAN-DEC, day of week 0-6 or SUN-SAT), such as '0 3 * * *', or an @-macro such as "
                "@daily")

# A decimal string in [0, 1] ("0", "0.3", "1"); no backslash, so it also serves as a CEL regex.
FRACTION_PATTERN = r"^(0([.][0-9]+)?|1([.]0+)?)$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class ApiModel(BaseModel):
    """Base of every API type: camelCase on the wire, unknown fields refused, enums as values."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
        validate_default=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as the API server stores it (camelCase, no unset optional fields)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def cel(rule: str, message: str, *, reason: str | None = None, field_path: str | None = None) -> dict[str, Any]:
    """One `x-kubernetes-validations` entry."""
    entry: dict[str, Any] = {"rule": rule, "message": message}
    if reason:
        entry["reason"] = reason
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def matches(pattern: str, message: str) -> Callable[[str], str]:
    """A pydantic check of a string against `pattern`, failing with `message` (the CRD carries the same check as
    a CEL rule, `pattern_rule`, so that kubectl shows the message rather than the bare regex)."""
    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise ValueError(message)
        return value
    return check


def pattern_rule(pattern: str, message: str) -> dict[str, Any]:
    """`json_schema_extra` of a string field checked by a CEL regex with a message saying what to write. The
    pattern must not contain quotes or backslashes (it becomes a CEL string literal)."""
    assert "'" not in pattern and "\\" not in pattern, pattern
    return {"x-kubernetes-validations": [cel(f"self.matches('{pattern}')", message)]}


CRON_RANGE_MESSAGE = "schedule has a range that runs backwards, such as 30-10: use low-high, such as 10-30"


def cron_ranges_ascend(value: str) -> str:
    """A range's ends in order: 30-10 is within range but runs backwards (croniter would wrap it, CronJob refuses
    it). Not a CEL rule: splitting the fields costs 16.6x the API server's CEL budget, so the operator reports it
    (Ready=False, InvalidSpec)."""
    for part in (p for f in value.split(" ") for p in f.split(",")):
        if re.match(r"^[0-9]+-[0-9]+", part):
            low, high = part.split("/")[0].split("-")
            if int(low) > int(high):
                raise ValueError(CRON_RANGE_MESSAGE)
    return value


# A cron schedule (FeaturePipeline, DriftMonitor); maxLength bounds the CEL rule's cost.
Schedule = Annotated[str, AfterValidator(matches(CRON_PATTERN, CRON_MESSAGE)), AfterValidator(cron_ranges_ascend),
                     Field(max_length=128, json_schema_extra=pattern_rule(CRON_PATTERN, CRON_MESSAGE))]


class Backend(StrEnum):
    """Where a resource's work runs (see DESIGN.md, execution backends)."""

    KUBERNETES = "kubernetes"
    LOCAL = "local"
    ECS = "ecs"
    SAGEMAKER = "sagemaker"


class Toggle(StrEnum):
    """An on/off switch that can grow more values later (never a bool in a spec that may grow)."""

    ENABLED = "Enabled"
    DISABLED = "Disabled"


class SecretKeyRef(ApiModel):
    """A key in a Secret in the resource's namespace. Secrets are referenced, never written in a spec."""

    name: str = Field(description="Name of the Secret, in the same namespace.", pattern=DNS_SUBDOMAIN_PATTERN,
                      max_length=253)
    key: str = Field(description="Key inside the Secret's data.", min_length=1, max_length=253)


class SecretRef(ApiModel):
    """A whole Secret in the resource's namespace."""

    name: str = Field(description="Name of the Secret, in the same namespace.", pattern=DNS_SUBDOMAIN_PATTERN,
                      max_length=253)


class LocalObjectRef(ApiModel):
    """A reference to another Recops object in the same namespace."""

    name: str = Field(description="Name of the object, in the same namespace.", pattern=DNS_SUBDOMAIN_PATTERN,
                      max_length=253)


class NamedValue(ApiModel):
    """A named string value (parameters, metrics): lists of named items rather than maps."""

    name: str = Field(description="Name.", min_length=1, max_length=128)
    value: str = Field(description="Value, as a string (decimals are strings, never floats).", max_length=1024)


class ResourceRequirements(ApiModel):
    """CPU and memory for the workload's container, in Kubernetes quantities."""

    cpu_request: str = Field("250m", description="CPU request, e.g. `250m` or `1`.")
    memory_request: str = Field("512Mi", description="Memory request, e.g. `512Mi`.")
    cpu_limit: str | None = Field(None, description="CPU limit; unset means none.")
    memory_limit: str = Field("2Gi", description="Memory limit, e.g. `2Gi`.")


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(ApiModel):
    """The state of one aspect of the object, as in metav1.Condition."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True,
                              use_enum_values=True)

    type: str = Field(description="Type of condition in CamelCase, e.g. `Ready`.")
    status: ConditionStatus = Field(description="`True`, `False` or `Unknown`.")
    reason: str = Field(description="Machine-readable CamelCase reason for the last transition.")
    message: str = Field("", description="Human-readable message: what happened and what to do.")
    last_transition_time: str = Field(description="When the status last changed (RFC 3339).")
    observed_generation: int | None = Field(None, description="The .metadata.generation this was computed for.")


class StatusBase(ApiModel):
    """Status fields every kind has."""

    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True,
                              use_enum_values=True)

    observed_generation: int | None = Field(None, description="The .metadata.generation last reconciled.")
    conditions: list[Condition] = Field(default_factory=list, description="Current conditions of the object.")


class PrinterColumn(ApiModel):
    """One `additionalPrinterColumns` entry."""

    name: str
    type: str
    json_path: str
    description: str = ""
    priority: int = 0
    format: str | None = None


class KindInfo(BaseModel):
    """What the CRD generator needs besides the spec and status models."""

    kind: str
    plural: str
    singular: str
    short_names: list[str]
    printer_columns: list[PrinterColumn]
    description: str
    spec_validations: list[dict[str, Any]] = []
    scale: dict[str, str] | None = None
    owner: str = ""


class RecopsObject(ApiModel):
    """A whole custom object: metadata (opaque here), spec and status."""

    info: ClassVar[KindInfo]

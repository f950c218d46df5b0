"""Building blocks shared by the four kinds: the API base model, references, conditions.

Conventions (Kubernetes API conventions, see ARCHITECTURE.md): camelCase JSON names, every field
described, no floats in a spec (decimals are strings), lists of named items rather than maps,
defaults in the schema, and status carrying `observedGeneration` and `conditions[]`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field
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
# A standard five-field cron expression or one of the @-macros CronJob understands.
CRON_PATTERN = (
    r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)"
    r"|([0-9*,/?LW#-]+|[A-Z]{3}(-[A-Z]{3})?)(\s+([0-9*,/?LW#-]+|[A-Z]{3}(-[A-Z]{3})?)){4})$"
)
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

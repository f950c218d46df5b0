"""The training job's configuration: one JSON document (camelCase keys, unknown keys rejected).

The operator maps a ``TrainingRun`` spec onto :class:`TrainConfig` and runs
``recops-train run --config FILE``. Credentials never appear here (``MLFLOW_TRACKING_URI``,
``MLFLOW_TRACKING_TOKEN``, ``AWS_*`` come from the environment). Numbers that are fractions are
strings or numbers (``"0.01"``) so a CRD without floats maps 1:1.

Example::

    {
      "runKey": "3f2c...-7",
      "snapshot": {"uri": "s3://features/clickstream/sha256-ab12..."},
      "algorithm": {"name": "itemknn", "params": {"neighbors": 100, "shrink": "10"}},
      "evaluation": {"holdoutDays": 7, "ks": [5, 10, 20]},
      "promotion": {"metric": "ndcg_at_10", "margin": "0.01", "alias": "champion"},
      "mlflow": {"experimentName": "recops/shop", "registeredModelName": "shop-recommender"}
    }
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from .algorithms import validate_params
from .errors import InvalidInput
from .evaluation import metric_names

_MARGIN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$")
_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
LOWER_IS_BETTER = ("popularity_bias",)


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class SnapshotRef(_Model):
    """Which feature snapshot to train on."""

    uri: str = Field(
        min_length=1,
        description="Snapshot directory or `s3://bucket/prefix` (holding manifest.json), or the FeaturePipeline's "
        "output root (then `latest.json` names the snapshot).",
    )
    version: str | None = Field(None, description="Expected snapshot version (content digest); a mismatch is an error.")


class AlgorithmSpec(_Model):
    """The recommender and its parameters (validated per algorithm)."""

    name: str = Field(description="One of: popularity, itemknn, puresvd, ease, rp3beta.")
    params: dict[str, Any] = Field(default_factory=dict, description="Algorithm parameters (camelCase).")
    weighting: Literal["binary", "strength", "log1p"] = Field(
        "log1p", description="How interaction strength enters the user x item matrix."
    )

    @model_validator(mode="after")
    def _params_valid(self) -> AlgorithmSpec:
        validate_params(self.name, self.params)  # raises InvalidInput naming the parameter
        return self


class EvaluationSpec(_Model):
    """The temporal holdout."""

    holdout_days: int = Field(7, ge=1, le=365, description="The last N days (by event time) are the test period.")
    ks: list[int] = Field(default_factory=lambda: [5, 10, 20], min_length=1, description="Cut-offs for metrics @k.")
    max_users: int = Field(50_000, ge=1, description="Evaluate at most this many users (seeded sample).")

    @field_validator("ks")
    @classmethod
    def _ks(cls, v: list[int]) -> list[int]:
        if any(k < 1 or k > 1000 for k in v):
            raise ValueError(f"every k must be within 1..1000, got {v}")
        return sorted(set(v))


class PromotionSpec(_Model):
    """The gate that moves the alias to the new version."""

    policy: Literal["ifBetter", "always", "never"] = Field(
        "ifBetter",
        description="ifBetter: promote when the run beats the popularity baseline and the current champion by "
        "margin; always: promote unconditionally; never: only register.",
    )
    alias: str = Field("champion", description="Registered-model alias to move.")
    metric: str = Field("ndcg_at_10", description="Metric compared, e.g. ndcg_at_10, recall_at_20_repeat.")
    margin: str = Field(
        "0", description="How much the run must beat the champion by: absolute ('0.01') or relative ('2%')."
    )

    @field_validator("alias")
    @classmethod
    def _alias(cls, v: str) -> str:
        if not _ALIAS.match(v):
            raise ValueError(f"alias {v!r} must start with a letter and hold only letters, digits, '-' and '_'")
        if v.lower() == "latest" or re.match(r"^v\d+$", v):
            raise ValueError(f"alias {v!r} is reserved by MLflow")
        return v

    @field_validator("margin", mode="before")
    @classmethod
    def _margin(cls, v: Any) -> str:
        text = str(v)
        if not _MARGIN.match(text):
            raise ValueError(f"margin {v!r} must be a non-negative decimal such as '0.01' or a percentage such as '2%'")
        return text.strip()

    def margin_value(self) -> tuple[Decimal, bool]:
        """(amount, relative)."""
        m = _MARGIN.match(self.margin)
        assert m is not None
        try:
            return Decimal(m.group(1)), m.group(2) == "%"
        except InvalidOperation as exc:  # pragma: no cover - the regex already guards
            raise InvalidInput(f"promotion.margin {self.margin!r} is not a number") from exc


class MlflowSpec(_Model):
    """Where the run and the model go (the tracking URI comes from env MLFLOW_TRACKING_URI)."""

    experiment_name: str = Field("recops", min_length=1, description="MLflow experiment (created if missing).")
    registered_model_name: str = Field(min_length=1, description="Registered model to add a version to.")
    run_name: str | None = Field(None, description="Display name of the MLflow run (default: algorithm-runKey).")
    tags: dict[str, str] = Field(default_factory=dict, description="Extra tags for the run (e.g. the CR name).")


class TrainConfig(_Model):
    """The whole job configuration."""

    run_key: str = Field(
        min_length=1,
        max_length=250,
        description="Idempotency key (the operator uses CR uid + generation): a rerun with the same key reuses "
        "the run and never registers a second model version.",
    )
    snapshot: SnapshotRef
    algorithm: AlgorithmSpec
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    promotion: PromotionSpec = Field(default_factory=PromotionSpec)
    mlflow: MlflowSpec
    seed: int = Field(0, ge=0, description="Seed of every random choice (deterministic reruns).")
    refit: Literal["full", "holdout"] = Field(
        "full",
        description="full: the registered model is refitted on the whole snapshot after evaluation; holdout: the "
        "evaluated model (trained before the cut) is registered as is.",
    )

    @model_validator(mode="after")
    def _metric_exists(self) -> TrainConfig:
        names = metric_names(self.evaluation.ks)
        if self.promotion.metric not in names:
            base = self.promotion.metric.split("_at_")[0]
            hint = [n for n in names if n.startswith(base)][:6] or names[:6]
            raise InvalidInput(
                f"promotion.metric {self.promotion.metric!r} is not a metric this run computes (with "
                f"evaluation.ks={self.evaluation.ks}); use e.g. {', '.join(hint)}",
                reason="UnknownMetric",
            )
        if self.promotion.metric.split("_at_")[0] in LOWER_IS_BETTER:
            raise InvalidInput(
                f"promotion.metric {self.promotion.metric!r} is lower-is-better and cannot gate promotion; "
                "use a ranking metric such as ndcg_at_10",
                reason="UnknownMetric",
            )
        return self


def parse_config(data: Any) -> TrainConfig:
    """Validate a JSON document; every problem becomes ``InvalidInput`` naming the field."""
    if not isinstance(data, dict):
        raise InvalidInput("the config must be a JSON object", reason="InvalidConfig")
    try:
        return TrainConfig.model_validate(data)
    except InvalidInput:
        raise
    except ValidationError as exc:
        # an InvalidInput raised inside a validator arrives wrapped: surface it unchanged
        for err in exc.errors():
            ctx_err = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_err, InvalidInput):
                raise ctx_err from None
        problems = []
        for err in exc.errors():
            where = ".".join(str(x) for x in err["loc"]) or "(root)"
            if err["type"] == "extra_forbidden":
                problems.append(f"{where} is not a known field")
            elif err["type"] == "missing":
                problems.append(f"{where} is required")
            else:
                problems.append(f"{where}: {err['msg']}")
        raise InvalidInput("invalid config: " + "; ".join(problems), reason="InvalidConfig") from None

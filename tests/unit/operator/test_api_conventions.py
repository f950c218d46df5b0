"""The API types follow the Kubernetes API conventions we promise in DESIGN.md."""

from __future__ import annotations

import typing
from enum import Enum

import pytest
from pydantic import BaseModel
from recops.api import KINDS

# Bools that are established Kubernetes idiom and will not grow (CronJob.spec.suspend).
ALLOWED_BOOLS = {"FeaturePipelineSpec.suspend"}


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    seen: dict[str, type[BaseModel]] = {}
    pending = [root]
    while pending:
        model = pending.pop()
        if model.__name__ in seen:
            continue
        seen[model.__name__] = model
        for field in model.model_fields.values():
            pending.extend(_inner_models(field.annotation))
    return list(seen.values())


def _inner_models(annotation: typing.Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in _inner_models(a)]


def _leaf_types(annotation: typing.Any) -> set[typing.Any]:
    args = typing.get_args(annotation)
    if not args:
        return {annotation}
    return {t for a in args for t in _leaf_types(a)}


SPEC_MODELS = sorted({m for _, _, spec, _ in KINDS for m in _models(spec)}, key=lambda m: m.__name__)
ALL_MODELS = sorted({m for _, _, spec, status in KINDS for m in _models(spec) + _models(status)},
                    key=lambda m: m.__name__)


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_every_field_is_described(model: type[BaseModel]) -> None:
    missing = [name for name, f in model.model_fields.items() if not (f.description or "").strip()]
    assert not missing, f"{model.__name__}: fields without description: {missing}"


@pytest.mark.parametrize("model", SPEC_MODELS, ids=lambda m: m.__name__)
def test_no_floats_in_spec(model: type[BaseModel]) -> None:
    floats = [n for n, f in model.model_fields.items() if float in _leaf_types(f.annotation)]
    assert not floats, f"{model.__name__}: use decimal strings instead of floats for {floats}"


@pytest.mark.parametrize("model", SPEC_MODELS, ids=lambda m: m.__name__)
def test_no_bools_that_may_grow(model: type[BaseModel]) -> None:
    bools = [f"{model.__name__}.{n}" for n, f in model.model_fields.items() if bool in _leaf_types(f.annotation)]
    assert set(bools) <= ALLOWED_BOOLS, f"use an enum (e.g. Enabled/Disabled) instead of bools: {bools}"


@pytest.mark.parametrize("model", SPEC_MODELS, ids=lambda m: m.__name__)
def test_lists_of_named_items_not_maps(model: type[BaseModel]) -> None:
    maps = [n for n, f in model.model_fields.items()
            if typing.get_origin(f.annotation) is dict or dict in _leaf_types(f.annotation)]
    assert not maps, f"{model.__name__}: use lists of named items instead of maps: {maps}"
    for name, field in model.model_fields.items():
        if typing.get_origin(field.annotation) is list:
            (item,) = typing.get_args(field.annotation)
            if isinstance(item, type) and issubclass(item, BaseModel):
                extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
                assert extra.get("x-kubernetes-list-type") == "map", (
                    f"{model.__name__}.{name}: a list of objects needs x-kubernetes-list-type: map and map keys")


@pytest.mark.parametrize("model", SPEC_MODELS, ids=lambda m: m.__name__)
def test_spec_enums_are_camel_or_lower_values(model: type[BaseModel]) -> None:
    for name, field in model.model_fields.items():
        for leaf in _leaf_types(field.annotation):
            if isinstance(leaf, type) and issubclass(leaf, Enum):
                assert all(" " not in str(v.value) for v in leaf), f"{model.__name__}.{name}"


def test_status_has_observed_generation_and_conditions() -> None:
    for info, _, _, status in KINDS:
        assert {"observed_generation", "conditions"} <= set(status.model_fields), info.kind


def test_no_phase_field() -> None:
    for model in ALL_MODELS:
        assert "phase" not in model.model_fields, f"{model.__name__}: conditions, not phase"


def test_no_secret_values_in_specs() -> None:
    """Credentials are referenced by Secret name/key only: no field may look like it holds one."""
    suspicious = ("password", "secret_key", "access_key", "token", "dsn")
    for model in SPEC_MODELS:
        for name in model.model_fields:
            if any(s in name for s in suspicious):
                assert name.endswith("_ref"), f"{model.__name__}.{name}: reference a Secret instead"

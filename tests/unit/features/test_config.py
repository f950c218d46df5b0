"""The job's config model: camelCase, unknown keys rejected, numbers as strings, windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from recops_features.config import FeaturePipelineConfig, load_config, parse_duration, parse_time

BASE = {
    "sources": {"events": {"uri": "s3://lake/events"}},
    "window": {"lastDays": 7},
    "output": {"uri": "s3://features/x"},
}


def test_defaults() -> None:
    cfg = load_config(BASE)
    assert [(w.event_type, w.weight) for w in cfg.features.event_weights] == [
        ("view", 1.0),
        ("add_to_cart", 3.0),
        ("purchase", 5.0),
    ]
    assert cfg.features.half_life_days == 7.0 and cfg.transform.mode == "builtin"
    assert cfg.quality.min_rows[0].table == "interactions" and cfg.quality.unique_keys is None
    assert cfg.output.update_latest is True


def test_unknown_key_is_an_error_naming_the_field() -> None:
    with pytest.raises(ValidationError) as err:
        load_config({**BASE, "window": {"lastDay": 7}})
    assert "lastDay" in str(err.value)


def test_numbers_may_be_strings_like_in_a_crd() -> None:
    cfg = load_config(
        {
            **BASE,
            "features": {"halfLifeDays": "3.5", "eventWeights": [{"eventType": "view", "weight": "0.5"}]},
            "quality": {
                "maxNullFraction": [{"table": "users", "column": "segment", "max": "0.05"}],
                "minRows": [{"table": "users", "min": "10"}],
            },
        }
    )
    assert cfg.features.half_life_days == 3.5 and cfg.features.event_weights[0].weight == 0.5
    assert cfg.quality.max_null_fraction[0].max == 0.05 and cfg.quality.min_rows[0].min == 10


@pytest.mark.parametrize(
    "window",
    [
        {},
        {"start": "2026-11-01"},
        {"start": "2026-11-02", "end": "2026-11-01"},
        {"start": "2026-11-01", "end": "2026-11-02", "lastDays": 3},
        {"lastDays": 0},
        {"start": "yesterday", "end": "x"},
    ],
)
def test_bad_windows(window: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        load_config({**BASE, "window": window})


def test_last_days_window_is_truncated_for_reproducible_reruns() -> None:
    cfg = load_config({**BASE, "window": {"lastDays": 2}})
    now = datetime(2026, 11, 29, 10, 42, 7, tzinfo=UTC)
    start, end = cfg.window.resolve(now)
    assert end == datetime(2026, 11, 29, 10, tzinfo=UTC) and end - start == timedelta(days=2)
    assert cfg.window.freshness_reference(now) == now
    day = load_config({**BASE, "window": {"lastDays": 1, "truncateTo": "day", "referenceTime": "2026-11-29T10:00:00Z"}})
    assert day.window.resolve() == (datetime(2026, 11, 28, tzinfo=UTC), datetime(2026, 11, 29, tzinfo=UTC))


def test_explicit_window_and_freshness_reference() -> None:
    cfg = load_config({**BASE, "window": {"start": "2026-11-01", "end": "2026-11-08T00:00:00+01:00"}})
    start, end = cfg.window.resolve()
    assert start == datetime(2026, 11, 1, tzinfo=UTC) and end == datetime(2026, 11, 7, 23, tzinfo=UTC)
    assert cfg.window.freshness_reference() == end


def test_transform_function_required_and_well_formed() -> None:
    with pytest.raises(ValidationError, match=r"transform\.function is required"):
        load_config({**BASE, "transform": {"mode": "custom"}})
    with pytest.raises(ValidationError, match=r"package\.module:function"):
        load_config({**BASE, "transform": {"mode": "custom", "function": "os.system"}})
    assert load_config({**BASE, "transform": {"mode": "custom", "function": "pkg.mod:fn"}}).transform.function


def test_profiles_need_exactly_one_source_and_a_plain_table_name() -> None:
    for profiles in ({}, {"table": "t", "uri": "/x"}, {"table": "users; drop table x"}):
        with pytest.raises(ValidationError):
            load_config({**BASE, "sources": {**BASE["sources"], "profiles": profiles}})  # type: ignore[dict-item]
    assert load_config({**BASE, "sources": {**BASE["sources"], "profiles": {"table": "crm.user_profiles"}}})


def test_quality_duration_and_weights_validation() -> None:
    with pytest.raises(ValidationError):
        load_config({**BASE, "quality": {"maxEventAge": "soon"}})
    with pytest.raises(ValidationError, match="twice"):
        load_config({**BASE, "features": {"eventWeights": [{"eventType": "view", "weight": 1}] * 2}})
    with pytest.raises(ValidationError, match="ascending"):
        load_config({**BASE, "features": {"priceBands": [10, 5]}})


def test_parsers() -> None:
    assert parse_duration("36h") == timedelta(hours=36) and parse_duration("1.5d") == timedelta(hours=36)
    assert parse_time("2026-11-01").tzinfo is not None
    with pytest.raises(ValueError):
        parse_duration("36")


def test_json_schema_is_exportable_for_the_operator() -> None:
    schema = FeaturePipelineConfig.model_json_schema(by_alias=True)
    assert "sources" in schema["properties"] and "lastDays" in str(schema)

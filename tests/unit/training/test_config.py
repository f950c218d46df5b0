"""The config model: camelCase, unknown keys rejected with the field named, metric names checked."""

from __future__ import annotations

from decimal import Decimal

import pytest
from recops_training.config import parse_config
from recops_training.errors import InvalidInput


def base(**over):
    cfg = {
        "runKey": "uid-1",
        "snapshot": {"uri": "/tmp/snap"},
        "algorithm": {"name": "itemknn", "params": {"neighbors": 20}},
        "mlflow": {"registeredModelName": "recs"},
    }
    cfg.update(over)
    return cfg


def test_defaults():
    cfg = parse_config(base())
    assert cfg.evaluation.ks == [5, 10, 20]
    assert cfg.promotion.metric == "ndcg_at_10" and cfg.promotion.alias == "champion"
    assert cfg.promotion.margin_value() == (Decimal("0"), False)
    assert cfg.refit == "full" and cfg.algorithm.weighting == "log1p"


def test_unknown_field_is_named():
    with pytest.raises(InvalidInput) as e:
        parse_config(base(evaluation={"holdoutDayz": 3}))
    assert "evaluation.holdoutDayz is not a known field" in e.value.message
    assert e.value.exit_code == 2


def test_missing_field_is_named():
    cfg = base()
    del cfg["runKey"]
    with pytest.raises(InvalidInput) as e:
        parse_config(cfg)
    assert "runKey is required" in e.value.message


def test_unknown_metric_names_the_field_and_suggests():
    with pytest.raises(InvalidInput) as e:
        parse_config(base(promotion={"metric": "ndcg_at_50"}))
    assert e.value.reason == "UnknownMetric"
    assert "promotion.metric 'ndcg_at_50'" in e.value.message and "ndcg_at_10" in e.value.message
    with pytest.raises(InvalidInput):
        parse_config(base(promotion={"metric": "auc"}))
    with pytest.raises(InvalidInput) as e:
        parse_config(base(promotion={"metric": "popularity_bias_at_10"}))
    assert "lower-is-better" in e.value.message


def test_metric_exists_with_custom_ks():
    cfg = parse_config(base(evaluation={"ks": [50, 5]}, promotion={"metric": "recall_at_50_repeat", "margin": "2%"}))
    assert cfg.evaluation.ks == [5, 50]
    assert cfg.promotion.margin_value() == (Decimal("2"), True)


def test_bad_algorithm_param_surfaces_unwrapped():
    with pytest.raises(InvalidInput) as e:
        parse_config(base(algorithm={"name": "itemknn", "params": {"k": 3}}))
    assert e.value.reason == "InvalidAlgorithmParams" and "algorithm.params.k" in e.value.message
    with pytest.raises(InvalidInput) as e:
        parse_config(base(algorithm={"name": "nope"}))
    assert e.value.reason == "UnknownAlgorithm"


@pytest.mark.parametrize("margin", ["-0.1", "abc", "1e-3", "0.1%%"])
def test_bad_margin(margin):
    with pytest.raises(InvalidInput) as e:
        parse_config(base(promotion={"margin": margin}))
    assert "promotion.margin" in e.value.message


def test_reserved_alias():
    with pytest.raises(InvalidInput) as e:
        parse_config(base(promotion={"alias": "latest"}))
    assert "promotion.alias" in e.value.message

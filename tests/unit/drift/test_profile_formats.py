"""Reference profiles from the feature snapshot manifest and the TrainingRun's document; the report."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from recops_drift import stats as S
from recops_drift.profile import (
    categorical_from_counts,
    histogram_bins,
    load_reference_document,
    numeric_from_histogram,
    numeric_from_quantiles,
    profile_from_manifest,
)
from recops_drift.report import render_html

ROOT = Path(__file__).resolve().parents[3]


def _column_stats():  # type: ignore[no-untyped-def]
    if str(ROOT / "feature-jobs") not in sys.path:
        sys.path.insert(0, str(ROOT / "feature-jobs"))
    snapshot = pytest.importorskip("recops_features.snapshot")
    return snapshot.column_stats


def test_manifest_from_the_feature_job_becomes_a_profile() -> None:
    pd = pytest.importorskip("pandas")
    column_stats = _column_stats()
    rng = np.random.default_rng(3)
    users = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(20_000)],
            "n_events": rng.poisson(20, 20_000),
            "spend": rng.lognormal(3, 1, 20_000),
            "segment": rng.choice(["new", "casual", "loyal"], p=[0.2, 0.5, 0.3], size=20_000),
            "signup": pd.date_range("2025-01-01", periods=20_000, freq="min"),
        }
    )
    manifest = {
        "format": "recops.features/v1",
        "version": "sha256:x",
        "tables": {
            "users": {
                "file": "users.parquet",
                "rows": 20_000,
                "stats": {c: column_stats(users[c], is_key=c == "user_id") for c in users.columns},
            }
        },
    }
    prof = profile_from_manifest(manifest)
    assert set(prof.features) == {"users.n_events", "users.spend", "users.segment"}
    seg = prof.features["users.segment"]
    assert isinstance(seg, S.CategoricalProfile) and seg.categories[0] == "casual"
    spend = prof.features["users.spend"]
    assert isinstance(spend, S.NumericProfile) and spend.bin_counts.sum() == 20_000 and not spend.exact
    same = {
        "users.n_events": rng.poisson(20, 5000).astype(float),
        "users.spend": rng.lognormal(3, 1, 5000),
        "users.segment": rng.choice(["new", "casual", "loyal"], p=[0.2, 0.5, 0.3], size=5000),
    }
    result = S.compare(prof, same, S.DriftSpec())
    assert result.status == S.NO_DRIFT, [(f.name, f.score) for f in result.features]
    shifted = {
        "users.n_events": rng.poisson(30, 5000).astype(float),
        "users.spend": rng.lognormal(3.5, 1, 5000),
        "users.segment": rng.choice(["new", "casual", "loyal", "vip"], p=[0.5, 0.2, 0.1, 0.2], size=5000),
    }
    result = S.compare(prof, shifted, S.DriftSpec())
    assert result.drifted and set(result.drifted_features) == set(shifted)


def test_training_document_with_snapshot_tables() -> None:
    column_stats = _column_stats()
    pd = pytest.importorskip("pandas")
    items = pd.DataFrame({"item_id": ["a", "b", "c"] * 100, "price": np.arange(300, dtype=float)})
    doc = {
        "kind": "RecopsReferenceProfile",
        "formatVersion": 1,
        "snapshot": {"version": "v9"},
        "tables": {"items": {"stats": {c: column_stats(items[c], is_key=c == "item_id") for c in items}}},
        "predictions": {"k": 10, "users": 100, "categoryShare": {"x": 1.0}},
    }
    prof = load_reference_document(doc)
    assert set(prof.features) == {"items.price", "output.category"}
    assert prof.source["snapshotVersion"] == "v9"


def test_quantile_sketch_profile_bins_are_the_quantiles() -> None:
    prof = numeric_from_quantiles("x", [(0.25, 1.0), (0.5, 2.0), (0.75, 3.0)], count=1000, minimum=0.0, maximum=4.0)
    assert prof.edges.tolist() == [1.0, 2.0, 3.0]
    assert prof.bin_counts.tolist() == [250, 250, 250, 250]
    assert prof.sample[0] == 0.0 and prof.sample[-1] == 4.0
    # ties at a value: the duplicated quantile is dropped, its mass stays in the bin
    tied = numeric_from_quantiles("t", [(0.25, 0.0), (0.5, 0.0), (0.75, 3.0)], count=100, minimum=0.0, maximum=5.0)
    assert tied.edges.tolist() == [3.0] and tied.bin_counts.tolist() == [75, 25]
    hist = numeric_from_histogram("h", [0.0, 1.0, 2.0, 4.0], [10, 30, 60])
    assert hist.edges.tolist() == pytest.approx([1.0, 2.0], abs=1e-5) and hist.bin_counts.tolist() == [10, 30, 60]
    with pytest.raises(S.ProfileFormatError):
        numeric_from_quantiles("x", [(0.5, 1.0)], count=10)


def test_categorical_from_shares_keeps_the_rest_as_other() -> None:
    prof = categorical_from_counts("c", {"a": 0.5, "b": 0.3}, total=1000)
    assert prof.categories == ("a", "b") and prof.counts.tolist() == [500, 300, 200]


def test_rounded_shares_summing_to_a_little_more_than_one_stay_shares() -> None:
    """Ten shares written with 6 significant digits summed to 1.0000013: read as counts, every country
    became 0 and the whole reference ``__other__`` (PSI 16 on unchanged data, seen on synthetic data)."""
    shares = {"DE": 0.228543, "ES": 0.0648703, "FR": 0.135729, "GB": 0.162675, "IT": 0.0728543, "NL": 0.0618762}
    shares |= {"PL": 0.0429142, "SE": 0.0269461, "US": 0.162675, "other": 0.0409182}
    assert sum(shares.values()) > 1.000001
    prof = categorical_from_counts("users.country", shares, total=1002)
    assert prof.counts[-1] == 0 and prof.counts[:-1].sum() == 1002
    assert prof.counts[prof.categories.index("DE")] == 229


@pytest.mark.parametrize("seed", range(60))
def test_histogram_bins_count_every_value_where_the_feature_job_counted_it(seed: int) -> None:
    """Contract with ``recops_features.snapshot.column_stats``: its histogram, read by the check, gives
    the same counts per bin as a recount of the data with the check's own edges. Count features (point
    masses), rates (ties at fractions such as 1/13) and continuous values, at many sample sizes."""
    column_stats = _column_stats()
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 3000))
    kind = seed % 4
    if kind == 0:
        values = rng.geometric(0.3, size=n).astype(np.int64)
    elif kind == 1:
        values = np.where(rng.random(n) < 0.5, 0, rng.poisson(3, size=n)).astype(np.int64)
    elif kind == 2:
        views = rng.integers(1, 30, size=n)
        values = rng.binomial(views, 0.1) / views
    else:
        values = rng.lognormal(0, 1, size=n)
    stats = column_stats(pd.Series(values))
    edges, counts = stats["histogram"]["edges"], stats["histogram"]["counts"]
    inner, merged = histogram_bins(edges, counts)
    assert np.all(np.diff(inner) > 0) and merged.sum() == n
    recount = S.bin_counts_sorted(np.sort(values.astype(np.float32)), inner)
    if kind < 3:  # point masses: exact
        assert recount.tolist() == merged.tolist(), (edges, counts)
    else:  # continuous: a value within rounding of an edge may move, never more than one per edge
        assert np.abs(recount - merged).sum() <= 2 * inner.size


def test_histogram_bins_read_an_edge_a_hair_above_a_value_as_counting_it_below() -> None:
    # 351 values: the 0.3 decile sits at position 350 * 0.30000000000000004 = 105.00000000000001, a hair
    # above v[105] = 1 (the last 1), so the writer's bin [1, 1 + 1e-14) held all 106 ones.
    inner, merged = histogram_bins([1.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 60.0], [106, 0, 74, 45, 49, 31, 46])
    ones = S.bin_counts_sorted(np.asarray([1.0] * 106 + [2.0] * 74, dtype=np.float32), inner)
    assert ones.tolist()[:3] == merged.tolist()[:3] == [106, 0, 74]
    # the same cumulative count at an edge of an exact decile (0.5 * 322 = 161.0) is not moved
    inner, _ = histogram_bins([0.0, 1.0, 2.0, 5.0, 60.0], [162, 68, 58, 35])
    assert S.bin_counts_sorted(np.asarray([0.0] * 162 + [1.0] * 68, dtype=np.float32), inner).tolist()[:2] == [162, 68]


def test_unknown_document_is_refused() -> None:
    with pytest.raises(S.ProfileFormatError, match="neither"):
        load_reference_document({"hello": 1})
    with pytest.raises(S.ProfileFormatError):
        load_reference_document([1, 2])


def test_html_report_embeds_one_png_per_checked_feature_and_escapes() -> None:
    rng = np.random.default_rng(8)
    prof = S.prepare_profile({"a<b>": rng.normal(size=3000)}, {"c": rng.choice(["x", "y"], size=3000)})
    result = S.compare(prof, {"a<b>": rng.normal(0.5, 1, 1000), "c": ["x"] * 1000}, S.DriftSpec())
    page = render_html(result, title="Drift <report>", context={"monitor": "shop/recs"})
    assert page.startswith("<!doctype html>") and page.count("data:image/png;base64,") == 2
    assert "a&lt;b&gt;" in page and "<b>" not in page.replace("<body>", "")
    assert "Drift &lt;report&gt;" in page and "shop/recs" in page
    assert "<script" not in page
    assert render_html(result, plots=False).count("data:image/png") == 0

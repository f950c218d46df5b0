"""The built-in transform against a slow, obviously-correct pandas reference."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest
from recops_features.datagen import DriftSpec, GenerateSpec, generate
from recops_features.transform import (
    TransformParams,
    band_labels,
    build_features,
    decay_factors,
    dense_codes,
    distinct_per_group,
    price_band,
    radix_argsort,
)

REF = datetime(2026, 11, 29, tzinfo=UTC)


def _events(rows: list[tuple[int, int, str, str]], session: list[int] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "ts"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame["event_type"] = frame["event_type"].astype("category")
    frame["session_id"] = session if session is not None else range(len(frame))
    frame["price"] = 10.0
    return frame


def reference(events: pd.DataFrame, params: TransformParams) -> dict[str, pd.DataFrame]:
    """The definition, written plainly."""
    ev = events.copy()
    ev["event_type"] = ev["event_type"].astype(str)
    age = (pd.Timestamp(params.reference_time) - ev["ts"]).dt.total_seconds() / 86400
    ev["score"] = ev["event_type"].map(params.event_weights).fillna(0) * 0.5 ** (age / params.half_life_days)
    inter = (
        ev.groupby(["user_id", "item_id"])
        .agg(
            strength=("score", "sum"),
            views=("event_type", lambda s: int((s == "view").sum())),
            purchases=("event_type", lambda s: int((s == "purchase").sum())),
            last_ts=("ts", "max"),
        )
        .reset_index()
    )
    users = (
        ev.groupby("user_id")
        .agg(
            events=("ts", "size"),
            sessions=("session_id", "nunique"),
            distinct_items=("item_id", "nunique"),
            strength=("score", "sum"),
            avg_price=("price", "mean"),
            first_ts=("ts", "min"),
            last_ts=("ts", "max"),
        )
        .reset_index()
    )
    items = (
        ev.groupby("item_id")
        .agg(
            events=("ts", "size"),
            distinct_users=("user_id", "nunique"),
            popularity=("score", "sum"),
            last_ts=("ts", "max"),
        )
        .reset_index()
    )
    return {"interactions": inter, "users": users, "items": items}


def test_hand_computed_example() -> None:
    ev = _events(
        [
            (1, 10, "view", "2026-11-28T00:00:00Z"),  # 1 day old
            (1, 10, "purchase", "2026-11-22T00:00:00Z"),  # 7 days old: one half-life
            (2, 10, "add_to_cart", "2026-11-29T00:00:00Z"),
            (1, 20, "view", "2026-11-15T00:00:00Z"),  # 14 days: quarter weight
        ],
        session=[5, 5, 6, 7],
    )
    out = build_features(ev, TransformParams(reference_time=REF))
    inter = out["interactions"]
    assert inter[["user_id", "item_id"]].values.tolist() == [[1, 10], [1, 20], [2, 10]]
    assert inter["strength"].tolist() == pytest.approx([2 ** (-1 / 7) + 5 * 0.5, 0.25, 3.0])
    assert inter["views"].tolist() == [1, 1, 0] and inter["purchases"].tolist() == [1, 0, 0]
    assert inter["carts"].tolist() == [0, 0, 1]
    users = out["users"].set_index("user_id")
    assert users.loc[1, "events"] == 3 and users.loc[1, "sessions"] == 2 and users.loc[1, "distinct_items"] == 2
    assert users.loc[1, "purchase_value"] == 10.0
    assert users.loc[1, "recency_days"] == pytest.approx(1.0)
    items = out["items"].set_index("item_id")
    assert items.loc[10, "distinct_users"] == 2 and items.loc[10, "conversion_rate"] == 1.0
    assert items.loc[20, "conversion_rate"] == 0.0
    assert str(items.loc[10, "last_ts"]) == "2026-11-29 00:00:00+00:00"


@pytest.mark.parametrize("seed", [1, 2])
def test_matches_reference_on_generated_data(seed: int) -> None:
    data = generate(
        GenerateSpec(
            events=5000,
            days=10,
            end_date=date(2026, 11, 29),
            seed=seed,
            drift=DriftSpec(start=date(2026, 11, 25), bot_share=0.2),
        )
    )
    params = TransformParams(reference_time=REF, half_life_days=3.0)
    got = build_features(data.events, params)
    want = reference(data.events, params)
    for table, cols in {
        "interactions": ["strength", "views", "purchases"],
        "users": ["events", "sessions", "distinct_items", "strength"],
        "items": ["events", "distinct_users", "popularity"],
    }.items():
        key = "item_id" if table == "items" else "user_id"
        assert got[table][key].tolist() == want[table][key].tolist()
        for col in cols:
            np.testing.assert_allclose(got[table][col].to_numpy(float), want[table][col].to_numpy(float), rtol=1e-9)
        assert (got[table]["last_ts"].to_numpy() == want[table]["last_ts"].to_numpy()).all()
    assert (got["users"]["first_ts"].to_numpy() == want["users"]["first_ts"].to_numpy()).all()
    # avg_price is rounded to cents: within half a cent of the exact mean
    np.testing.assert_allclose(got["users"]["avg_price"], want["users"]["avg_price"], rtol=0, atol=0.005 + 1e-9)


def test_row_order_of_input_does_not_change_output() -> None:
    data = generate(GenerateSpec(events=3000, days=5, end_date=date(2026, 11, 29), seed=4))
    params = TransformParams(reference_time=REF, half_life_days=0)  # no decay: sums of integers, order-proof
    a = build_features(data.events, params)
    b = build_features(data.events.sample(frac=1.0, random_state=0), params)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name])


def test_profiles_and_catalog_are_joined() -> None:
    ev = _events([(1, 10, "view", "2026-11-28T00:00:00Z"), (3, 11, "view", "2026-11-28T00:00:00Z")])
    profiles = pd.DataFrame(
        {"user_id": [1, 2], "segment": ["loyal", "casual"], "signup_date": [date(2026, 11, 19), date(2026, 1, 1)]}
    )
    catalog = pd.DataFrame({"item_id": [10, 11], "category": ["books", "toys"], "price": [9.5, 300.0]})
    out = build_features(ev, TransformParams(reference_time=REF), catalog, profiles)
    users = out["users"].set_index("user_id")
    assert users.loc[1, "segment"] == "loyal" and pd.isna(users.loc[3, "segment"])
    assert users.loc[1, "tenure_days"] == pytest.approx(10.0)
    items = out["items"].set_index("item_id")
    assert items["price_band"].astype(str).tolist() == ["<10", ">=250"]
    assert items.loc[11, "category"] == "toys"
    inter = out["interactions"]
    assert inter["category"].astype(str).tolist() == ["books", "toys"]  # the pair's item's category


def test_traffic_category_mix_and_average_price() -> None:
    """interactions.category weighs categories by traffic (one row per user x item); users.avg_price is the
    mean price over a user's priced events: what category-mix and price drift move."""
    ev = _events(
        [
            (1, 10, "view", "2026-11-28T00:00:00Z"),
            (1, 10, "purchase", "2026-11-28T01:00:00Z"),
            (2, 10, "view", "2026-11-28T00:00:00Z"),
            (2, 12, "view", "2026-11-28T00:00:00Z"),
            (3, 11, "view", "2026-11-28T00:00:00Z"),
        ]
    )
    ev["price"] = [20.0, 30.0, 20.0, np.nan, 5.0]
    catalog = pd.DataFrame({"item_id": [10, 11, 13], "category": ["books", "toys", "games"], "price": [20.0, 5.0, 1.0]})
    out = build_features(ev, TransformParams(reference_time=REF), catalog)
    inter = out["interactions"]
    assert inter["category"].astype(object).where(inter["category"].notna(), None).tolist() == [
        "books", "books", None, "toys"]  # item 12 is not in the catalogue
    assert inter["category"].value_counts()["books"] == 2  # a catalogue item counts once per user who used it
    users = out["users"].set_index("user_id")
    assert users["avg_price"].tolist() == [25.0, 20.0, 5.0]  # NaN prices do not count
    no_price = build_features(ev.assign(price=np.nan), TransformParams(reference_time=REF))
    assert no_price["users"]["avg_price"].isna().all()


def test_string_ids_and_unknown_event_types() -> None:
    ev = _events([(1, 1, "view", "2026-11-28T00:00:00Z")])
    ev["user_id"] = ["u-1"]
    ev["item_id"] = ["sku-9"]
    ev["event_type"] = pd.Categorical(["wishlist"])
    out = build_features(ev, TransformParams(reference_time=REF))
    assert out["interactions"]["user_id"].tolist() == ["u-1"]
    assert out["interactions"]["strength"].tolist() == [0.0]  # unlisted types weigh 0
    assert out["users"]["events"].tolist() == [1]


def test_dense_codes_direct_and_hashed_paths() -> None:
    codes, uniques = dense_codes(np.array([7, 3, 7, 100]))
    assert codes.tolist() == [1, 0, 1, 2] and uniques.tolist() == [3, 7, 100]
    codes, uniques = dense_codes(np.array([2**40, -5, 2**40]))  # sparse/negative: factorize
    assert codes.tolist() == [1, 0, 1] and uniques.tolist() == [-5, 2**40]


@pytest.mark.parametrize("max_key", [10, 2**16 - 1, 2**20, 2**33, 2**50])
def test_radix_argsort_is_a_stable_sort(max_key: int) -> None:
    keys = np.random.default_rng(0).integers(0, max_key + 1, size=5000)
    keys[:50] = keys[50:100]  # ties
    np.testing.assert_array_equal(radix_argsort(keys, max_key), np.argsort(keys, kind="stable"))


def test_distinct_per_group_both_paths() -> None:
    groups = np.array([0, 0, 1, 1, 1])
    assert distinct_per_group(groups, np.array([5, 5, 6, 7, 7]), 2).tolist() == [1, 2]  # fast path
    assert distinct_per_group(groups, np.array([5, 6, 5, 6, 8]), 2).tolist() == [2, 3]  # shared values


def test_decay_and_bands() -> None:
    day = 86_400_000_000
    np.testing.assert_allclose(decay_factors(np.array([0, -7 * day]), 0, 7.0), [1.0, 0.5])
    assert decay_factors(np.array([-day]), 0, 0).tolist() == [1.0]
    assert band_labels([10, 25]) == ["<10", "10-25", ">=25"]
    bands = price_band(np.array([5.0, 10.0, 24.99, 25.0, np.nan]), [10, 25])
    assert [None if pd.isna(b) else b for b in bands] == ["<10", "10-25", "10-25", ">=25", None]


def test_empty_events_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one event"):
        build_features(_events([]), TransformParams(reference_time=REF))


def test_missing_event_types_and_session_ids_are_tolerated() -> None:
    ev = _events(
        [
            (1, 1, "view", "2026-11-28T00:00:00Z"),
            (1, 2, "view", "2026-11-28T01:00:00Z"),
            (2, 2, "purchase", "2026-11-28T02:00:00Z"),
        ]
    )
    ev["event_type"] = pd.Categorical(["view", None, "purchase"])
    ev["session_id"] = pd.array([7, None, 8], dtype="Int64")
    out = build_features(ev, TransformParams(reference_time=REF, half_life_days=0))
    users = out["users"].set_index("user_id")
    assert users.loc[1, "events"] == 2 and users.loc[1, "views"] == 1 and users.loc[1, "sessions"] == 1
    assert out["interactions"]["strength"].tolist() == [1.0, 0.0, 5.0]

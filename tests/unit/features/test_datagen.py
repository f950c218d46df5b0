"""The synthetic clickstream: exact sizes, determinism, and the shapes it promises."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from recops_features.datagen import (
    DriftSpec,
    GenerateSpec,
    frame_to_jsonl,
    generate,
    partition_bounds,
)

END = date(2026, 11, 29)


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return generate(GenerateSpec(events=60_000, days=28, end_date=END, seed=5))


def test_exact_size_sorted_and_in_period(data) -> None:  # type: ignore[no-untyped-def]
    ev = data.events
    assert len(ev) == 60_000 and ev["event_id"].is_unique
    assert ev["ts"].is_monotonic_increasing
    assert ev["ts"].min() >= pd.Timestamp("2026-11-01", tz="UTC") and ev["ts"].max() < pd.Timestamp(END, tz="UTC")
    assert (ev["ts"].dt.microsecond % 1000 == 0).all()  # millisecond precision
    assert list(ev["event_type"].cat.categories) == ["view", "add_to_cart", "purchase"]


def test_deterministic_per_seed() -> None:
    a = generate(GenerateSpec(events=5000, end_date=END, seed=1))
    b = generate(GenerateSpec(events=5000, end_date=END, seed=1))
    c = generate(GenerateSpec(events=5000, end_date=END, seed=2))
    pd.testing.assert_frame_equal(a.events, b.events)
    pd.testing.assert_frame_equal(a.profiles, b.profiles)
    assert not a.events["item_id"].equals(c.events["item_id"])


def test_power_law_popularity(data) -> None:  # type: ignore[no-untyped-def]
    counts = data.events["item_id"].value_counts().to_numpy()
    top_share = counts[: max(1, len(counts) // 100)].sum() / counts.sum()
    assert top_share > 0.1  # the top 1% of items get >10% of events
    assert counts[0] > 20 * np.median(counts)


def test_weekly_seasonality_weekends_busier(data) -> None:  # type: ignore[no-untyped-def]
    by_dow = data.events["ts"].dt.day_of_week.value_counts()
    assert by_dow[[5, 6]].mean() > by_dow[[0, 1, 2]].mean() * 1.2


def test_new_users_only_after_signup_and_new_items_only_after_release(data) -> None:  # type: ignore[no-untyped-def]
    ev = data.events.merge(data.profiles, on="user_id").merge(data.items[["item_id", "release_date"]], on="item_id")
    ev_day = ev["ts"].dt.date
    assert (ev_day >= ev["signup_date"]).all()
    assert (ev_day >= ev["release_date"]).all()
    start = date(2026, 11, 1)
    assert (data.profiles["signup_date"] >= start).any() and (data.items["release_date"] >= start).any()


def test_carts_and_purchases_follow_a_view_of_the_same_item(data) -> None:  # type: ignore[no-untyped-def]
    ev = data.events.sort_values(["session_id", "ts", "event_id"])
    firsts = ev.groupby("session_id").head(1)
    assert (firsts["event_type"] == "view").all()
    bought = ev[ev["event_type"] == "purchase"]
    viewed = set(
        zip(
            ev.loc[ev["event_type"] == "view", "session_id"], ev.loc[ev["event_type"] == "view", "item_id"], strict=True
        )
    )
    assert all((s, i) in viewed for s, i in zip(bought["session_id"], bought["item_id"], strict=True))
    rates = data.events["event_type"].value_counts(normalize=True)
    assert 0.8 < rates["view"] < 0.95 and 0.01 < rates["purchase"] < 0.06


def test_drift_knobs_change_the_drift_period_only() -> None:
    drift = DriftSpec(
        start=date(2026, 11, 22), category_shift=0.8, price_multiplier=1.5, bot_share=0.2, new_user_share=0.3
    )
    base = generate(GenerateSpec(events=40_000, days=28, end_date=END, seed=9))
    drifted = generate(GenerateSpec(events=40_000, days=28, end_date=END, seed=9, drift=drift))
    assert len(drifted.events) == 40_000
    cut = pd.Timestamp("2026-11-22", tz="UTC")
    before, after = drifted.events[drifted.events["ts"] < cut], drifted.events[drifted.events["ts"] >= cut]
    # Bots: users without a profile, only in the drift period, views only.
    bots = ~drifted.events["user_id"].isin(drifted.profiles["user_id"])
    assert bots.sum() > 0 and (drifted.events.loc[bots, "ts"] >= cut).all()
    assert (drifted.events.loc[bots, "event_type"] == "view").all()
    # Prices: +50% after the start.
    cat_price = drifted.items.set_index("item_id")["price"]
    ratio = after["price"].to_numpy() / cat_price.loc[after["item_id"]].to_numpy()
    assert np.allclose(ratio, 1.5, rtol=0.01)
    assert np.allclose(before["price"].to_numpy(), cat_price.loc[before["item_id"]].to_numpy())
    # Category mix shifts.
    cats = drifted.items.set_index("item_id")["category"]

    def top_share(frame: pd.DataFrame) -> float:
        return float(cats.loc[frame["item_id"]].value_counts(normalize=True).iloc[0])

    base_after = base.events[base.events["ts"] >= cut]
    assert top_share(after[~bots[after.index]]) < top_share(base_after) - 0.02
    # A new cohort of users.
    assert drifted.profiles["user_id"].max() > base.profiles["user_id"].max()


def test_partitions_and_jsonl() -> None:
    d = generate(GenerateSpec(events=2000, days=3, end_date=END, seed=3))
    bounds = partition_bounds(d.events["ts"])
    assert [b[0].isoformat() for b in bounds] == ["2026-11-26", "2026-11-27", "2026-11-28"]
    assert bounds[0][1] == 0 and bounds[-1][2] == 2000
    line = frame_to_jsonl(d.events.head(1)).decode().strip()
    assert '"event_type":"view"' in line and line.count("\n") == 0 and '"ts":"2026-11-26T' in line


def test_ten_million_sizes_are_resolved_sensibly() -> None:
    spec = GenerateSpec(events=10_000_000)
    assert spec.n_users == 250_000 and 10_000 < spec.n_items < 20_000


def test_two_slices_of_one_world_add_up_to_the_whole() -> None:
    """`between(until=d)` now and `between(since=d)` later: time passes, the world (catalogue, users, taste) and
    the history already written stay the same, and no event is written twice or lost."""
    spec = GenerateSpec(events=20_000, days=20, end_date=date(2026, 3, 21), seed=5,
                        drift=DriftSpec(start=date(2026, 3, 14), category_shift=0.8, new_user_share=0.5))
    whole = generate(spec)
    cut = date(2026, 3, 14)
    before, after = whole.between(until=cut), whole.between(since=cut)
    assert len(before.events) + len(after.events) == len(whole.events)
    assert set(before.events["event_id"]).isdisjoint(after.events["event_id"])
    assert (before.events["ts"].dt.date < cut).all() and (after.events["ts"].dt.date >= cut).all()
    # Only what existed before the cut is visible then; everything it shows is what the whole world has.
    assert (before.items["release_date"] < cut).all() and len(before.items) < len(whole.items)
    assert (before.profiles["signup_date"] < cut).all() and len(before.profiles) < len(whole.profiles)
    pd.testing.assert_frame_equal(before.items, whole.items[whole.items["release_date"] < cut].reset_index(drop=True))
    assert set(before.events["item_id"]) <= set(before.items["item_id"])
    profiled = set(before.profiles["user_id"])
    assert set(before.events["user_id"]) <= profiled

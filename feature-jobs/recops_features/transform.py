"""The built-in feature transform: pure, vectorised (no per-row or per-group Python).

Input frames (pandas):

* ``events``: ``user_id``, ``item_id``, ``event_type``, ``ts`` (tz-aware UTC), optional
  ``session_id`` and ``price``; any order.
* ``catalog`` (optional): ``item_id`` plus ``category``, ``price`` and any other item attributes.
* ``profiles`` (optional): ``user_id`` plus profile columns (``signup_date``, ``country``, ``segment`` ...).

Output tables (sorted by key, so equal inputs give byte-equal outputs):

* ``interactions`` (user_id, item_id): ``strength`` = sum of event weight x 2^(-age/half-life),
  counts per event type, ``last_ts``, and the item's catalogue ``category`` (so the table's category
  mix is the traffic's, one row per user x item: what a category-mix drift moves).
* ``users`` (user_id): activity counts, sessions, distinct items, strength, purchase value,
  ``avg_price`` (mean price of the events that carry one: what the user pays or looks at; what a
  price drift moves), first/last event, ``recency_days``, profile columns and ``tenure_days``.
* ``items`` (item_id): counts, distinct users, ``popularity`` (decayed strength),
  ``conversion_rate`` (purchases / views), ``cart_rate``, ``last_ts``, catalogue attributes and
  ``price_band``.

How it is fast: ids become dense integer codes (direct addressing when the id range is compact,
else one hash factorisation), a user x item pair gets one int64 key, rows are put in key order by
a linear-time LSD radix argsort (16-bit digits), and every aggregate is a ``reduceat`` over
contiguous runs or an ``np.bincount``: no ``groupby.apply``, no Python loop over rows or groups.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

US_PER_DAY = 86_400_000_000
DEFAULT_WEIGHTS: dict[str, float] = {"view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}
COUNTED_TYPES = ("view", "add_to_cart", "purchase")
_COUNT_COLUMN = {"view": "views", "add_to_cart": "carts", "purchase": "purchases"}


@dataclass(frozen=True)
class TransformParams:
    """Parameters of :func:`build_features` (mapped from the config's ``features`` and window)."""

    reference_time: datetime
    """Decay and recency are measured from here (the window end)."""
    event_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    half_life_days: float = 7.0
    """0 disables the decay."""
    price_bands: Sequence[float] = (10.0, 25.0, 50.0, 100.0, 250.0)


def dense_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map values to codes ``0..k-1`` in ascending order of value; return ``(codes, sorted_uniques)``.

    Compact non-negative integer ids use direct addressing (no hashing, no sorting of the rows);
    anything else falls back to ``pd.factorize(sort=True)``. Codes are int32 when they fit.
    """
    n = len(values)
    if n and values.dtype.kind in "iu":
        lo, hi = int(values.min()), int(values.max())
        if lo >= 0 and hi < max(2 * n, 1 << 22):
            present = np.zeros(hi + 1, dtype=bool)
            present[values] = True
            remap = np.cumsum(present, dtype=np.int64)
            remap -= 1
            code_type = np.int32 if remap[-1] < np.iinfo(np.int32).max else np.int64
            codes = remap.astype(code_type)[values]
            uniques = np.flatnonzero(present).astype(values.dtype)
            return codes, uniques
    codes, uniques = pd.factorize(values, sort=True)
    return codes.astype(np.int64, copy=False), np.asarray(uniques)


def event_type_codes(event_type: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Integer codes of the event type and the code -> name list; missing types become ``unknown``."""
    if isinstance(event_type.dtype, pd.CategoricalDtype):
        cats = [str(c) for c in event_type.cat.categories]
        codes = event_type.cat.codes.to_numpy()
    else:
        codes, uniques = pd.factorize(event_type.to_numpy(), sort=True)
        cats = [str(u) for u in uniques]
    if len(codes) and codes.min() < 0:
        if "unknown" not in cats:
            cats.append("unknown")
        codes = np.where(codes < 0, cats.index("unknown"), codes)
    return codes, cats


def timestamps_us(ts: pd.Series) -> np.ndarray:
    """``ts`` as int64 microseconds since the epoch (UTC); naive times are taken as UTC."""
    values = ts.array
    if not isinstance(values, pd.arrays.DatetimeArray):
        values = pd.to_datetime(ts, utc=True).array
    return np.asarray(values.as_unit("us").asi8)


def decay_factors(ts_us: np.ndarray, reference_us: int, half_life_days: float) -> np.ndarray:
    """``2 ** (-age / half_life)`` per event (1.0 everywhere when the half-life is 0)."""
    if half_life_days <= 0:
        return np.ones(len(ts_us))
    out = ts_us.astype(np.float64)
    out -= reference_us
    out *= np.log(2.0) / (half_life_days * US_PER_DAY)
    return np.exp(out, out=out)


def radix_argsort(keys: np.ndarray, max_key: int) -> np.ndarray:
    """Stable argsort of non-negative integer ``keys`` (all <= ``max_key``) by LSD radix passes.

    NumPy radix-sorts 16-bit integers in linear time, so 16-bit digits need
    ``ceil(bits(max_key) / 16)`` passes; two passes cover every key below 2**32.
    """
    order = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
    shift = 16
    while (max_key >> shift) > 0:
        digit = ((keys >> shift) & 0xFFFF).astype(np.uint16)
        step = np.argsort(digit[order], kind="stable")
        order = order[step]
        shift += 16
    return order


def group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Index of the first row of each run of equal values in ``sorted_keys``."""
    if len(sorted_keys) == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.empty(len(sorted_keys), dtype=bool)
    change[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=change[1:])
    return np.flatnonzero(change)


def distinct_per_group(group_codes: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Number of distinct ``values`` per group code (e.g. sessions per user).

    Fast path: when every value occurs in one group only (a session belongs to one user), the
    answer is a bincount of each value's group; otherwise distinct (group, value) pairs are counted.
    """
    value_codes, uniques = dense_codes(values)
    n_values = len(uniques)
    lo = np.full(n_values, np.iinfo(np.int64).max, dtype=np.int64)
    hi = np.full(n_values, -1, dtype=np.int64)
    np.minimum.at(lo, value_codes, group_codes)
    np.maximum.at(hi, value_codes, group_codes)
    if np.array_equal(lo, hi):
        return np.bincount(lo, minlength=n_groups).astype(np.int64)
    pairs = pd.unique(group_codes * n_values + value_codes)
    return np.bincount(pairs // n_values, minlength=n_groups).astype(np.int64)


def band_labels(edges: Sequence[float]) -> list[str]:
    """Labels of price bands: ``<10``, ``10-25``, ..., ``>=250``."""
    fmt = [f"{e:g}" for e in edges]
    if not fmt:
        return ["all"]
    return [f"<{fmt[0]}"] + [f"{a}-{b}" for a, b in itertools.pairwise(fmt)] + [f">={fmt[-1]}"]


def price_band(price: np.ndarray, edges: Sequence[float]) -> pd.Categorical:
    """Categorical price band per price (NaN price -> missing)."""
    labels = band_labels(edges)
    codes = np.searchsorted(np.asarray(edges, float), price, side="right").astype(np.int64)
    codes[np.isnan(price)] = -1
    return pd.Categorical.from_codes(codes, categories=labels)


def _to_datetime_us(values_us: np.ndarray) -> pd.Series:
    return pd.Series(values_us.view("datetime64[us]"), copy=False).dt.tz_localize("UTC")


# ----------------------------------------------------------------------------- the transform


def build_features(
    events: pd.DataFrame,
    params: TransformParams,
    catalog: pd.DataFrame | None = None,
    profiles: pd.DataFrame | None = None,
) -> dict[str, pd.DataFrame]:
    """Compute ``interactions``, ``users`` and ``items`` from the window's events (pure).

    Rows are visited once in (user, item) order found by a linear-time radix argsort: pair
    aggregates are ``reduceat`` over contiguous runs, user aggregates ``reduceat`` over the pairs
    (pairs are user-major) and item aggregates ``bincount`` over the pairs.
    """
    if len(events) == 0:
        raise ValueError("build_features needs at least one event")
    user_codes, user_ids = dense_codes(events["user_id"].to_numpy())
    item_codes, item_ids = dense_codes(events["item_id"].to_numpy())
    n_users, n_items = len(user_ids), len(item_ids)
    type_codes, type_names = event_type_codes(events["event_type"])
    n_types = max(len(type_names), 1)
    ts = timestamps_us(events["ts"])
    ref_us = int(pd.Timestamp(params.reference_time).value // 1000)

    # Per-user aggregates that need the event rows in their original order.
    purchase_value = None
    if "price" in events.columns and "purchase" in type_names:
        bought = np.flatnonzero(type_codes == type_names.index("purchase"))
        price = np.nan_to_num(events["price"].to_numpy(dtype=np.float64, na_value=np.nan)[bought])
        purchase_value = np.round(np.bincount(user_codes[bought], weights=price, minlength=n_users), 2)
        del bought, price
    avg_price = None
    if "price" in events.columns:
        event_price = events["price"].to_numpy(dtype=np.float64, na_value=np.nan)
        priced = np.isfinite(event_price)
        with np.errstate(invalid="ignore", divide="ignore"):  # users without a priced event -> NaN
            avg_price = np.round(
                np.bincount(user_codes[priced], weights=event_price[priced], minlength=n_users)
                / np.bincount(user_codes[priced], minlength=n_users),
                2,
            )
        del event_price, priced
    sessions = None
    if "session_id" in events.columns:
        session_ids = events["session_id"]
        known = session_ids.notna().to_numpy()
        if known.all():
            sessions = distinct_per_group(user_codes, session_ids.to_numpy(), n_users)
        else:  # events without a session id do not count as sessions
            sessions = distinct_per_group(user_codes[known], session_ids.to_numpy()[known], n_users)

    # Visit the rows in (user, item) order.
    pair_key = user_codes.astype(np.int64)
    pair_key *= n_items
    pair_key += item_codes
    del user_codes, item_codes
    order = radix_argsort(pair_key, n_users * n_items - 1)
    pair_key = pair_key[order]
    starts = group_starts(pair_key)
    pair_keys = pair_key[starts]
    n_pairs = len(starts)
    del pair_key
    pair_codes = np.zeros(len(order), dtype=np.int64)
    pair_codes[starts[1:]] = 1
    np.cumsum(pair_codes, out=pair_codes)
    ts_sorted = ts[order]
    types_sorted = type_codes[order]
    del order

    weight_of_type = np.array([float(params.event_weights.get(t, 0.0)) for t in type_names] or [0.0])
    contribution = decay_factors(ts_sorted, ref_us, params.half_life_days)
    contribution *= weight_of_type[types_sorted]
    pair_strength = np.add.reduceat(contribution, starts)
    del contribution
    pair_last = np.maximum.reduceat(ts_sorted, starts)
    pair_first = np.minimum.reduceat(ts_sorted, starts)
    del ts_sorted
    pair_codes *= n_types
    pair_codes += types_sorted
    pair_type = np.bincount(pair_codes, minlength=n_pairs * n_types).reshape(n_pairs, n_types)
    del pair_codes, types_sorted
    pair_user = pair_keys // n_items
    pair_item = pair_keys - pair_user * n_items
    counted = [(t, type_names.index(t)) for t in COUNTED_TYPES if t in type_names]

    inter: dict[str, Any] = {"user_id": user_ids[pair_user], "item_id": item_ids[pair_item], "strength": pair_strength}
    for name, code in counted:
        inter[_COUNT_COLUMN[name]] = pair_type[:, code].copy()
    inter["first_ts"] = _to_datetime_us(pair_first)
    inter["last_ts"] = _to_datetime_us(pair_last)
    interactions = pd.DataFrame(inter, copy=False)

    # Users: pairs are user-major, so each user is a contiguous run of pairs.
    user_starts = group_starts(pair_user)
    user_type = np.add.reduceat(pair_type, user_starts, axis=0)
    user_cols: dict[str, Any] = {"user_id": user_ids, "events": user_type.sum(axis=1)}
    for name, code in counted:
        user_cols[_COUNT_COLUMN[name]] = user_type[:, code].copy()
    if sessions is not None:
        user_cols["sessions"] = sessions
    user_cols["distinct_items"] = np.diff(np.r_[user_starts, n_pairs])
    user_cols["strength"] = np.add.reduceat(pair_strength, user_starts)
    if purchase_value is not None:
        user_cols["purchase_value"] = purchase_value
    if avg_price is not None:
        user_cols["avg_price"] = avg_price
    last_ts = np.maximum.reduceat(pair_last, user_starts)
    user_cols["first_ts"] = _to_datetime_us(np.minimum.reduceat(pair_first, user_starts))
    user_cols["last_ts"] = _to_datetime_us(last_ts)
    user_cols["recency_days"] = (ref_us - last_ts) / US_PER_DAY
    users = pd.DataFrame(user_cols, copy=False)
    if profiles is not None and len(profiles.columns) > 1:
        users = _join_profiles(users, profiles, params.reference_time)

    # Items: aggregate the pairs.
    item_type = np.stack(
        [np.bincount(pair_item, weights=pair_type[:, t], minlength=n_items) for t in range(n_types)], axis=1
    ).astype(np.int64)
    item_cols: dict[str, Any] = {"item_id": item_ids, "events": item_type.sum(axis=1)}
    for name, code in counted:
        item_cols[_COUNT_COLUMN[name]] = item_type[:, code].copy()
    item_cols["distinct_users"] = np.bincount(pair_item, minlength=n_items)
    item_cols["popularity"] = np.bincount(pair_item, weights=pair_strength, minlength=n_items)
    views = item_cols.get("views", np.zeros(n_items, dtype=np.int64))
    safe_views = np.maximum(views, 1)
    if "purchases" in item_cols:
        item_cols["conversion_rate"] = np.where(views > 0, item_cols["purchases"] / safe_views, 0.0)
    if "carts" in item_cols:
        item_cols["cart_rate"] = np.where(views > 0, item_cols["carts"] / safe_views, 0.0)
    item_last = np.full(n_items, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(item_last, pair_item, pair_last)
    item_cols["last_ts"] = _to_datetime_us(item_last)
    items = pd.DataFrame(item_cols, copy=False)
    items = _join_catalog(items, catalog, params.price_bands)
    if "category" in items.columns:  # the traffic's category mix: each pair carries its item's category
        category = pd.Categorical(items["category"])
        interactions["category"] = pd.Categorical.from_codes(category.codes[pair_item], category.categories)
    return {"interactions": interactions, "users": users, "items": items}


def _join_profiles(users: pd.DataFrame, profiles: pd.DataFrame, reference_time: datetime) -> pd.DataFrame:
    """Left-join profile columns by user_id (first row per user wins) and derive ``tenure_days``."""
    prof = profiles.drop_duplicates("user_id", keep="first")
    clash = [c for c in prof.columns if c != "user_id" and c in users.columns]
    prof = prof.rename(columns={c: f"profile_{c}" for c in clash})
    joined = users.merge(prof, on="user_id", how="left", sort=False)
    if "signup_date" in joined.columns:
        signup = pd.to_datetime(joined["signup_date"], utc=True, errors="coerce")
        ref = pd.Timestamp(reference_time)
        joined["tenure_days"] = ((ref - signup) / pd.Timedelta(days=1)).to_numpy(dtype=np.float64, na_value=np.nan)
    return joined


def _join_catalog(items: pd.DataFrame, catalog: pd.DataFrame | None, edges: Sequence[float]) -> pd.DataFrame:
    """Left-join catalogue attributes by item_id and derive ``price_band``."""
    if catalog is not None and len(catalog.columns) > 1:
        cat = catalog.drop_duplicates("item_id", keep="first")
        clash = [c for c in cat.columns if c != "item_id" and c in items.columns]
        cat = cat.rename(columns={c: f"catalog_{c}" for c in clash})
        items = items.merge(cat, on="item_id", how="left", sort=False)
    if "price" in items.columns:
        items["price_band"] = price_band(items["price"].to_numpy(dtype=np.float64, na_value=np.nan), edges)
    return items

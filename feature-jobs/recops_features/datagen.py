"""Deterministic synthetic e-commerce clickstream (vectorised numpy: 10M events in seconds).

What it models
--------------
* An item catalogue (``item_id, category, price, release_date``) with Zipf (power-law) popularity,
  log-normal prices per category, and a share of items released during the period.
* Users (``user_id, signup_date, country, age_band, segment``) with log-normal activity scaled by
  segment, and a share of users signing up during the period (they are active only afterwards).
* Sessions with weekly seasonality (busier weekends), a diurnal curve, a focus category, and
  events ``view`` / ``add_to_cart`` / ``purchase`` whose carts and purchases refer to the item
  viewed last in the session. Event prices are the catalogue price (times the drift multiplier).
* Drift knobs, effective from ``drift.start``: category-mix shift, price shift, a cohort of new
  users, and bot traffic (heavy viewers with no profile and no purchases).

The same :class:`GenerateSpec` (seed included) always yields the same data on the same numpy
version. :func:`generate` is pure (returns frames); :func:`write_dataset` does the IO.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd

from recops_features.logs import log

CATEGORIES = (
    "electronics",
    "fashion",
    "home",
    "beauty",
    "sports",
    "toys",
    "books",
    "grocery",
    "garden",
    "automotive",
    "health",
    "pets",
    "music",
    "office",
    "jewelry",
    "baby",
)
_CATEGORY_BASE_PRICE = np.array([180, 45, 60, 25, 55, 30, 15, 8, 40, 70, 22, 18, 20, 12, 120, 35], float)
COUNTRIES = ("DE", "FR", "GB", "US", "ES", "IT", "NL", "PL", "SE", "other")
_COUNTRY_P = np.array([0.22, 0.14, 0.15, 0.18, 0.07, 0.07, 0.05, 0.05, 0.03, 0.04])
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
_AGE_P = np.array([0.16, 0.3, 0.24, 0.15, 0.1, 0.05])
SEGMENTS = ("casual", "regular", "loyal", "deal_hunter")
_SEGMENT_P = np.array([0.5, 0.3, 0.1, 0.1])
_SEGMENT_ACTIVITY = np.array([0.5, 1.0, 3.0, 1.3])
_SEGMENT_BUY = np.array([0.6, 1.0, 1.8, 1.4])
EVENT_TYPES = ("view", "add_to_cart", "purchase")
# Monday..Sunday relative traffic (weekends busier), scaled by GenerateSpec.weekly_amplitude.
_WEEKLY = np.array([-0.4, -0.6, -0.4, 0.0, 0.4, 1.0, 0.8])
# Hour-of-day traffic (UTC), evening peak.
_HOURLY = np.array([2, 1, 1, 1, 1, 2, 3, 5, 6, 6, 6, 6, 7, 7, 6, 6, 6, 7, 9, 11, 12, 11, 8, 4], float)
_MEAN_SESSION_EVENTS = 6.0
_MEAN_GAP_SECONDS = 40.0
_TASTE_LOYALTY = 0.85  # share of sessions that focus on one of the user's favourite categories
_FOCUS_SHARE = 0.7
_BASE_CART_P = 0.07
_BASE_PURCHASE_P = 0.025
_BOT_SESSION_EVENTS = 200
_US_PER_DAY = 86_400_000_000


@dataclass(frozen=True)
class DriftSpec:
    """Changes applied to traffic from ``start`` on (for DriftMonitor demos and tests)."""

    start: date | None = None
    """First day with drift; ``None`` = no drift at all."""
    category_shift: float = 0.0
    """0..1: share of sessions whose focus category is drawn from the inverted category mix."""
    price_multiplier: float = 1.0
    """Event prices are multiplied by this (e.g. 1.3 = +30%)."""
    new_user_share: float = 0.0
    """0..1: share of sessions taken over by a cohort of users who sign up during the drift."""
    bot_share: float = 0.0
    """0..1: share of the drift period's events emitted by bots (views only, no profile)."""

    @property
    def active(self) -> bool:
        return self.start is not None and (
            self.category_shift > 0 or self.price_multiplier != 1.0 or self.new_user_share > 0 or self.bot_share > 0
        )


@dataclass(frozen=True)
class GenerateSpec:
    """Size and shape of the synthetic data."""

    events: int = 100_000
    """Exact number of events."""
    users: int | None = None
    """Number of (profiled) users; default ``max(50, events // 40)``."""
    items: int | None = None
    """Catalogue size; default ``clip(4 * sqrt(events), 30, 200_000)``."""
    days: int = 30
    """Length of the period in days."""
    end_date: date = field(default_factory=lambda: datetime.now(UTC).date() + timedelta(days=1))
    """Exclusive end: events are in ``[end_date - days, end_date)`` (UTC midnight)."""
    seed: int = 42
    zipf_exponent: float = 1.1
    """Item popularity ~ 1 / rank**exponent."""
    new_user_share: float = 0.1
    """Share of users who sign up during the period."""
    new_item_share: float = 0.15
    """Share of items released during the period."""
    weekly_amplitude: float = 0.25
    """Strength of the weekly seasonality (0 = flat)."""
    drift: DriftSpec = field(default_factory=DriftSpec)

    @property
    def n_users(self) -> int:
        return self.users if self.users is not None else max(50, self.events // 40)

    @property
    def n_items(self) -> int:
        return self.items if self.items is not None else int(np.clip(4 * np.sqrt(self.events), 30, 200_000))

    @property
    def start_date(self) -> date:
        return self.end_date - timedelta(days=self.days)


@dataclass
class GeneratedData:
    """The generated frames."""

    events: pd.DataFrame
    """event_id, ts (UTC), user_id, session_id, item_id, event_type (categorical), price; sorted by ts."""
    items: pd.DataFrame
    """item_id, category, price, release_date."""
    profiles: pd.DataFrame
    """user_id, signup_date, country, age_band, segment (bots have no profile)."""

    def between(self, since: date | None = None, until: date | None = None) -> GeneratedData:
        """The part of this world visible in ``[since, until)``: its events, the items released and the users
        signed up before ``until``. The same spec written in two slices (``until=d`` now, ``since=d`` later)
        adds up to the whole: a demo or test can let time pass and drift begin without changing the world."""
        ts_day = self.events["ts"].dt.date
        keep = np.ones(len(self.events), bool)
        if since is not None:
            keep &= (ts_day >= since).to_numpy()
        if until is None:
            return GeneratedData(self.events[keep].reset_index(drop=True), self.items, self.profiles)
        keep &= (ts_day < until).to_numpy()
        return GeneratedData(
            self.events[keep].reset_index(drop=True),
            self.items[self.items["release_date"] < until].reset_index(drop=True),
            self.profiles[self.profiles["signup_date"] < until].reset_index(drop=True),
        )

    def summary(self) -> dict[str, Any]:
        ev = self.events
        return {
            "events": len(ev),
            "users": int(ev["user_id"].nunique()),
            "items": int(ev["item_id"].nunique()),
            "profiles": len(self.profiles),
            "catalogItems": len(self.items),
            "eventTypes": {str(k): int(v) for k, v in ev["event_type"].value_counts().sort_index().items()},
            "start": ev["ts"].min().isoformat() if len(ev) else None,
            "end": ev["ts"].max().isoformat() if len(ev) else None,
        }


# ----------------------------------------------------------------------------- pure generation


def _sample_in_segments(
    rng: np.random.Generator, cdf: np.ndarray, lo: np.ndarray, hi: np.ndarray, lo_idx: np.ndarray, hi_idx: np.ndarray
) -> np.ndarray:
    """Inverse-CDF draw of one index per row restricted to ``[lo_idx, hi_idx)`` whose mass is ``[lo, hi)``."""
    u = lo + rng.random(len(lo)) * (hi - lo)
    idx = np.searchsorted(cdf, u, side="right")
    out: np.ndarray = np.clip(idx, lo_idx, hi_idx - 1)
    return out


def _make_items(rng: np.random.Generator, spec: GenerateSpec) -> dict[str, np.ndarray]:
    n = spec.n_items
    n_cat = len(CATEGORIES)
    cat_p = rng.dirichlet(np.full(n_cat, 2.0))
    category = rng.choice(n_cat, size=n, p=cat_p)
    raw_price = _CATEGORY_BASE_PRICE[category] * rng.lognormal(0.0, 0.6, size=n)
    price = np.round(np.maximum(raw_price, 0.99), 2)
    ranks = rng.permutation(n) + 1
    popularity = 1.0 / ranks.astype(float) ** spec.zipf_exponent
    released = rng.random(n) < spec.new_item_share
    release_day = np.where(released, rng.integers(0, spec.days, size=n), -rng.integers(1, 1000, size=n))
    if not np.any(release_day <= 0):
        release_day[0] = -1
    return {"category": category, "price": price, "popularity": popularity, "release_day": release_day}


def _make_users(
    rng: np.random.Generator, spec: GenerateSpec, n: int, first_day: int, last_day: int, new_share: float
) -> dict[str, np.ndarray]:
    segment = rng.choice(len(SEGMENTS), size=n, p=_SEGMENT_P)
    activity = rng.lognormal(0.0, 1.0, size=n) * _SEGMENT_ACTIVITY[segment]
    is_new = rng.random(n) < new_share
    signup_day = np.where(
        is_new, rng.integers(first_day, max(first_day + 1, last_day), size=n), -rng.integers(1, 1100, size=n)
    )
    return {
        "segment": segment,
        "activity": activity,
        "signup_day": signup_day,
        "country": rng.choice(len(COUNTRIES), size=n, p=_COUNTRY_P),
        "age_band": rng.choice(len(AGE_BANDS), size=n, p=_AGE_P),
    }


def _day_weights(spec: GenerateSpec) -> np.ndarray:
    dows = np.array([(spec.start_date + timedelta(days=d)).weekday() for d in range(spec.days)])
    trend = np.linspace(0.95, 1.05, spec.days)
    weights: np.ndarray = (1.0 + spec.weekly_amplitude * _WEEKLY[dows]) * trend
    return weights


def _session_lengths(rng: np.random.Generator, total: int, mean: float) -> np.ndarray:
    """Geometric session lengths (>= 1) summing exactly to ``total``."""
    if total <= 0:
        return np.zeros(0, np.int64)
    chunks: list[np.ndarray] = []
    have = 0
    while have < total:
        batch = rng.geometric(1.0 / mean, size=int((total - have) / mean * 1.1) + 16).astype(np.int64)
        chunks.append(batch)
        have += int(batch.sum())
    lengths = np.concatenate(chunks)
    csum = np.cumsum(lengths)
    k = int(np.searchsorted(csum, total)) + 1
    lengths = lengths[:k].copy()
    lengths[-1] -= int(csum[k - 1] - total)
    return lengths


def _draw_days(rng: np.random.Generator, day_cdf: np.ndarray, earliest: np.ndarray) -> np.ndarray:
    """One day per row from the seasonal distribution restricted to ``[earliest, days)``."""
    days = len(day_cdf)
    earliest = np.clip(earliest, 0, days - 1)
    lo = np.where(earliest > 0, day_cdf[earliest - 1], 0.0)
    days_drawn: np.ndarray = _sample_in_segments(
        rng, day_cdf, lo, np.ones_like(lo), earliest, np.full_like(earliest, days)
    )
    return days_drawn


def generate(spec: GenerateSpec) -> GeneratedData:
    """Generate the clickstream, catalogue and profiles for ``spec`` (pure, deterministic)."""
    rng = np.random.default_rng(spec.seed)
    days = spec.days
    drift = spec.drift
    drift_day = days if drift.start is None else int(np.clip((drift.start - spec.start_date).days, 0, days))

    items = _make_items(rng, spec)
    n_items = spec.n_items
    users = _make_users(rng, spec, spec.n_users, 0, days, spec.new_user_share)
    n_base_users = spec.n_users
    cohort_n = 0
    if drift.active and drift.new_user_share > 0 and drift_day < days:
        cohort_n = max(10, int(spec.n_users * drift.new_user_share * 0.5))
        cohort = _make_users(rng, spec, cohort_n, drift_day, days, 1.0)
        users = {k: np.concatenate([users[k], cohort[k]]) for k in users}
    n_users = n_base_users + cohort_n

    day_w = _day_weights(spec)
    day_cdf = np.cumsum(day_w) / day_w.sum()
    drift_mass = float(day_w[drift_day:].sum() / day_w.sum()) if drift.active else 0.0
    n_bot_events = round(spec.events * drift.bot_share * drift_mass) if drift.active else 0
    n_human = spec.events - n_bot_events

    # Sessions: length, user (by activity among base users), day (seasonal, not before signup).
    lengths = _session_lengths(rng, n_human, _MEAN_SESSION_EVENTS)
    n_sess = len(lengths)
    act = users["activity"][:n_base_users]
    user_cdf = np.cumsum(act) / act.sum()
    s_user = np.minimum(np.searchsorted(user_cdf, rng.random(n_sess), side="right"), n_base_users - 1)
    s_day = _draw_days(rng, day_cdf, users["signup_day"][s_user])
    if cohort_n:
        take = (s_day >= drift_day) & (rng.random(n_sess) < drift.new_user_share)
        c_act = users["activity"][n_base_users:]
        c_cdf = np.cumsum(c_act) / c_act.sum()
        s_user[take] = n_base_users + np.minimum(
            np.searchsorted(c_cdf, rng.random(int(take.sum())), side="right"), cohort_n - 1
        )
        s_day[take] = np.maximum(s_day[take], users["signup_day"][s_user[take]])
    hour = rng.choice(24, size=n_sess, p=_HOURLY / _HOURLY.sum())
    s_start = (s_day.astype(np.int64) * 86_400 + hour * 3600 + rng.integers(0, 3600, size=n_sess)) * 1_000_000

    # Focus category per session: by popularity mass, inverted mix for shifted sessions.
    n_cat = len(CATEGORIES)
    cat_mass = np.bincount(items["category"], weights=items["popularity"], minlength=n_cat)
    cat_p = cat_mass / cat_mass.sum()
    s_cat = rng.choice(n_cat, size=n_sess, p=cat_p)
    # Users have lasting taste: most sessions focus on one of the user's two favourite categories, which is
    # what a personalised model can learn and a popularity baseline cannot.
    favourites = rng.choice(n_cat, size=(n_users, 2), p=cat_p)
    loyal = rng.random(n_sess) < _TASTE_LOYALTY
    s_cat[loyal] = favourites[s_user[loyal], rng.integers(0, 2, size=int(loyal.sum()))]
    if drift.active and drift.category_shift > 0:
        inv = np.where(cat_mass > 0, 1.0 / np.maximum(cat_p, 1e-12), 0.0)
        shifted = (s_day >= drift_day) & (rng.random(n_sess) < drift.category_shift)
        s_cat[shifted] = rng.choice(n_cat, size=int(shifted.sum()), p=inv / inv.sum())

    # Events: expand sessions.
    ev_sess = np.repeat(np.arange(n_sess), lengths)
    first = np.zeros(n_human, bool)
    starts_idx = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    first[starts_idx] = True
    gaps = (rng.exponential(_MEAN_GAP_SECONDS, size=n_human) * 1_000_000).astype(np.int64)
    gaps[first] = 0
    offs = np.cumsum(gaps)
    offs -= np.repeat(offs[starts_idx], lengths)
    duration = np.add.reduceat(gaps, starts_idx) if n_sess else np.zeros(0, np.int64)
    period_us = days * _US_PER_DAY
    s_start = np.minimum(s_start, period_us - duration - 1)
    ev_ts = np.repeat(s_start, lengths) + offs
    ev_day = ev_ts // _US_PER_DAY
    ev_user = s_user[ev_sess]

    # Items: focus category (by popularity inside the category) or global popularity.
    order = np.argsort(items["category"], kind="stable")
    pop_sorted = items["popularity"][order]
    cdf_sorted = np.cumsum(pop_sorted) / pop_sorted.sum()
    cat_sorted = items["category"][order]
    cat_lo_idx = np.searchsorted(cat_sorted, np.arange(n_cat), side="left")
    cat_hi_idx = np.searchsorted(cat_sorted, np.arange(n_cat), side="right")
    cdf0 = np.concatenate([[0.0], cdf_sorted])
    ev_cat = s_cat[ev_sess]
    focus = rng.random(n_human) < _FOCUS_SHARE
    lo_idx = np.where(focus, cat_lo_idx[ev_cat], 0)
    hi_idx = np.where(focus, cat_hi_idx[ev_cat], n_items)
    pos = _sample_in_segments(rng, cdf_sorted, cdf0[lo_idx], cdf0[hi_idx], lo_idx, hi_idx)
    ev_item = order[pos]
    unreleased = items["release_day"][ev_item] > ev_day
    if unreleased.any():
        old = np.flatnonzero(items["release_day"] <= 0)
        old_cdf = np.cumsum(items["popularity"][old])
        old_cdf /= old_cdf[-1]
        pick = np.minimum(np.searchsorted(old_cdf, rng.random(int(unreleased.sum())), side="right"), len(old) - 1)
        ev_item[unreleased] = old[pick]

    # Event types: carts/purchases by segment propensity; they refer to the last viewed item.
    buy = _SEGMENT_BUY[users["segment"][ev_user]]
    u = rng.random(n_human)
    ev_type = np.zeros(n_human, np.int8)
    ev_type[u < _BASE_CART_P * buy + _BASE_PURCHASE_P * buy] = 1
    ev_type[u < _BASE_PURCHASE_P * buy] = 2
    ev_type[first] = 0
    view_idx = np.where(ev_type == 0, np.arange(n_human), 0)
    np.maximum.accumulate(view_idx, out=view_idx)
    ev_item = ev_item[view_idx]

    # Bots: views of uniformly random released items during the drift period, no profiles.
    if n_bot_events:
        n_bots = max(1, n_bot_events // 5000)
        b_sess_n = -(-n_bot_events // _BOT_SESSION_EVENTS)
        b_lengths = np.full(b_sess_n, _BOT_SESSION_EVENTS, np.int64)
        b_lengths[-1] = n_bot_events - _BOT_SESSION_EVENTS * (b_sess_n - 1)
        b_start = (
            rng.integers(drift_day, days, size=b_sess_n) * 86_400
            + rng.integers(0, 86_000 - 2 * _BOT_SESSION_EVENTS, size=b_sess_n)
        ) * 1_000_000
        b_sess = np.repeat(np.arange(b_sess_n), b_lengths)
        b_off = (np.arange(n_bot_events) - np.repeat(np.cumsum(b_lengths) - b_lengths, b_lengths)) * 1_500_000
        b_ts = np.repeat(b_start, b_lengths) + b_off + rng.integers(0, 500_000, size=n_bot_events)
        b_user = n_users + rng.integers(0, n_bots, size=b_sess_n)[b_sess]
        b_item = rng.integers(0, n_items, size=n_bot_events)
        b_item = np.where(
            items["release_day"][b_item] > b_ts // _US_PER_DAY, np.flatnonzero(items["release_day"] <= 0)[0], b_item
        )
        ev_sess = np.concatenate([ev_sess, n_sess + b_sess])
        ev_ts = np.concatenate([ev_ts, b_ts])
        ev_user = np.concatenate([ev_user, b_user])
        ev_item = np.concatenate([ev_item, b_item])
        ev_type = np.concatenate([ev_type, np.zeros(n_bot_events, np.int8)])
        s_start = np.concatenate([s_start, b_start])

    # Prices (with the drift multiplier) and final ordering by time.
    ev_price = items["price"][ev_item]
    if drift.active and drift.price_multiplier != 1.0:
        ev_price = np.where(ev_ts // _US_PER_DAY >= drift_day, np.round(ev_price * drift.price_multiplier, 2), ev_price)
    ev_ts -= ev_ts % 1000  # millisecond precision, as clickstream trackers record (and JSON round-trips)
    sess_rank = np.empty(len(s_start), np.int64)
    sess_rank[np.argsort(s_start, kind="stable")] = np.arange(len(s_start))
    ev_order = np.argsort(ev_ts, kind="stable")
    epoch_us = (
        int(datetime(spec.start_date.year, spec.start_date.month, spec.start_date.day, tzinfo=UTC).timestamp())
        * 1_000_000
    )
    events = pd.DataFrame(
        {
            "event_id": np.arange(1, spec.events + 1, dtype=np.int64),
            "ts": pd.to_datetime(ev_ts[ev_order] + epoch_us, unit="us", utc=True),
            "user_id": (ev_user[ev_order] + 1).astype(np.int64),
            "session_id": (sess_rank[ev_sess[ev_order]] + 1).astype(np.int64),
            "item_id": (ev_item[ev_order] + 1).astype(np.int64),
            "event_type": pd.Categorical.from_codes(ev_type[ev_order], categories=list(EVENT_TYPES)),
            "price": ev_price[ev_order],
        }
    )

    start = pd.Timestamp(spec.start_date)
    item_frame = pd.DataFrame(
        {
            "item_id": np.arange(1, n_items + 1, dtype=np.int64),
            "category": pd.Categorical.from_codes(items["category"], categories=list(CATEGORIES)).astype(str),
            "price": items["price"],
            "release_date": (start + pd.to_timedelta(items["release_day"], unit="D")).date,
        }
    )
    profiles = pd.DataFrame(
        {
            "user_id": np.arange(1, n_users + 1, dtype=np.int64),
            "signup_date": (start + pd.to_timedelta(users["signup_day"], unit="D")).date,
            "country": np.asarray(COUNTRIES, dtype=object)[users["country"]],
            "age_band": np.asarray(AGE_BANDS, dtype=object)[users["age_band"]],
            "segment": np.asarray(SEGMENTS, dtype=object)[users["segment"]],
        }
    )
    return GeneratedData(events=events, items=item_frame, profiles=profiles)


# ----------------------------------------------------------------------------- serialisation


def events_to_parquet(frame: pd.DataFrame) -> bytes:
    """Serialise events (or any frame) to Parquet bytes (zstd, no pandas index)."""
    import pyarrow.parquet as pq

    from recops_features.snapshot import frame_to_arrow

    table = frame_to_arrow(frame)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def frame_to_jsonl(frame: pd.DataFrame) -> bytes:
    """Serialise a frame to JSON lines (ISO-8601 UTC timestamps, ms precision)."""
    text = str(frame.to_json(orient="records", lines=True, date_format="iso", date_unit="ms"))
    return (text if text.endswith("\n") or not text else text + "\n").encode()


def partition_bounds(ts: pd.Series) -> list[tuple[date, int, int]]:
    """``(date, start_row, end_row)`` for each UTC day of a time-sorted ``ts`` column."""
    if len(ts) == 0:
        return []
    values = ts.to_numpy(dtype="datetime64[us]").astype(np.int64)
    day = values // _US_PER_DAY
    cuts = np.flatnonzero(np.diff(day)) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [len(values)]])
    epoch = date(1970, 1, 1)
    return [(epoch + timedelta(days=int(day[s])), int(s), int(e)) for s, e in zip(starts, ends, strict=True)]


def write_dataset(
    data: GeneratedData,
    target: str,
    fmt: Literal["parquet", "jsonl"] = "parquet",
    rows_per_file: int = 2_000_000,
    client: Any | None = None,
    spec: GenerateSpec | None = None,
) -> dict[str, Any]:
    """Write ``data`` under ``target`` (``s3://bucket/prefix`` or a directory).

    Layout: ``events/date=YYYY-MM-DD/part-NNNNN.parquet|jsonl``, ``catalog/items.parquet``,
    ``profiles/users.parquet`` and ``generator.json`` (spec and counts). File names are
    deterministic, so rewriting the same spec replaces files instead of adding duplicates.
    """
    from recops_features.storage import parse_location, store_for

    root = parse_location(target)
    store = store_for(root, what="the generator target", field="--target", client=client)
    ext = "parquet" if fmt == "parquet" else "jsonl"
    serialise = events_to_parquet if fmt == "parquet" else frame_to_jsonl
    files = 0
    for day, lo, hi in partition_bounds(data.events["ts"]):
        for part, start in enumerate(range(lo, hi, rows_per_file)):
            chunk = data.events.iloc[start : min(hi, start + rows_per_file)]
            store.write(root.child("events", f"date={day.isoformat()}", f"part-{part:05d}.{ext}"), serialise(chunk))
            files += 1
    store.write(root.child("catalog", "items.parquet"), events_to_parquet(data.items))
    store.write(root.child("profiles", "users.parquet"), events_to_parquet(data.profiles))
    summary = data.summary() | {"eventFiles": files, "format": fmt, "target": root.uri}
    meta = {"spec": _spec_json(spec) if spec else None, "summary": summary}
    store.write(root.child("generator.json"), json.dumps(meta, indent=2, default=str).encode())
    log("Wrote synthetic dataset", target=root.uri, files=files, events=len(data.events), format=fmt)
    return summary


def _spec_json(spec: GenerateSpec) -> dict[str, Any]:
    out = asdict(spec)
    out["resolvedUsers"] = spec.n_users
    out["resolvedItems"] = spec.n_items
    return out


def write_profiles_postgres(
    profiles: pd.DataFrame, dsn: str, table: str = "user_profiles", mode: Literal["upsert", "replace"] = "upsert"
) -> int:
    """Load profiles into PostgreSQL table ``table`` (created if missing) in one transaction via COPY.

    ``upsert`` inserts new users and updates existing ones; ``replace`` empties the table first.
    """
    import psycopg
    from psycopg import sql

    ident = sql.Identifier(*table.split("."))
    buf = io.StringIO()
    profiles.to_csv(buf, index=False, header=False)
    with psycopg.connect(dsn, connect_timeout=10) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (user_id bigint PRIMARY KEY, signup_date date NOT NULL, "
                "country text, age_band text, segment text)"
            ).format(ident)
        )
        cur.execute(
            "CREATE TEMP TABLE recops_profiles_stage "
            "(user_id bigint, signup_date date, country text, age_band text, segment text) ON COMMIT DROP"
        )
        with cur.copy("COPY recops_profiles_stage FROM STDIN WITH (FORMAT csv)") as copy:
            copy.write(buf.getvalue())
        if mode == "replace":
            cur.execute(sql.SQL("DELETE FROM {}").format(ident))
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (user_id, signup_date, country, age_band, segment) "
                "SELECT user_id, signup_date, country, age_band, segment FROM recops_profiles_stage "
                "ON CONFLICT (user_id) DO UPDATE SET signup_date = EXCLUDED.signup_date, country = EXCLUDED.country, "
                "age_band = EXCLUDED.age_band, segment = EXCLUDED.segment"
            ).format(ident)
        )
        conn.commit()
    log("Loaded user profiles into PostgreSQL", table=table, rows=len(profiles), mode=mode)
    return len(profiles)

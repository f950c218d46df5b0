"""The same feature transform written four ways, for bench_features.py.

* ``builtin``: :func:`recops_features.transform.build_features` (what the job runs).
* ``idiomatic``: straightforward pandas as a data scientist typically writes it: helper columns,
  ``groupby().agg`` for the pairs and ``groupby().apply`` with a per-group function for users and items.
* ``polars``: one lazy query per table, collected together (multi-threaded).
* ``duckdb``: the same as SQL over the in-memory Arrow table (multi-threaded).

All produce ``interactions`` (user_id, item_id, strength, views, carts, purchases, last_ts, the item's
category), ``users`` (events, views, carts, purchases, sessions, distinct_items, strength, purchase_value,
avg_price, first_ts, last_ts, recency_days + profile columns + tenure_days) and ``items`` (events, views, carts,
purchases, distinct_users, popularity, conversion_rate, cart_rate, last_ts + catalogue columns +
price_band), and :func:`check_equivalent` verifies they agree.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

WEIGHTS = {"view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}
HALF_LIFE_DAYS = 7.0
EDGES = (10.0, 25.0, 50.0, 100.0, 250.0)


def band_labels(edges: Sequence[float]) -> list[str]:
    fmt = [f"{e:g}" for e in edges]
    return [f"<{fmt[0]}"] + [f"{a}-{b}" for a, b in itertools.pairwise(fmt)] + [f">={fmt[-1]}"]


# ----------------------------------------------------------------------------- builtin


def run_builtin(events: pd.DataFrame, catalog: pd.DataFrame, profiles: pd.DataFrame, ref: datetime) -> dict[str, Any]:
    from recops_features.transform import TransformParams, build_features

    params = TransformParams(
        reference_time=ref, event_weights=WEIGHTS, half_life_days=HALF_LIFE_DAYS, price_bands=EDGES
    )
    return build_features(events, params, catalog, profiles)


# ----------------------------------------------------------------------------- idiomatic pandas


def run_idiomatic(events: pd.DataFrame, catalog: pd.DataFrame, profiles: pd.DataFrame, ref: datetime) -> dict[str, Any]:
    ref_ts = pd.Timestamp(ref)
    ev = events.copy()
    ev["event_type"] = ev["event_type"].astype(str)
    ev["weight"] = ev["event_type"].map(WEIGHTS).fillna(0.0)
    ev["age_days"] = (ref_ts - ev["ts"]).dt.total_seconds() / 86400
    ev["decay"] = 0.5 ** (ev["age_days"] / HALF_LIFE_DAYS)
    ev["score"] = ev["weight"] * ev["decay"]
    ev["is_view"] = (ev["event_type"] == "view").astype(int)
    ev["is_cart"] = (ev["event_type"] == "add_to_cart").astype(int)
    ev["is_purchase"] = (ev["event_type"] == "purchase").astype(int)

    interactions = (
        ev.groupby(["user_id", "item_id"])
        .agg(
            strength=("score", "sum"),
            views=("is_view", "sum"),
            carts=("is_cart", "sum"),
            purchases=("is_purchase", "sum"),
            last_ts=("ts", "max"),
        )
        .reset_index()
        .merge(catalog[["item_id", "category"]], on="item_id", how="left")
    )

    def user_features(g: pd.DataFrame) -> pd.Series:
        return pd.Series(
            {
                "events": len(g),
                "views": g["is_view"].sum(),
                "carts": g["is_cart"].sum(),
                "purchases": g["is_purchase"].sum(),
                "sessions": g["session_id"].nunique(),
                "distinct_items": g["item_id"].nunique(),
                "strength": g["score"].sum(),
                "purchase_value": round(g.loc[g["event_type"] == "purchase", "price"].sum(), 2),
                "avg_price": round(g["price"].mean(), 2),
                "first_ts": g["ts"].min(),
                "last_ts": g["ts"].max(),
            }
        )

    users = ev.groupby("user_id").apply(user_features).reset_index()
    users["recency_days"] = (ref_ts - users["last_ts"]).dt.total_seconds() / 86400
    users = users.merge(profiles, on="user_id", how="left")
    users["tenure_days"] = (ref_ts - pd.to_datetime(users["signup_date"], utc=True)).dt.days.astype(float)

    def item_features(g: pd.DataFrame) -> pd.Series:
        views = g["is_view"].sum()
        return pd.Series(
            {
                "events": len(g),
                "views": views,
                "carts": g["is_cart"].sum(),
                "purchases": g["is_purchase"].sum(),
                "distinct_users": g["user_id"].nunique(),
                "popularity": g["score"].sum(),
                "conversion_rate": g["is_purchase"].sum() / views if views else 0.0,
                "cart_rate": g["is_cart"].sum() / views if views else 0.0,
                "last_ts": g["ts"].max(),
            }
        )

    items = ev.groupby("item_id").apply(item_features).reset_index()
    items = items.merge(catalog, on="item_id", how="left")
    items["price_band"] = pd.cut(items["price"], [-np.inf, *EDGES, np.inf], right=False, labels=band_labels(EDGES))
    return {"interactions": interactions, "users": users, "items": items}


# ----------------------------------------------------------------------------- polars


def run_polars(events: Any, catalog: Any, profiles: Any, ref: datetime) -> dict[str, Any]:
    import polars as pl

    ref_lit = pl.lit(pd.Timestamp(ref).to_pydatetime())
    et = pl.col("event_type").cast(pl.Utf8)
    age_days = (ref_lit - pl.col("ts")).dt.total_microseconds() / 86_400_000_000
    score = et.replace_strict(WEIGHTS, default=0.0, return_dtype=pl.Float64) * (0.5 ** (age_days / HALF_LIFE_DAYS))
    is_view, is_cart, is_buy = (et == "view"), (et == "add_to_cart"), (et == "purchase")
    lf = events.lazy().with_columns(score=score, is_view=is_view, is_cart=is_cart, is_buy=is_buy)
    inter = (
        lf.group_by("user_id", "item_id")
        .agg(
            strength=pl.col("score").sum(),
            views=pl.col("is_view").sum(),
            carts=pl.col("is_cart").sum(),
            purchases=pl.col("is_buy").sum(),
            last_ts=pl.col("ts").max(),
        )
        .join(catalog.lazy().select("item_id", "category"), on="item_id", how="left")
        .sort("user_id", "item_id")
    )
    users = (
        lf.group_by("user_id")
        .agg(
            events=pl.len(),
            views=pl.col("is_view").sum(),
            carts=pl.col("is_cart").sum(),
            purchases=pl.col("is_buy").sum(),
            sessions=pl.col("session_id").n_unique(),
            distinct_items=pl.col("item_id").n_unique(),
            strength=pl.col("score").sum(),
            purchase_value=pl.col("price").filter(pl.col("is_buy")).sum().round(2),
            avg_price=pl.col("price").mean().round(2),
            first_ts=pl.col("ts").min(),
            last_ts=pl.col("ts").max(),
        )
        .with_columns(
            recency_days=(ref_lit - pl.col("last_ts")).dt.total_microseconds() / 86_400_000_000,
        )
        .join(profiles.lazy(), on="user_id", how="left")
        .with_columns(
            tenure_days=(pl.lit(pd.Timestamp(ref).date()) - pl.col("signup_date")).dt.total_days().cast(pl.Float64),
        )
        .sort("user_id")
    )
    items = (
        lf.group_by("item_id")
        .agg(
            events=pl.len(),
            views=pl.col("is_view").sum(),
            carts=pl.col("is_cart").sum(),
            purchases=pl.col("is_buy").sum(),
            distinct_users=pl.col("user_id").n_unique(),
            popularity=pl.col("score").sum(),
            last_ts=pl.col("ts").max(),
        )
        .with_columns(
            conversion_rate=pl.when(pl.col("views") > 0).then(pl.col("purchases") / pl.col("views")).otherwise(0.0),
            cart_rate=pl.when(pl.col("views") > 0).then(pl.col("carts") / pl.col("views")).otherwise(0.0),
        )
        .join(catalog.lazy(), on="item_id", how="left")
        .with_columns(
            price_band=pl.col("price").cut(list(EDGES), labels=band_labels(EDGES), left_closed=True),
        )
        .sort("item_id")
    )
    out = pl.collect_all([inter, users, items])
    return dict(zip(("interactions", "users", "items"), out, strict=True))


# ----------------------------------------------------------------------------- duckdb


def run_duckdb(events: Any, catalog: Any, profiles: Any, ref: datetime, con: Any) -> dict[str, Any]:
    """``events``/``catalog``/``profiles`` are Arrow tables registered on ``con``."""
    con.register("events", events)
    con.register("catalog", catalog)
    con.register("profiles", profiles)
    ref_s = pd.Timestamp(ref).strftime("%Y-%m-%d %H:%M:%S+00")
    w = " ".join(f"WHEN '{k}' THEN {v}" for k, v in WEIGHTS.items())
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW ev AS SELECT user_id, item_id, session_id, price, ts,
          CAST(event_type AS VARCHAR) AS et,
          (CASE CAST(event_type AS VARCHAR) {w} ELSE 0 END) *
            pow(0.5, (epoch_us(TIMESTAMPTZ '{ref_s}') - epoch_us(ts)) / 86400000000.0 / {HALF_LIFE_DAYS}) AS score
        FROM events""")
    inter = con.sql("""
        SELECT p.*, c.category FROM (
          SELECT user_id, item_id, sum(score) AS strength, count_if(et = 'view') AS views,
                 count_if(et = 'add_to_cart') AS carts, count_if(et = 'purchase') AS purchases, max(ts) AS last_ts
          FROM ev GROUP BY ALL) p
        LEFT JOIN catalog c USING (item_id) ORDER BY user_id, item_id""").to_arrow_table()
    users = con.sql(f"""
        SELECT u.*, (epoch_us(TIMESTAMPTZ '{ref_s}') - epoch_us(u.last_ts)) / 86400000000.0 AS recency_days,
               p.* EXCLUDE (user_id),
               CAST(date_diff('day', p.signup_date, CAST(TIMESTAMPTZ '{ref_s}' AS DATE)) AS DOUBLE) AS tenure_days
        FROM (SELECT user_id, count(*) AS events, count_if(et = 'view') AS views,
                     count_if(et = 'add_to_cart') AS carts, count_if(et = 'purchase') AS purchases,
                     count(DISTINCT session_id) AS sessions, count(DISTINCT item_id) AS distinct_items,
                     sum(score) AS strength, round(coalesce(sum(price) FILTER (et = 'purchase'), 0), 2)
                     AS purchase_value, round(avg(price), 2) AS avg_price, min(ts) AS first_ts,
                     max(ts) AS last_ts
              FROM ev GROUP BY user_id) u
        LEFT JOIN profiles p USING (user_id) ORDER BY user_id""").to_arrow_table()
    edges = list(EDGES)
    labels = band_labels(EDGES)
    band = (
        "CASE "
        + " ".join(f"WHEN c.price < {e} THEN '{lbl}'" for e, lbl in zip(edges, labels, strict=False))
        + f" WHEN c.price IS NOT NULL THEN '{labels[-1]}' END"
    )
    items = con.sql(f"""
        SELECT i.*, CASE WHEN views > 0 THEN purchases / views ELSE 0 END AS conversion_rate,
               CASE WHEN views > 0 THEN carts / views ELSE 0 END AS cart_rate, c.* EXCLUDE (item_id),
               {band} AS price_band
        FROM (SELECT item_id, count(*) AS events, count_if(et = 'view') AS views,
                     count_if(et = 'add_to_cart') AS carts, count_if(et = 'purchase') AS purchases,
                     count(DISTINCT user_id) AS distinct_users, sum(score) AS popularity, max(ts) AS last_ts
              FROM ev GROUP BY item_id) i
        LEFT JOIN catalog c USING (item_id) ORDER BY item_id""").to_arrow_table()
    return {"interactions": inter, "users": users, "items": items}


# ----------------------------------------------------------------------------- equivalence


def to_pandas(table: Any) -> pd.DataFrame:
    if isinstance(table, pd.DataFrame):
        return table
    if hasattr(table, "read_all"):  # duckdb RecordBatchReader
        table = table.read_all()
    if hasattr(table, "to_pandas"):
        return table.to_pandas()
    raise TypeError(type(table))


_COMPARE = {
    "interactions": ("user_id", ["strength", "views", "carts", "purchases"]),
    "users": (
        "user_id",
        [
            "events",
            "views",
            "purchases",
            "sessions",
            "distinct_items",
            "strength",
            "purchase_value",
            "avg_price",
            "recency_days",
            "tenure_days",
        ],
    ),
    "items": ("item_id", ["events", "views", "purchases", "distinct_users", "popularity", "conversion_rate"]),
}


_ROUNDED_MEANS = {"avg_price"}
"""Means rounded to cents: engines that sum in another order may land on the other side of a half cent."""


def check_equivalent(reference: dict[str, Any], other: dict[str, Any], name: str) -> None:
    """Raise AssertionError when ``other`` disagrees with ``reference`` (row counts, sums, key order)."""
    for table, (key, columns) in _COMPARE.items():
        a, b = to_pandas(reference[table]), to_pandas(other[table])
        assert len(a) == len(b), f"{name}.{table}: {len(b)} rows, builtin has {len(a)}"
        assert np.array_equal(a[key].to_numpy(), b[key].to_numpy()), f"{name}.{table}: key order differs"
        for col in columns:
            x = a[col].to_numpy(dtype=np.float64, na_value=np.nan)
            y = b[col].to_numpy(dtype=np.float64, na_value=np.nan)
            atol = 0.01 + 1e-9 if col in _ROUNDED_MEANS else 1e-6  # each within half a cent of the mean
            assert np.allclose(x, y, rtol=1e-6, atol=atol, equal_nan=True), f"{name}.{table}.{col} differs"
        if table == "interactions":  # the traffic's category mix: the pair's item's category
            x, y = a["category"].astype("string"), b["category"].astype("string")
            assert x.equals(y), f"{name}.interactions.category differs"

"""A small synthetic clickstream with structure (users prefer a few categories, items have Zipf
popularity, some purchases repeat), used by the tests and the benchmark when no snapshot is given.

Vectorised numpy; deterministic for a seed. Columns match the event table the loader reads:
``user_id, item_id, ts, weight`` plus an item table ``item_id, category, price``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_events(
    n_users: int = 500,
    n_items: int = 300,
    n_events: int = 20_000,
    n_categories: int = 10,
    days: int = 60,
    repeat_share: float = 0.15,
    focus: float = 0.85,
    seed: int = 0,
    start: str = "2026-09-01",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n_categories = max(1, min(n_categories, n_items))
    item_cat = rng.permutation(np.arange(n_items) % n_categories)  # every category has items
    # Zipf-like popularity inside the catalogue
    item_pop = 1.0 / np.power(rng.permutation(n_items) + 1.0, 0.8)
    # each user: 2 favourite categories
    fav = np.stack([rng.integers(0, n_categories, size=n_users), rng.integers(0, n_categories, size=n_users)], 1)
    activity = rng.pareto(1.5, size=n_users) + 1.0
    users = rng.choice(n_users, size=n_events, p=activity / activity.sum())
    # category of each event: a favourite (with prob focus) or any category
    pick_fav = rng.random(n_events) < focus
    cat = np.where(
        pick_fav, fav[users, rng.integers(0, 2, size=n_events)], rng.integers(0, n_categories, size=n_events)
    )
    # item inside the category by popularity: sample via per-category cumulative weights
    order = np.lexsort((np.arange(n_items), item_cat))
    cat_sorted = item_cat[order]
    w = item_pop[order]
    starts = np.searchsorted(cat_sorted, np.arange(n_categories), side="left")
    ends = np.searchsorted(cat_sorted, np.arange(n_categories), side="right")
    cum = np.cumsum(w)
    base = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0.0)
    total = cum[np.maximum(ends - 1, 0)] - base
    u = rng.random(n_events)
    target = base[cat] + u * total[cat]
    pos = np.searchsorted(cum, target, side="left")
    pos = np.clip(pos, starts[cat], ends[cat] - 1)
    items = order[pos]
    t0 = pd.Timestamp(start, tz="UTC").value // 10**9
    ts = t0 + rng.integers(0, days * 86400, size=n_events)
    # repeat purchases: copy some earlier (user, item) pairs to a later time
    n_rep = int(n_events * repeat_share)
    src = rng.integers(0, n_events, size=n_rep)
    rep_ts = np.minimum(ts[src] + rng.integers(3600, 20 * 86400, size=n_rep), t0 + days * 86400 - 1)
    users = np.concatenate([users, users[src]])
    items = np.concatenate([items, items[src]])
    ts = np.concatenate([ts, rep_ts])
    events = pd.DataFrame(
        {
            "user_id": np.char.add("u", users.astype(str)),
            "item_id": np.char.add("i", items.astype(str)),
            "ts": pd.to_datetime(ts, unit="s", utc=True),
            "weight": np.ones(len(users), dtype=np.float32),
        }
    ).sort_values("ts", kind="stable", ignore_index=True)
    items_df = pd.DataFrame(
        {
            "item_id": np.char.add("i", np.arange(n_items).astype(str)),
            "category": np.char.add("c", item_cat.astype(str)),
            "price": np.round(rng.gamma(2.0, 20.0, size=n_items), 2),
        }
    )
    return events, items_df

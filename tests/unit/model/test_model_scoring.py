"""Top-k scoring, checked by hand on tiny models and against a brute-force reference on random ones."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from recops_model import RecModel, UnknownCategory, recommend, recommend_batch
from recops_model._scoring import _topk_1d

USERS = np.array(["u1", "u2", "u3"])
ITEMS = np.array(["a", "b", "c", "d"])
CATS = np.array(["x", "x", "y", "y"])
# u1 saw a; u2 saw b and d; u3 saw nothing
SEEN = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 2, 0, 1], [0, 0, 0, 0]], dtype=np.float32))
POP = np.array([4, 3, 2, 1], dtype=np.float32)


def factors() -> RecModel:
    # scores u1: a=1 b=.5 c=0 d=2 | u2: a=0 b=.5 c=1 d=0 | u3: a=1 b=1 c=1 d=2
    return RecModel(
        "puresvd", "factors", USERS, ITEMS, SEEN, POP, CATS,
        user_factors=np.array([[1, 0], [0, 1], [1, 1]], np.float32),
        item_factors=np.array([[1, 0], [0.5, 0.5], [0, 1], [2, 0]], np.float32),
    )  # fmt: skip


def item_item(dense: bool) -> RecModel:
    s = np.array([[0, 1, 0, 0], [1, 0, 0.5, 0], [0, 0.5, 0, 3], [0, 0, 3, 0]], np.float32)
    # u1 (a) -> b=1 ; u2 (2*b + d) -> a=2 c=1+3=4
    return RecModel("itemknn", "item_item", USERS, ITEMS, SEEN, POP, CATS, similarity=s if dense else sp.csr_matrix(s))


def popularity() -> RecModel:
    return RecModel("popularity", "popularity", USERS, ITEMS, SEEN, POP, CATS)


def ids(r):  # type: ignore[no-untyped-def]
    return r.item_ids


def test_factors_seen_excluded_and_order() -> None:
    m = factors()
    r = recommend(m, "u1", 3)
    assert r.item_ids == ["d", "b", "c"] and r.scores == [2.0, 0.5, 0.0] and not r.fallback
    assert ids(recommend(m, "u2", 10)) == ["c", "a"]  # fewer candidates than k: no padding
    assert ids(recommend(m, "u3", 4)) == ["d", "a", "b", "c"]  # ties by catalogue order


def test_factors_filters() -> None:
    m = factors()
    assert ids(recommend(m, "u1", 4, exclude_seen=False)) == ["d", "a", "b", "c"]
    assert ids(recommend(m, "u1", 4, exclude_items=["d", "zzz-unknown"])) == ["b", "c"]
    assert ids(recommend(m, "u1", 4, category="y")) == ["d", "c"]
    assert ids(recommend(m, "u1", 4, category="x")) == ["b"]
    assert ids(recommend(m, "u1", 4, category="x", exclude_items=["b"])) == []


def test_item_item_dense_and_sparse_agree() -> None:
    for dense in (True, False):
        m = item_item(dense)
        r = recommend(m, "u1", 2)
        assert r.item_ids == ["b", "c"] and r.scores == [1.0, 0.0]
        r = recommend(m, "u2", 2)
        assert r.item_ids == ["c", "a"] and r.scores == [4.0, 2.0]


def test_popularity_kind_excludes_seen() -> None:
    m = popularity()
    r = recommend(m, "u2", 4)
    assert r.item_ids == ["a", "c"] and r.scores == [4.0, 2.0] and not r.fallback
    assert ids(recommend(m, "u2", 4, exclude_seen=False)) == ["a", "b", "c", "d"]
    assert ids(recommend(m, "u1", 1, category="y")) == ["c"]


@pytest.mark.parametrize("make", [factors, popularity, lambda: item_item(False)])
def test_unknown_user_gets_popularity_fallback_with_filters(make) -> None:  # type: ignore[no-untyped-def]
    m = make()
    r = recommend(m, "stranger", 3)
    assert r.item_ids == ["a", "b", "c"] and r.fallback and r.fallback_reason == "UnknownUser"
    assert r.scores == [4.0, 3.0, 2.0]
    r = recommend(m, None, 3, category="y", exclude_items=["c"])
    assert r.item_ids == ["d"] and r.fallback and r.fallback_reason == "NoUser"
    assert ids(recommend(m, "stranger", 2, exclude_items=["a"])) == ["b", "c"]


def test_unknown_category_and_bad_k() -> None:
    m = factors()
    with pytest.raises(UnknownCategory, match="'z'"):
        recommend(m, "u1", 3, category="z")
    for k in (0, -1, True, 2.5):
        with pytest.raises(ValueError, match="k must be"):
            recommend(m, "u1", k)  # type: ignore[arg-type]


def test_batch_matches_single_and_keeps_order() -> None:
    m = factors()
    users = ["u3", "nobody", "u1", None, "u2", "u1"]
    batch = recommend_batch(m, users, 2, category="y")
    assert [r.user_id for r in batch] == users
    assert batch == [recommend(m, u, 2, category="y") for u in users]


def _random_model(n_users: int, n_items: int, seed: int) -> RecModel:
    rng = np.random.default_rng(seed)
    return RecModel(
        "puresvd", "factors",
        np.array([f"u{i}" for i in range(n_users)]),
        np.array([f"i{i}" for i in range(n_items)]),
        sp.random(n_users, n_items, density=0.05, format="csr", dtype=np.float32, random_state=seed),
        rng.random(n_items).astype(np.float32),
        np.array([f"c{i % 7}" for i in range(n_items)]),
        user_factors=rng.standard_normal((n_users, 8)).astype(np.float32),
        item_factors=rng.standard_normal((n_items, 8)).astype(np.float32),
    )  # fmt: skip


def test_random_model_against_brute_force() -> None:
    m = _random_model(50, 3000, 3)
    assert m.user_factors is not None and m.item_factors is not None
    users = [f"u{i}" for i in range(50)]
    batch = recommend_batch(m, users, 25, category="c3", exclude_items=["i3", "i10"])
    for i, r in enumerate(batch):
        s = (m.item_factors @ m.user_factors[i]).astype(np.float32)
        s[m.seen[i].indices] = -np.inf
        s[[3, 10]] = -np.inf
        s[m.item_categories != "c3"] = -np.inf
        want = np.lexsort((np.arange(s.size), -s))[:25]
        assert r.item_ids == m.item_ids[want].tolist()
        np.testing.assert_allclose(r.scores, s[want], rtol=1e-6)
        single = recommend(m, f"u{i}", 25, category="c3", exclude_items=["i3", "i10"])
        # gemm (batch) and gemv (single) may round the last bit differently
        assert single.item_ids == r.item_ids
        np.testing.assert_allclose(single.scores, r.scores, rtol=1e-5)


@pytest.mark.parametrize("k", [1, 3, 10, 100, 999, 1000, 5000])
@pytest.mark.parametrize("layout", ["random", "ascending", "descending", "ties", "mostly_inf"])
def test_topk_kernel_is_exact(k: int, layout: str) -> None:
    rng = np.random.default_rng(k)
    n = 4000
    s = {
        "random": rng.standard_normal(n),
        "ascending": np.arange(n, dtype=float),
        "descending": -np.arange(n, dtype=float),
        "ties": rng.integers(0, 3, n).astype(float),
        "mostly_inf": np.where(rng.random(n) < 0.99, -np.inf, rng.standard_normal(n)),
    }[layout].astype(np.float32)
    idx, vals = _topk_1d(s, k)
    want = np.lexsort((np.arange(n), -s))[: min(k, n)]
    np.testing.assert_array_equal(idx, want)
    np.testing.assert_array_equal(vals, s[want])

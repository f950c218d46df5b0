"""The int8 first pass of factor models (recops_model._quant, _qscore.c): its error bound holds, and the
top-k it returns is the top-k of the float32 path, on random models, with every mask, with ties, and
where it has to hand a user back to the float32 path.

These run the real kernel. It is built by the package install (hatch_build.py); on a CPU without
AVX-512 VNNI the tests that need it are skipped and say so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from recops_model import RecModel, Recommendations, _quant, recommend_batch

LIBRARY = Path(_quant.__file__).with_name("_qscore.so")
NONE = np.zeros(0, np.int64)


def _cpu_has_vnni() -> bool:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return all(f in flags.split() for f in ("avx512f", "avx512bw", "avx512vl", "avx512_vnni"))


needs_kernel = pytest.mark.skipif(not _cpu_has_vnni(), reason="this CPU has no AVX-512 VNNI: float32 scoring only")


def model(
    n_users: int = 300,
    n_items: int = 20_011,
    f: int = 64,
    *,
    seed: int = 0,
    item_scale: np.ndarray | None = None,
    categories: int = 5,
    seen_per_user: int = 30,
) -> RecModel:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n_items, f)).astype(np.float32)
    if item_scale is not None:
        v *= item_scale[:, None].astype(np.float32)
    rows = np.repeat(np.arange(n_users), seen_per_user)
    cols = rng.integers(0, n_items, rows.shape[0])
    seen = sp.csr_matrix((np.ones(rows.shape[0], np.float32), (rows, cols)), shape=(n_users, n_items))
    seen.sum_duplicates()
    return RecModel(
        algorithm="puresvd",
        kind="factors",
        user_ids=np.array([f"u{i}" for i in range(n_users)]),
        item_ids=np.array([f"i{i}" for i in range(n_items)]),
        seen=seen,
        popularity=rng.random(n_items).astype(np.float32),
        item_categories=np.array([f"c{i % categories}" for i in range(n_items)]),
        user_factors=rng.standard_normal((n_users, f)).astype(np.float32),
        item_factors=v,
    )


def float32_path(m: RecModel, users: list[str], k: int, **kw: object) -> list[Recommendations]:
    """The same request with the int8 index switched off for this model."""
    saved = m.__dict__.get("_quant_index")
    m.__dict__["_quant_index"] = None
    try:
        return recommend_batch(m, users, k, **kw)  # type: ignore[arg-type]
    finally:
        m.__dict__["_quant_index"] = saved


def assert_same(got: list[Recommendations], want: list[Recommendations]) -> None:
    """Same items in the same order and the same scores up to float32 summation order (the float32 path
    multiplies with BLAS, the kernel with its own FMAs); two items may swap only where their scores tie
    to that precision."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.user_id == w.user_id and g.fallback == w.fallback
        assert len(g.item_ids) == len(w.item_ids)
        np.testing.assert_allclose(g.scores, w.scores, rtol=2e-5, atol=2e-5)
        for a, b, sa in zip(g.item_ids, w.item_ids, g.scores, strict=True):
            if a != b:  # only a near-tie may order differently
                sb = g.scores[g.item_ids.index(b)] if b in g.item_ids else None
                assert sb is not None and abs(sa - sb) <= 2e-5 * max(1.0, abs(sa)), (a, b)


def test_the_kernel_is_built_by_the_install() -> None:
    """make/pip runs hatch_build.py, which compiles _qscore.c next to the package."""
    assert LIBRARY.is_file(), f"{LIBRARY} is missing: the install did not build the int8 kernel (no C compiler?)"


@needs_kernel
def test_kernel_loads_on_this_cpu() -> None:
    assert _quant.available()


@needs_kernel
@pytest.mark.parametrize("f", [20, 64, 100])
def test_error_bound_holds_for_every_item(f: int) -> None:
    """|approx - u.v| <= margin / 2 for every (user, item), with u.v in float64: the bound the exactness rests on.
    Item norms spread over two orders of magnitude and an all-zero item are included."""
    rng = np.random.default_rng(f)
    scale = np.exp(rng.uniform(-2.3, 2.3, 9_001))
    scale[17] = 0.0
    m = model(n_users=64, n_items=9_001, f=f, item_scale=scale)
    index = _quant.index_for(m)
    assert index is not None and index.groups == {20: 8, 64: 16, 100: 32}[f]
    rows = np.arange(64)
    approx = index.approx_scores(rows).astype(np.float64)
    exact = m.user_factors.astype(np.float64) @ m.item_factors.astype(np.float64).T
    slack = index.margin[rows].astype(np.float64)[:, None] / 2
    err = np.abs(approx - exact)
    assert (err <= slack).all(), float((err - slack).max())
    assert err.max() > 0  # it is an approximation: the test would see a broken bound


@needs_kernel
@pytest.mark.parametrize("batch", [1, 5, 16])
@pytest.mark.parametrize("k", [1, 10, 100])
def test_topk_equals_the_float32_path(batch: int, k: int) -> None:
    m = model(seed=batch * 1000 + k)
    index = _quant.index_for(m)
    assert index is not None
    users = [f"u{i}" for i in range(0, 300, 7)][: batch * 3]
    for start in range(0, len(users), batch):
        chunk = users[start : start + batch]
        assert_same(recommend_batch(m, chunk, k), float32_path(m, chunk, k))
        rows = np.array([m.user_index[u] for u in chunk])
        _, _, ok = index.topk(rows, k, seen=True, exclude=NONE, category=None, outside=None)
        assert ok.all()  # the int8 path answered these, not the float32 fallback


@needs_kernel
def test_every_mask_and_unknown_users() -> None:
    m = model(seed=7)
    index = _quant.index_for(m)
    assert index is not None
    users = ["u1", "nobody", "u2", "u3", "u250", ""]
    seen_items = [f"i{j}" for j in m.seen[1].indices[:5]]
    cases: list[dict[str, object]] = [
        {"exclude_seen": False},
        {"exclude_seen": True},
        {"exclude_items": ["i5", "i77", "zzz", *seen_items]},
        {"category": "c3"},
        {"category": "c0", "exclude_items": ["i0", "i5"], "exclude_seen": False},
    ]
    for kw in cases:
        got, want = recommend_batch(m, users, 10, **kw), float32_path(m, users, 10, **kw)  # type: ignore[arg-type]
        assert_same(got, want)
        excl = np.array([m.item_index[i] for i in kw.get("exclude_items", []) if i in m.item_index])  # type: ignore[attr-defined]
        cat = kw.get("category")
        outside = None if cat is None else ~m.category_mask(str(cat))
        _, _, ok = index.topk(np.array([1, 2, 3, 250]), 10, seen=bool(kw.get("exclude_seen", True)),
                              exclude=excl.astype(np.int64), category=cat, outside=outside)  # type: ignore[arg-type]  # fmt: skip
        assert ok.all()  # the int8 path answered
        for r in got:
            if kw.get("category"):
                assert all(int(i[1:]) % 5 == int(str(kw["category"])[1:]) for i in r.item_ids)
            assert not set(r.item_ids) & set(kw.get("exclude_items", []))  # type: ignore[call-overload]


@needs_kernel
def test_seen_items_never_come_back() -> None:
    """Items a user has seen score highest here (their rows copy the user's vector) and must still be left out."""
    m = model(seed=3)
    assert m.user_factors is not None and m.item_factors is not None
    for row in range(20):
        for item in m.seen[row].indices:
            m.item_factors[item] = m.user_factors[row] * 3
    m.__dict__.pop("_quant_index", None)
    users = [f"u{i}" for i in range(20)]
    got = recommend_batch(m, users, 10)
    assert_same(got, float32_path(m, users, 10))
    for row, r in enumerate(got):
        assert not {int(i[1:]) for i in r.item_ids} & set(m.seen[row].indices.tolist())
    assert_same(recommend_batch(m, users, 10, exclude_seen=False), float32_path(m, users, 10, exclude_seen=False))


@needs_kernel
def test_ties_go_to_the_lower_item_index() -> None:
    m = model(seed=11)
    assert m.item_factors is not None and m.user_factors is not None
    best = int(np.argmax(m.item_factors @ m.user_factors[4]))
    for dup in (3, 9_000, 19_999):  # copies of the best item, before and after it
        m.item_factors[dup] = m.item_factors[best]
    m.__dict__.pop("_quant_index", None)
    r = recommend_batch(m, ["u4"], 4, exclude_seen=False)[0]
    assert r.item_ids[:4] == sorted(r.item_ids[:4], key=lambda i: int(i[1:]))
    assert {int(i[1:]) for i in r.item_ids[:4]} == {3, best, 9_000, 19_999} and len(set(r.scores[:4])) == 1


@needs_kernel
def test_users_it_cannot_bound_go_to_the_float32_path() -> None:
    """A user with a NaN factor and a category with fewer items than k are handed back (ok False) and
    answered exactly as the float32 path answers them."""
    m = model(seed=5, categories=400)
    assert m.user_factors is not None
    m.user_factors[2, 5] = np.nan
    m.__dict__.pop("_quant_index", None)
    index = _quant.index_for(m)
    assert index is not None
    rows = np.array([0, 1, 2, 3])
    none = NONE
    _, _, ok = index.topk(rows, 10, seen=True, exclude=none, category=None, outside=None)
    assert ok.tolist() == [True, True, False, True]
    users = ["u0", "u1", "u2", "u3"]
    got, want = recommend_batch(m, users, 10), float32_path(m, users, 10)
    assert_same([got[i] for i in (0, 1, 3)], [want[i] for i in (0, 1, 3)])
    assert got[2] == want[2]  # the float32 path itself answered the NaN user
    outside = ~m.category_mask("c7")  # 1 item in 400: 50 items
    _, _, ok = index.topk(rows, 10, seen=False, exclude=none, category="c7", outside=outside)
    assert ok.tolist() == [True, True, False, True]  # a small category is fine
    _, _, ok = index.topk(rows, 60, seen=False, exclude=none, category="c7", outside=outside)
    assert not ok.any()  # fewer allowed items than k: no k-th best to bound
    for k in (10, 60):
        got, want = recommend_batch(m, users, k, category="c7"), float32_path(m, users, k, category="c7")
        assert_same(got, want)


@needs_kernel
def test_flat_scores_are_handed_back() -> None:
    """All items nearly alike: every group reaches theta - margin, so the kernel gives up and float32 answers."""
    m = model(seed=9, n_items=8_192)
    assert m.item_factors is not None
    m.item_factors[:] = m.item_factors[0] + 1e-3 * m.item_factors
    m.__dict__.pop("_quant_index", None)
    index = _quant.index_for(m)
    assert index is not None
    _, _, ok = index.topk(np.arange(8), 10, seen=True, exclude=np.zeros(0, np.int64), category=None, outside=None)
    assert not ok.any()
    users = [f"u{i}" for i in range(8)]
    assert_same(recommend_batch(m, users, 10), float32_path(m, users, 10))


def test_small_or_unsupported_models_get_no_index() -> None:
    assert _quant.build_index(model(n_items=_quant.MIN_ITEMS - 1)) is None
    assert _quant.build_index(model(n_items=5_000, f=130)) is None  # no kernel past 128 factors
    bad = model(n_items=5_000)
    assert bad.item_factors is not None
    bad.item_factors[10, 3] = np.inf
    assert _quant.build_index(bad) is None  # non-finite items: float32 throughout
    m = model(n_users=3, n_items=5_000)
    broken = sp.csr_matrix((np.ones(1, np.float32), np.array([5_000]), np.array([0, 1, 1, 1])), shape=(3, 5_000))
    object.__setattr__(m, "seen", broken)  # RecModel is frozen; load_model would have refused this matrix
    assert _quant.build_index(m) is None  # an item index past the catalogue: the kernel would write out of bounds


def test_switched_off_by_environment() -> None:
    code = "import recops_model._quant as q; print(q.available())"
    env = {**os.environ, "RECOPS_INT8_PREFILTER": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

"""The block top-k (one pass for a micro-batch of users) answers exactly what the per-row kernel answers."""

from __future__ import annotations

import numpy as np
import pytest
from recops_model._scoring import _topk_1d, _topk_block


def _scores(layout: str, rng: np.random.Generator, b: int, n: int) -> np.ndarray:
    if layout == "random":
        s = rng.standard_normal((b, n))
    elif layout == "few_ties":
        s = np.round(rng.standard_normal((b, n)) * 4) / 4
    elif layout == "heavy_ties":
        s = rng.integers(0, 50, (b, n)).astype(float)
    elif layout == "masked":
        s = rng.standard_normal((b, n))
        s[rng.random((b, n)) < 0.6] = -np.inf
    elif layout == "category":  # one item in thirty left
        s = rng.standard_normal((b, n))
        s[:, rng.random(n) < 0.97] = -np.inf
    else:  # sorted rows with signed zeros
        s = np.sort(rng.standard_normal((b, n)), axis=1)
        s[:, ::7] = 0.0
        s[:, ::11] = -0.0
    return s.astype(np.float32)


@pytest.mark.parametrize("n", [1000, 4099, 10000, 12345, 100003])
@pytest.mark.parametrize("k", [1, 5, 10, 50, 300])
@pytest.mark.parametrize("layout", ["random", "few_ties", "heavy_ties", "masked", "category", "signed_zeros"])
@pytest.mark.parametrize("order", ["C", "F"])  # F: the users x items view of an items x users product
def test_block_topk_equals_per_row_topk(n: int, k: int, layout: str, order: str) -> None:
    rng = np.random.default_rng(n * 1000 + k)
    s = _scores(layout, rng, 17, n)
    if order == "F":
        s = np.ascontiguousarray(s.T).T
        assert s.flags.f_contiguous and not s.flags.c_contiguous
    got = _topk_block(s, k)
    if got is None:  # the caller then takes _topk_1d for every row: nothing to compare
        assert layout in ("heavy_ties", "category") or 2 * max(4 * k, int(2.0 * np.sqrt(n * k))) >= n
        return
    top, vals = got
    for j in range(s.shape[0]):
        idx, v = _topk_1d(s[j].copy(), k)
        np.testing.assert_array_equal(top[j], idx)
        np.testing.assert_array_equal(vals[j].view(np.int32), v.view(np.int32))  # the same bits, -0.0 too


@pytest.mark.parametrize("n", [10000, 100000])
def test_block_topk_answers_the_common_case(n: int) -> None:
    """The server's case (16 users, 10k or 100k items, k=10, either layout) goes through the block path,
    not the fallback."""
    s = _scores("random", np.random.default_rng(0), 16, n)
    assert _topk_block(s, 10) is not None
    assert _topk_block(np.ascontiguousarray(s.T).T, 10) is not None


def test_block_topk_refuses_a_strided_block() -> None:
    s = _scores("random", np.random.default_rng(2), 8, 20000)[:, ::2]
    assert _topk_block(s, 10) is None


def test_block_topk_leaves_nan_rows_to_the_per_row_kernel() -> None:
    s = _scores("random", np.random.default_rng(1), 4, 10000)
    s[2, 123] = np.nan
    assert _topk_block(s, 10) is None

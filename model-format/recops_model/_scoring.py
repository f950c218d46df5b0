"""Top-k scoring: dense float32 scores, seen/exclude/category masks, ``np.argpartition``.

Known users are scored by the model's kind (factors: ``U[u] @ V.T``; item_item: ``seen[u] @ S``;
popularity: the popularity vector). Unknown users (or ``user_id=None``) get the popularity fallback,
which honours the same filters. Scoring for many users at once is one matrix product per chunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from . import _quant
from ._format import RecModel

# Keep a batch's dense score block under ~64 MiB of float32.
_BLOCK_FLOATS = 16 * 1024 * 1024
_NEG_INF = np.float32(-np.inf)
# one user's scores: ``np.vecdot`` for item factors larger than this (about a server core's share of L3), else BLAS
_VECDOT_MIN_BYTES = 16 * 1024 * 1024
# up to this many top-k candidates are sorted at once (a few small numpy calls fewer than partitioning)
_SORT_MAX = 256


class UnknownCategory(ValueError):
    """The requested category does not occur in the model's catalogue."""

    def __init__(self, category: str, known: Iterable[str]) -> None:
        known_sorted = sorted(known)
        shown = ", ".join(known_sorted[:20]) + (" ..." if len(known_sorted) > 20 else "")
        super().__init__(f"category {category!r} is not in the model's catalogue (known: {shown})")
        self.category = category
        self.known = known_sorted


@dataclass(frozen=True)
class Recommendations:
    """Top-k result for one user: item ids best first, their scores, and whether the
    popularity fallback was used (``fallback_reason``: ``"UnknownUser"`` or ``"NoUser"``)."""

    user_id: str | None
    item_ids: list[str]
    scores: list[float]
    fallback: bool
    fallback_reason: str | None = None
    # catalogue row of every returned item (for popularity statistics); not part of equality
    item_indices: list[int] = field(default_factory=list, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "userId": self.user_id,
            "items": [{"itemId": i, "score": s} for i, s in zip(self.item_ids, self.scores, strict=True)],
            "fallback": self.fallback,
            "fallbackReason": self.fallback_reason,
        }


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _exclude_indices(model: RecModel, exclude_items: Iterable[str]) -> np.ndarray:
    index = model.item_index
    idx = [index[i] for i in exclude_items if i in index]
    return np.asarray(idx, dtype=np.int64)


def _category_mask(model: RecModel, category: str | None) -> np.ndarray | None:
    if category is None:
        return None
    if category not in model.categories:
        raise UnknownCategory(category, model.categories)
    return model.category_mask(category)


def _popular_candidates(model: RecModel, category: str | None) -> np.ndarray:
    """Item indices by descending popularity, restricted to ``category`` (cached per category)."""
    cache: dict[str | None, np.ndarray] = model.__dict__.setdefault("_popular_by_category", {})
    order = cache.get(category)
    if order is None:
        order = model.popularity_order
        if category is not None:
            order = order[model.category_mask(category)[order]]
        cache[category] = order
    return order


def _popularity_topk(
    model: RecModel, k: int, banned: np.ndarray, category: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """Walk the (category) popularity order skipping ``banned`` item indices: O(k + |banned|)."""
    order = _popular_candidates(model, category)
    take = min(order.shape[0], k + banned.shape[0])
    head = order[:take]
    if banned.shape[0]:
        head = head[~np.isin(head, banned, assume_unique=False)]
    head = head[:k]
    return head, model.popularity[head]


def _score_block(model: RecModel, rows: np.ndarray) -> np.ndarray:
    """Dense float32 scores (len(rows), n_items) for known user rows."""
    if model.kind == "factors":
        assert model.user_factors is not None and model.item_factors is not None
        if rows.shape[0] == 1:
            # one pass over the row-major item factors. Out of cache numpy's vecdot loop keeps closer to the
            # memory floor than BLAS sgemv "T" (1M items: 1.10x vs 1.42x the time of reading the matrix once;
            # 100k: 1.29x vs 1.73x); in cache sgemv is twice as fast (10k items: 1.01x vs 2.16x)
            v, u = model.item_factors, model.user_factors[rows[0]]
            out: np.ndarray = (np.vecdot(v, u) if v.nbytes > _VECDOT_MIN_BYTES else v @ u)[None, :]
            return out
        # items x users from row-major V, returned transposed (an F-ordered view): OpenBLAS runs this
        # orientation 2x faster than ``U @ V.T`` with column-major V (100k items, 16 users: 180 vs 353 us
        # per user); the masks and ``_topk_block`` work on either layout without a copy
        block: np.ndarray = (model.item_factors @ model.user_factors[rows].T).T
        return block
    if model.kind == "item_item":
        s = model.similarity
        hist = model.seen[rows]
        prod: Any = hist @ s
        dense = prod.toarray() if sp.issparse(prod) else prod
        return np.asarray(dense, dtype=np.float32)
    # popularity: same vector for everyone (only reached with filters that need a dense pass)
    return np.tile(model.popularity, (rows.shape[0], 1))


def _topk_1d(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of one score row, best first, ties by lower item index.

    A plain ``argpartition`` over 100k floats costs ~20x a pass that only compares. So first take the
    k-th largest of a strided sample (``m ~ 2*sqrt(n*k)`` entries) as a threshold: it is a lower bound
    of the true k-th largest, so every true top-k item passes ``scores >= t``; then sort the ~n*k/m
    candidates (``partition`` them first when there are many). Exact for any input (worst case:
    everything passes).
    """
    n = scores.shape[0]
    if k >= n:
        cand = np.arange(n)
    else:
        m = max(4 * k, int(2.0 * np.sqrt(n * k)))
        if 2 * m < n:
            stride = n // m
            sample = scores[::stride]
            t = np.partition(sample, sample.shape[0] - k)[sample.shape[0] - k]
            cand = np.flatnonzero(scores >= t)
        else:
            cand = np.arange(n)
        if cand.shape[0] > max(k, _SORT_MAX):
            # exact tie handling: everything above the k-th value, then the lowest indices equal to it
            cv = scores[cand]
            kth = np.partition(cv, cv.shape[0] - k)[cv.shape[0] - k]
            above = cand[cv > kth]
            cand = np.concatenate([above, cand[cv == kth][: k - above.shape[0]]])
    vals = scores[cand]
    # stable: among equal scores the lower index first (cand is ascending, or above + ties ascending)
    order = np.argsort(-vals, kind="stable")[:k]
    return cand[order], vals[order]


def _result(
    model: RecModel,
    user_id: str | None,
    idx: np.ndarray,
    vals: np.ndarray,
    fallback: bool,
    reason: str | None,
) -> Recommendations:
    keep = np.isfinite(vals)
    if not keep.all():
        idx, vals = idx[keep], vals[keep]
    return Recommendations(
        user_id=user_id,
        item_ids=model.item_ids[idx].tolist(),
        scores=vals.tolist(),  # Python floats
        fallback=fallback,
        fallback_reason=reason,
        item_indices=idx.tolist(),
    )


def _mask_seen(model: RecModel, scores: np.ndarray, rows: np.ndarray) -> None:
    """Set every (row, item the row's user has seen) score to -inf: one scatter for the whole block."""
    indptr, indices = model.seen.indptr, model.seen.indices
    if rows.shape[0] < 4:  # a scatter per row is cheaper than building the block's index arrays
        for j, row in enumerate(rows.tolist()):
            scores[j, indices[indptr[row] : indptr[row + 1]]] = _NEG_INF
        return
    starts = indptr[rows]
    lens = indptr[rows + 1] - starts
    total = int(lens.sum())
    if not total:
        return
    # positions in ``indices``: row j's run starts[j] .. starts[j] + lens[j], concatenated
    ends = np.cumsum(lens)
    pos = np.arange(total) + np.repeat(starts - (ends - lens), lens)
    scores[np.repeat(np.arange(rows.shape[0]), lens), indices[pos]] = _NEG_INF


def _group_size(n: int, m: int) -> int:
    """Items per strided group: about ``n / m``, preferring a divisor of ``n`` (no tail to visit)."""
    g = n // m
    for d in (0, 1, -1, 2, -2):
        if g + d > 0 and n % (g + d) == 0 and n // (g + d) >= m // 2:
            return g + d
    return g


def _topk_block(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Top-k of every row of a C- or F-contiguous block (users x items), best first, ties by lower item index:
    for each row exactly what ``_topk_1d`` returns. ``None`` where ``_topk_1d`` should answer instead
    (small catalogues, NaN scores, rows masked almost entirely, heavy ties).

    Items fall into ``G`` strided groups (item ``j + G*i`` in group ``j``; the last ``n - g*G`` items,
    fewer than ``g``, in none: the tail). The k-th largest of ``4k`` maxima of unions of groups is a
    lower bound ``t`` of a row's k-th largest score: k disjoint sets of items each hold one at least as
    large. Every item scoring ``>= t`` lies in a group whose maximum is ``>= t`` (or in the tail), so
    the candidates come from those few groups (about k per row) without another pass over the row;
    sorting them by (row, -score, item) orders each row's top-k exactly as ``_topk_1d`` does."""
    b, n = scores.shape
    m = max(4 * k, int(2.0 * np.sqrt(n * k)))
    item_major = scores.flags.f_contiguous and not scores.flags.c_contiguous
    if k >= n or 2 * m >= n or not (scores.flags.c_contiguous or item_major):
        return None
    g = _group_size(n, m)
    groups = n // g
    top_groups = 4 * k
    if groups < top_groups:
        return None
    if item_major:  # scores.T is C-contiguous (items x users): the same views with the user axis last
        head_t = scores.T[: g * groups].reshape(g, groups, b)  # head_t[i, j, r] = scores[r, j + groups*i]
        gmax = np.ascontiguousarray(head_t.max(axis=0).T)
    else:
        head = scores[:, : g * groups].reshape(b, g, groups)  # a view: head[r, i, j] = scores[r, j + groups*i]
        gmax = head.max(axis=1)
    if np.isnan(gmax).any():  # NaN would hide a group's other items; _topk_1d decides as it always did
        return None
    unions = gmax[:, : (groups // top_groups) * top_groups].reshape(b, -1, top_groups).max(axis=1)
    t = np.sort(unions, axis=1)[:, top_groups - k]
    if not np.isfinite(t).all():  # most of a row masked (-inf): _topk_1d's exact path
        return None
    # np.nonzero of a 2-d mask costs ~3x a flat one: the same (row, group) pairs in the same order
    r, j = np.divmod(np.flatnonzero(gmax >= t[:, None]), groups)
    if r.shape[0] > 8 * k * b:  # heavy ties: many groups reach t
        return None
    vals = head_t[:, j, r].T if item_major else head[r, :, j]  # (selected groups, g)
    hit_p, hit_i = np.divmod(np.flatnonzero(vals >= t[r, None]), g)
    rows, items, vals = r[hit_p], j[hit_p] + groups * hit_i, vals[hit_p, hit_i]
    if g * groups < n:
        tail = scores[:, g * groups :]
        tr, ti = np.nonzero(tail >= t[:, None])
        rows = np.concatenate([rows, tr])
        items = np.concatenate([items, ti + g * groups])
        vals = np.concatenate([vals, tail[tr, ti]])
    order = np.lexsort((items, -vals, rows))
    starts = np.searchsorted(rows[order], np.arange(b + 1))
    if int((starts[1:] - starts[:-1]).min()) < k:  # a row with fewer than k candidates (t bounds: cannot happen)
        return None
    sel = order[starts[:-1, None] + np.arange(k)]
    return items[sel], vals[sel]


def _topk_results(model: RecModel, user_ids: Sequence[str | None], scores: np.ndarray, k: int) -> list[Recommendations]:
    """``_result(model, u, *_topk_1d(row, k), False, None)`` for every row of ``scores`` (users x items),
    with a few numpy calls per block instead of per row where ``_topk_block`` can answer."""
    block = _topk_block(scores, k) if scores.shape[0] > 1 else None
    if block is None:
        return [_result(model, u, *_topk_1d(scores[j], k), False, None) for j, u in enumerate(user_ids)]
    top, top_vals = block
    if not np.isfinite(top_vals).all():
        return [_result(model, u, top[j], top_vals[j], False, None) for j, u in enumerate(user_ids)]
    ids, score_lists, idx_lists = model.item_ids[top].tolist(), top_vals.tolist(), top.tolist()
    return [Recommendations(u, ids[j], score_lists[j], False, None, idx_lists[j]) for j, u in enumerate(user_ids)]


def recommend_batch(
    model: RecModel,
    user_ids: Sequence[str | None],
    k: int,
    *,
    exclude_seen: bool = True,
    exclude_items: Iterable[str] = (),
    category: str | None = None,
) -> list[Recommendations]:
    """Top-``k`` for many users at once (one matrix product per block of users), in input order."""
    k = _check_k(k)
    mask = _category_mask(model, category)
    excl = _exclude_indices(model, exclude_items)
    index = model.user_index
    results: list[Recommendations | None] = [None] * len(user_ids)
    known_pos: list[int] = []
    known_rows: list[int] = []
    for pos, uid in enumerate(user_ids):
        row = index.get(uid) if uid is not None else None
        if row is None:
            reason = "NoUser" if uid is None or uid == "" else "UnknownUser"
            idx, vals = _popularity_topk(model, k, excl, category)
            results[pos] = _result(model, uid, idx, vals, True, reason)
        else:
            known_pos.append(pos)
            known_rows.append(row)

    if known_rows:
        rows_all = np.asarray(known_rows, dtype=np.int64)
        if model.kind == "popularity":
            seen = model.seen
            for pos, row in zip(known_pos, known_rows, strict=True):
                banned = excl
                if exclude_seen:
                    hist = seen.indices[seen.indptr[row] : seen.indptr[row + 1]]
                    banned = np.concatenate([excl, hist.astype(np.int64)]) if hist.shape[0] else excl
                idx, vals = _popularity_topk(model, k, banned, category)
                results[pos] = _result(model, user_ids[pos], idx, vals, False, None)
        else:
            block = max(1, _BLOCK_FLOATS // max(1, model.n_items))
            masks = _Masks(exclude_seen, excl, category, None if mask is None else ~mask)
            quant = _quant.index_for(model) if model.kind == "factors" else None
            if quant is not None and 16 * k > model.n_items:
                quant = None  # k near the catalogue size: nothing to prefilter
            for start in range(0, rows_all.shape[0], block):
                rows = rows_all[start : start + block]
                positions = known_pos[start : start + rows.shape[0]]
                users = [user_ids[p] for p in positions]
                if quant is None:
                    recs = _exact_topk(model, rows, users, k, masks)
                else:
                    recs = _prefiltered_topk(model, quant, rows, users, k, masks)
                for pos, rec in zip(positions, recs, strict=True):
                    results[pos] = rec
    return [r for r in results if r is not None]


@dataclass(frozen=True)
class _Masks:
    """What a request leaves out: the user's seen items, item indices, items outside the category."""

    seen: bool
    exclude: np.ndarray
    category: str | None
    not_category: np.ndarray | None

    def apply(self, model: RecModel, scores: np.ndarray, rows: np.ndarray) -> None:
        if self.seen:
            _mask_seen(model, scores, rows)
        if self.exclude.shape[0]:
            scores[:, self.exclude] = _NEG_INF
        if self.not_category is not None:
            scores[:, self.not_category] = _NEG_INF


def _exact_topk(
    model: RecModel, rows: np.ndarray, users: Sequence[str | None], k: int, masks: _Masks
) -> list[Recommendations]:
    """Every item scored in float32, masked, top-k."""
    scores = _score_block(model, rows)
    if not scores.flags.writeable or scores.dtype != np.float32:
        scores = np.array(scores, dtype=np.float32)
    masks.apply(model, scores, rows)
    return _topk_results(model, users, scores, k)


def _prefiltered_topk(
    model: RecModel, index: _quant.QuantIndex, rows: np.ndarray, users: Sequence[str | None], k: int, masks: _Masks
) -> list[Recommendations]:
    """The exact top-k of ``_quant`` (int8 candidates, float32 rescoring, in the kernel); users it cannot
    bound (most items masked, a margin wider than the scores' spread) are scored in full (``_exact_topk``)."""
    top, vals, ok = index.topk(
        rows, k, seen=masks.seen, exclude=masks.exclude, category=masks.category, outside=masks.not_category
    )
    ids, score_lists, idx_lists = model.item_ids[top].tolist(), vals.tolist(), top.tolist()
    recs: list[Recommendations | None] = [
        Recommendations(u, ids[j], score_lists[j], False, None, idx_lists[j]) if ok[j] else None
        for j, u in enumerate(users)
    ]
    if not ok.all():
        redo = np.flatnonzero(~ok)
        again = _exact_topk(model, rows[redo], [users[j] for j in redo.tolist()], k, masks)
        for j, rec in zip(redo.tolist(), again, strict=True):
            recs[j] = rec
    return [r for r in recs if r is not None]


def prepare(model: RecModel) -> str:
    """Build what scoring looks up lazily (id indices, popularity order, the int8 index), so the first
    requests after a load do not pay for it. Returns how the model is scored: ``"int8+float32"`` (the
    int8 first pass, exact float32 answers) or ``"float32"``."""
    _ = model.user_index, model.item_index, model.categories, model.popularity_order
    return "int8+float32" if model.kind == "factors" and _quant.index_for(model) is not None else "float32"


def recommend(
    model: RecModel,
    user_id: str | None,
    k: int,
    *,
    exclude_seen: bool = True,
    exclude_items: Iterable[str] = (),
    category: str | None = None,
) -> Recommendations:
    """Top-``k`` items for one user (popularity fallback for an unknown or absent user)."""
    return recommend_batch(
        model, [user_id], k, exclude_seen=exclude_seen, exclude_items=exclude_items, category=category
    )[0]

"""Offline evaluation on a temporal holdout, vectorised over users (batched top-k).

Two variants, because an e-commerce catalogue has both repeat purchases and discovery:

- ``new`` (the primary variant, metric names without suffix, e.g. ``ndcg_at_10``): items the user
  already interacted with before the cut are excluded from the ranking (as the model server does)
  and the relevant set is the user's *new* items after the cut.
- ``repeat`` (suffix ``_repeat``, e.g. ``ndcg_at_10_repeat``): nothing is excluded and every item
  the user interacted with after the cut is relevant, repeat purchases included.

Per variant and k: ``hr`` (share of users with at least one hit), ``precision`` (hits / k),
``recall`` (hits / number of relevant items), ``ndcg`` (binary gains, ideal DCG over
min(k, relevant)), ``map`` (AP@k normalised by min(k, relevant)), ``coverage`` (distinct
recommended items / catalogue) and ``popularity_bias`` (mean popularity, share of training users,
of the recommended items). Users with no relevant item in a variant are not counted in it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

ScoreFn = Callable[[sp.csr_matrix, np.ndarray], np.ndarray]
RANKING_METRICS = ("hr", "precision", "recall", "ndcg", "map")
CATALOGUE_METRICS = ("coverage", "popularity_bias")
VARIANTS = ("new", "repeat")


def metric_names(ks: Sequence[int]) -> list[str]:
    """Every metric name an evaluation with these ks produces (without the ``baseline_`` prefix)."""
    names = []
    for variant in VARIANTS:
        suffix = "" if variant == "new" else "_repeat"
        for k in ks:
            for m in RANKING_METRICS + CATALOGUE_METRICS:
                names.append(f"{m}_at_{k}{suffix}")
    return names


@dataclass
class Holdout:
    """A temporal split encoded as matrices over the training users and catalogue."""

    X_train: sp.csr_matrix  # (n_users x n_items) weights before the cut
    test_all: sp.csr_matrix  # (n_users x n_items) 1 where the user interacted after the cut
    n_rel_all: np.ndarray  # relevant-item count per user (items outside the catalogue included)
    test_new: sp.csr_matrix  # test_all minus the items the user had before the cut
    n_rel_new: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    popularity: np.ndarray  # share of training users per item
    cut: str = ""


def top_k(scores: np.ndarray, k: int, exclude: sp.csr_matrix | None = None) -> np.ndarray:
    """Indices of the k best items per row, best first; ``exclude`` (same shape) masks items.

    Ties are broken by the lower item index, also at the k-th place (``argpartition`` alone would
    pick arbitrary members of a tie there, which is common with sparse item-item scores of 0)."""
    scores = np.array(scores, dtype=np.float32, copy=True)
    if exclude is not None and exclude.nnz:
        r = np.repeat(np.arange(exclude.shape[0]), np.diff(exclude.indptr))
        scores[r, exclude.indices] = -np.inf
    n_items = scores.shape[1]
    k = min(k, n_items)
    if k < n_items:
        # value partition + comparisons: np.argpartition is several times slower, and much slower still
        # when many scores are equal (the zeros of sparse item-item scores, popularity ties), numpy 2.x
        kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]  # the k-th largest value per row
        sel = scores >= kth
        tie = sel.sum(axis=1) > k  # rows where the k-th place is shared: resolve by lower index
        if tie.any():
            sub, kt = scores[tie], kth[tie]
            greater, eq = sub > kt, sub == kt
            need = k - greater.sum(axis=1, keepdims=True)
            sel[tie] = greater | (eq & (np.cumsum(eq, axis=1) <= need))
        idx = np.nonzero(sel)[1].reshape(-1, k)  # ascending item index within each row
    else:
        idx = np.broadcast_to(np.arange(n_items), scores.shape).copy()
    vals = np.take_along_axis(scores, idx, axis=1)
    order = np.lexsort((idx, -vals), axis=1)
    return np.take_along_axis(idx, order, axis=1)


class _Accumulator:
    def __init__(self, ks: Sequence[int], n_items: int, popularity: np.ndarray) -> None:
        self.ks = list(ks)
        self.sums = {(m, k): 0.0 for m in RANKING_METRICS for k in self.ks}
        self.pop_sums = dict.fromkeys(self.ks, 0.0)
        self.covered = {k: np.zeros(n_items, dtype=bool) for k in self.ks}
        self.users = 0
        self.popularity = popularity
        kmax = max(self.ks)
        self.disc = 1.0 / np.log2(np.arange(2, kmax + 2))
        self.idcg = np.cumsum(self.disc)

    def add(self, topk: np.ndarray, hits: np.ndarray, n_rel: np.ndarray) -> None:
        n_rel = n_rel.astype(np.float64)
        self.users += len(n_rel)
        hits = hits.astype(np.float64)
        for k in self.ks:
            h = hits[:, :k]
            nh = h.sum(axis=1)
            self.sums[("hr", k)] += float((nh > 0).sum())
            self.sums[("precision", k)] += float((nh / k).sum())
            self.sums[("recall", k)] += float((nh / n_rel).sum())
            ideal = self.idcg[np.minimum(n_rel, k).astype(int) - 1]
            self.sums[("ndcg", k)] += float(((h * self.disc[:k]).sum(axis=1) / ideal).sum())
            prec_i = np.cumsum(h, axis=1) / np.arange(1, k + 1)
            self.sums[("map", k)] += float(((prec_i * h).sum(axis=1) / np.minimum(n_rel, k)).sum())
            top = topk[:, :k]
            self.covered[k][top.ravel()] = True
            self.pop_sums[k] += float(self.popularity[top].mean(axis=1).sum())

    def result(self, suffix: str) -> dict[str, float]:
        out: dict[str, float] = {}
        n = max(self.users, 1)
        for k in self.ks:
            for m in RANKING_METRICS:
                out[f"{m}_at_{k}{suffix}"] = self.sums[(m, k)] / n
            out[f"coverage_at_{k}{suffix}"] = float(self.covered[k].mean()) if self.users else 0.0
            out[f"popularity_bias_at_{k}{suffix}"] = self.pop_sums[k] / n
        return out


def _first_unseen(top: np.ndarray, seen: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """From rankings ``top`` (rows x L, best first) drop the items in ``seen`` and keep the first k.
    Returns (rankings of the rows that had k unseen items, mask of those rows)."""
    seen_at = np.take_along_axis(seen.toarray() > 0, top, axis=1)
    allowed = ~seen_at
    ok = allowed.sum(axis=1) >= k
    sel = allowed[ok] & (np.cumsum(allowed[ok], axis=1) <= k)
    return top[ok][sel].reshape(-1, k), ok


def evaluate(
    score_fn: ScoreFn,
    holdout: Holdout,
    ks: Sequence[int] = (5, 10, 20),
    batch_cells: int = 4_000_000,
    max_users: int | None = None,
    seed: int = 0,
    counts_out: np.ndarray | None = None,
    counts_k: int = 10,
    same_for_all: np.ndarray | None = None,
) -> dict[str, float]:
    """All metrics of both variants for one scoring function (see module doc).

    Each batch of users is scored once and ranked once: the top ``kmax + c`` items without any
    exclusion (c = the batch's largest history, capped at 256) give the repeat variant's top
    ``kmax`` directly and the new variant's after dropping seen items (exact, since at most c seen
    items can precede); users with longer histories take the masked path. ``same_for_all``: the
    scores are this vector for every user (the popularity baseline), ranked once in total.

    When ``counts_out`` (n_items ints) is given, it receives how often each item was in a user's
    top ``counts_k`` (new variant): the output distribution the drift reference profile records."""
    ks = sorted(set(int(k) for k in ks))
    kmax = max(ks)
    X = holdout.X_train
    n_items = X.shape[1]
    users = np.flatnonzero(holdout.n_rel_all > 0)
    if max_users is not None and len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, size=max_users, replace=False))
    acc = {
        "new": _Accumulator(ks, n_items, holdout.popularity),
        "repeat": _Accumulator(ks, n_items, holdout.popularity),
    }
    batch = max(1, batch_cells // max(n_items, 1))
    for start in range(0, len(users), batch):
        rows = users[start : start + batch]
        Xb = X[rows]
        cap = int(min(np.diff(Xb.indptr).max(initial=0), 256))
        width = min(kmax + cap, n_items)
        scores: np.ndarray | None = None
        if same_for_all is not None:
            top = np.broadcast_to(top_k(same_for_all[None, :], width), (len(rows), width))
        else:
            scores = score_fn(Xb, rows)
            top = top_k(scores, width)
        # repeat purchases count: nothing excluded
        keep = holdout.n_rel_all[rows] > 0
        if keep.any():
            topk = np.ascontiguousarray(top[keep, :kmax])
            hits = np.take_along_axis(holdout.test_all[rows[keep]].toarray() > 0, topk, axis=1)
            acc["repeat"].add(topk, hits, holdout.n_rel_all[rows[keep]])
        # new items only: seen items excluded
        keep = holdout.n_rel_new[rows] > 0
        if keep.any():
            rk = rows[keep]
            topk = np.empty((len(rk), kmax), dtype=np.int64)
            fast, ok = _first_unseen(top[keep], Xb[keep], kmax)
            topk[ok] = fast
            if not ok.all():  # long histories (or a tiny catalogue): rank with the seen items masked
                miss = np.flatnonzero(~ok)
                if scores is None:
                    assert same_for_all is not None
                    sub = np.broadcast_to(same_for_all.astype(np.float32), (len(miss), n_items))
                else:
                    sub = scores[keep][miss]
                topk[miss] = top_k(sub, kmax, Xb[keep][miss])
            hits = np.take_along_axis(holdout.test_new[rk].toarray() > 0, topk, axis=1)
            acc["new"].add(topk, hits, holdout.n_rel_new[rk])
            if counts_out is not None:
                counts_out += np.bincount(topk[:, :counts_k].ravel(), minlength=n_items)
    out = acc["new"].result("")
    out.update(acc["repeat"].result("_repeat"))
    out["evaluated_users"] = float(acc["new"].users)
    out["evaluated_users_repeat"] = float(acc["repeat"].users)
    return out

"""Ranking metrics against values computed by hand on a 2-user, 6-item fixture."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from recops_training.algorithms import item_popularity
from recops_training.evaluation import Holdout, evaluate, metric_names, top_k


def csr(rows, n_items=6):
    r, c = [], []
    for i, items in enumerate(rows):
        r += [i] * len(items)
        c += items
    return sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(len(rows), n_items))


@pytest.fixture
def holdout():
    X = csr([[0], [2]])
    return Holdout(
        X_train=X,
        test_all=csr([[0, 1, 3], [5]]),
        n_rel_all=np.array([3, 2]),  # user 1 also bought an item outside the catalogue
        test_new=csr([[1, 3], [5]]),
        n_rel_new=np.array([2, 2]),
        user_ids=np.array(["a", "b"]),
        item_ids=np.array([f"i{i}" for i in range(6)]),
        popularity=item_popularity(X),
    )


SCORES = np.array([[9, 8, 7, 6, 5, 4], [0, 1, 2, 3, 4, 5]], dtype=np.float32)


def fixed_scores(Xb, rows):
    return SCORES[rows]


def test_hand_computed_new_variant(holdout):
    m = evaluate(fixed_scores, holdout, ks=[1, 3])
    # user a: seen {0} excluded -> ranking 1,2,3 ; relevant {1,3} ; user b: seen {2} -> 5,4,3 ; relevant {5, outside}
    l2 = math.log2
    idcg2 = 1 + 1 / l2(3)
    ndcg_a = (1 + 1 / l2(4)) / idcg2
    ndcg_b = 1 / idcg2
    assert m["hr_at_3"] == pytest.approx(1.0)
    assert m["precision_at_3"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert m["recall_at_3"] == pytest.approx((2 / 2 + 1 / 2) / 2)
    assert m["ndcg_at_3"] == pytest.approx((ndcg_a + ndcg_b) / 2)
    assert m["map_at_3"] == pytest.approx(((1 + 2 / 3) / 2 + 1 / 2) / 2)
    assert m["hr_at_1"] == pytest.approx(1.0)
    assert m["precision_at_1"] == pytest.approx(1.0)
    assert m["recall_at_1"] == pytest.approx(0.5)
    assert m["ndcg_at_1"] == pytest.approx(1.0)
    assert m["map_at_1"] == pytest.approx(1.0)
    # catalogue: items {1,2,3} and {5,4,3} recommended -> 5 of 6
    assert m["coverage_at_3"] == pytest.approx(5 / 6)
    # popularity = share of training users: items 0 and 2 have 0.5, the rest 0
    assert m["popularity_bias_at_3"] == pytest.approx(((0 + 0.5 + 0) / 3 + 0) / 2)
    assert m["evaluated_users"] == 2


def test_hand_computed_repeat_variant(holdout):
    m = evaluate(fixed_scores, holdout, ks=[3])
    l2 = math.log2
    # user a: ranking 0,1,2 (nothing excluded), relevant {0,1,3}: hits 1,1,0
    ndcg_a = (1 + 1 / l2(3)) / (1 + 1 / l2(3) + 1 / l2(4))
    ndcg_b = 1 / (1 + 1 / l2(3))
    assert m["precision_at_3_repeat"] == pytest.approx(0.5)
    assert m["recall_at_3_repeat"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert m["ndcg_at_3_repeat"] == pytest.approx((ndcg_a + ndcg_b) / 2)
    assert m["map_at_3_repeat"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert m["popularity_bias_at_3_repeat"] == pytest.approx(((0.5 + 0 + 0.5) / 3 + 0) / 2)


def test_users_without_relevant_items_are_not_counted(holdout):
    h = holdout
    h.n_rel_new = np.array([2, 0])
    h.test_new = csr([[1, 3], []])
    m = evaluate(fixed_scores, h, ks=[3])
    assert m["evaluated_users"] == 1
    assert m["evaluated_users_repeat"] == 2


def test_batching_does_not_change_results(holdout):
    a = evaluate(fixed_scores, holdout, ks=[1, 3])
    b = evaluate(fixed_scores, holdout, ks=[1, 3], batch_cells=1)  # one user per batch
    assert a == pytest.approx(b)


def test_top_k_order_ties_and_exclusion():
    s = np.array([[1, 3, 3, 2, 0]], dtype=np.float32)
    assert top_k(s, 3).tolist() == [[1, 2, 3]]  # tie broken by lower index
    excl = sp.csr_matrix(([1.0], ([0], [1])), shape=(1, 5))
    assert top_k(s, 2, excl).tolist() == [[2, 3]]
    assert top_k(s, 10).shape == (1, 5)


def test_metric_names():
    names = metric_names([10])
    assert "ndcg_at_10" in names and "ndcg_at_10_repeat" in names and "popularity_bias_at_10" in names
    assert len(names) == 2 * 7


def reference_metrics(scores, h, ks):
    """A per-user loop written straight from the definitions (slow, obviously right)."""
    out = {}
    n_items = scores.shape[1]
    for suffix, rel_m, n_rel, exclude in (
        ("", h.test_new, h.n_rel_new, True),
        ("_repeat", h.test_all, h.n_rel_all, False),
    ):
        per = {k: {"hr": [], "precision": [], "recall": [], "ndcg": [], "map": [], "pop": []} for k in ks}
        covered = {k: set() for k in ks}
        for u in range(scores.shape[0]):
            if n_rel[u] == 0:
                continue
            s = scores[u].astype(np.float64).copy()
            seen = set(h.X_train[u].indices.tolist())
            if exclude:
                for i in seen:
                    s[i] = -np.inf
            ranking = sorted(range(n_items), key=lambda i: (-s[i], i))
            rel = set(rel_m[u].indices.tolist())
            for k in ks:
                top = ranking[:k]
                hits = [1.0 if i in rel else 0.0 for i in top]
                per[k]["hr"].append(float(any(hits)))
                per[k]["precision"].append(sum(hits) / k)
                per[k]["recall"].append(sum(hits) / n_rel[u])
                dcg = sum(hv / math.log2(j + 2) for j, hv in enumerate(hits))
                idcg = sum(1 / math.log2(j + 2) for j in range(min(k, n_rel[u])))
                per[k]["ndcg"].append(dcg / idcg)
                ap = sum((sum(hits[: j + 1]) / (j + 1)) * hits[j] for j in range(k)) / min(k, n_rel[u])
                per[k]["map"].append(ap)
                per[k]["pop"].append(float(np.mean(h.popularity[top])))
                covered[k].update(top)
        for k in ks:
            for m in ("hr", "precision", "recall", "ndcg", "map"):
                out[f"{m}_at_{k}{suffix}"] = float(np.mean(per[k][m]))
            out[f"popularity_bias_at_{k}{suffix}"] = float(np.mean(per[k]["pop"]))
            out[f"coverage_at_{k}{suffix}"] = len(covered[k]) / n_items
    return out


@pytest.mark.parametrize("with_ties", [False, True])
def test_vectorised_equals_reference_loop_including_long_histories(with_ties):
    rng = np.random.default_rng(5)
    n_users, n_items = 60, 400
    dens = rng.random((n_users, n_items))
    train = dens < 0.05
    train[0, :300] = True  # a history longer than the shortcut's cap (256): the masked path
    test = (dens > 0.93) | ((dens < 0.01) & (rng.random((n_users, n_items)) < 0.5))  # some repeats
    test[3] = False  # a user without test items
    X = sp.csr_matrix(train.astype(np.float32))
    T_all = sp.csr_matrix(test.astype(np.float32))
    T_new = sp.csr_matrix((test & ~train).astype(np.float32))
    h = Holdout(
        X_train=X,
        test_all=T_all,
        n_rel_all=np.asarray(T_all.sum(axis=1)).ravel().astype(int),
        test_new=T_new,
        n_rel_new=np.asarray(T_new.sum(axis=1)).ravel().astype(int),
        user_ids=np.arange(n_users).astype(str),
        item_ids=np.arange(n_items).astype(str),
        popularity=item_popularity(X),
    )
    scores = rng.random((n_users, n_items)).astype(np.float32)
    if with_ties:
        scores = np.round(scores * 4) / 4  # heavy ties, also at the k-th place
    ks = [1, 5, 10]
    got = evaluate(lambda Xb, rows: scores[rows], h, ks=ks, batch_cells=n_items * 7)
    ref = reference_metrics(scores, h, ks)
    for key, val in ref.items():
        assert got[key] == pytest.approx(val, abs=1e-9 if "popularity" not in key else 1e-6), key


def test_same_for_all_equals_broadcast_scores():
    rng = np.random.default_rng(2)
    X = sp.csr_matrix((rng.random((50, 80)) < 0.1).astype(np.float32))
    T = sp.csr_matrix((rng.random((50, 80)) < 0.05).astype(np.float32))
    Tn = sp.csr_matrix(((T.toarray() > 0) & (X.toarray() == 0)).astype(np.float32))
    pop = item_popularity(X)
    h = Holdout(
        X_train=X,
        test_all=T,
        n_rel_all=np.asarray(T.sum(axis=1)).ravel().astype(int),
        test_new=Tn,
        n_rel_new=np.asarray(Tn.sum(axis=1)).ravel().astype(int),
        user_ids=np.arange(50).astype(str),
        item_ids=np.arange(80).astype(str),
        popularity=pop,
    )
    a = evaluate(lambda Xb, rows: np.broadcast_to(pop, (len(rows), 80)).copy(), h, ks=[5, 10])
    b = evaluate(None, h, ks=[5, 10], same_for_all=pop)
    assert a == pytest.approx(b)

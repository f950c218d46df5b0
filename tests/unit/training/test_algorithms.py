"""Algorithms on tiny fixtures, parameter validation, and every algorithm beating popularity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from recops_training.algorithms import ALGORITHMS, build, topn_per_row, validate_params
from recops_training.data import Snapshot, temporal_holdout
from recops_training.errors import InvalidInput
from recops_training.evaluation import evaluate
from recops_training.synthetic import make_events

X_TINY = sp.csr_matrix(
    np.array(
        [
            [1, 1, 0, 0, 0],
            [1, 1, 1, 0, 0],
            [0, 1, 1, 0, 0],
            [0, 0, 0, 1, 1],
            [0, 0, 1, 1, 1],
        ],
        dtype=np.float32,
    )
)


def test_registry_names():
    assert set(ALGORITHMS) == {"popularity", "itemknn", "puresvd", "ease", "rp3beta"}


def test_unknown_algorithm_is_named():
    with pytest.raises(InvalidInput) as e:
        validate_params("deepfm", {})
    assert "'deepfm'" in e.value.message and "itemknn" in e.value.message
    assert e.value.reason == "UnknownAlgorithm"


def test_unknown_parameter_is_named():
    with pytest.raises(InvalidInput) as e:
        validate_params("itemknn", {"neighbours": 10})
    assert "algorithm.params.neighbours" in e.value.message
    assert "neighbors" in e.value.message  # lists the known ones
    assert e.value.reason == "InvalidAlgorithmParams"


def test_bad_parameter_value_is_named():
    with pytest.raises(InvalidInput) as e:
        validate_params("puresvd", {"factors": 0})
    assert "algorithm.params.factors" in e.value.message


def test_params_accept_strings_and_camel_case():
    p = validate_params("ease", {"l2": "50.5", "maxItems": 100})
    assert p.l2 == 50.5 and p.max_items == 100
    p = validate_params("rp3beta", {"beta": "0.3"})
    assert p.beta == pytest.approx(0.3)


def test_topn_per_row_keeps_largest():
    M = sp.csr_matrix(np.array([[0.1, 0.5, 0.3, 0.0], [0.0, 0.0, 0.0, 0.0], [0.9, 0.8, 0.7, 0.6]], dtype=np.float32))
    T = topn_per_row(M, 2).toarray()
    assert np.allclose(T, [[0, 0.5, 0.3, 0], [0, 0, 0, 0], [0.9, 0.8, 0, 0]])


def test_itemknn_matches_hand_cosine():
    algo = build("itemknn", {"neighbors": 10, "shrink": 0}).fit(X_TINY)
    S = algo.parts.similarity.toarray()
    # items 0 and 1: co-occur for 2 users, |x0| = sqrt(2), |x1| = sqrt(3)
    assert S[0, 1] == pytest.approx(2 / np.sqrt(2 * 3), rel=1e-5)
    assert S[0, 0] == 0
    assert np.allclose(S, S.T, atol=1e-6)
    algo = build("itemknn", {"neighbors": 1, "shrink": 0}).fit(X_TINY)
    assert (np.diff(algo.parts.similarity.indptr) <= 1).all()
    shrunk = build("itemknn", {"neighbors": 10, "shrink": 10}).fit(X_TINY).parts.similarity.toarray()
    assert shrunk[0, 1] == pytest.approx(2 / (np.sqrt(6) + 10), rel=1e-5)


def test_ease_closed_form_and_guard():
    algo = build("ease", {"l2": 1.0}).fit(X_TINY)
    B = algo.parts.similarity
    G = (X_TINY.T @ X_TINY).toarray() + np.eye(5)
    P = np.linalg.inv(G)
    expected = -P / np.diag(P)
    np.fill_diagonal(expected, 0)
    assert np.allclose(B, expected, atol=1e-5)
    with pytest.raises(InvalidInput) as e:
        build("ease", {"maxItems": 4}).fit(X_TINY)
    assert "maxItems" in e.value.message and e.value.reason == "CatalogueTooLarge"


def test_puresvd_factors_and_clamp():
    algo = build("puresvd", {"factors": 2}).fit(X_TINY)
    assert algo.parts.user_factors.shape == (5, 2) and algo.parts.item_factors.shape == (5, 2)
    big = build("puresvd", {"factors": 50}).fit(X_TINY)
    assert big.parts.item_factors.shape[1] == 4 and "factorsClamped" in big.parts.meta


def test_rp3beta_rows_are_sparse_and_penalised():
    a0 = build("rp3beta", {"beta": 0.0, "neighbors": 10}).fit(X_TINY).parts.similarity.toarray()
    a1 = build("rp3beta", {"beta": 1.0, "neighbors": 10}).fit(X_TINY).parts.similarity.toarray()
    assert np.all(np.diag(a0) == 0)
    # item 2 is the most popular (3 users): a higher beta lowers transitions into it relative to item 0 (2 users)
    assert a1[1, 2] / a1[1, 0] < a0[1, 2] / a0[1, 0]


def test_scores_shape_and_popularity():
    for name in ALGORITHMS:
        params = {"factors": 2} if name == "puresvd" else {}
        algo = build(name, params).fit(X_TINY)
        s = algo.score_batch(X_TINY[[0, 3]], np.array([0, 3]))
        assert s.shape == (2, 5) and s.dtype == np.float32
    pop = build("popularity").fit(X_TINY)
    assert pop.popularity.tolist() == pytest.approx([0.4, 0.6, 0.6, 0.4, 0.4])


@pytest.fixture(scope="module")
def synthetic_holdout():
    events, items = make_events(n_users=600, n_items=300, n_events=25_000, n_categories=12, seed=1)
    pairs = events.rename(columns={"ts": "first_ts"}).assign(last_ts=lambda f: f["first_ts"])
    snap = Snapshot(uri="mem://", version="v", digest="d", manifest={}, pairs=pairs, granularity="events", items=items)
    return temporal_holdout(snap, holdout_days=10, weighting="log1p")


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("itemknn", {"neighbors": 50, "shrink": 5}),
        ("puresvd", {"factors": 24}),
        ("ease", {"l2": 100}),
        ("rp3beta", {"alpha": 1.0, "beta": 0.3, "neighbors": 50}),
    ],
)
def test_every_algorithm_beats_popularity(synthetic_holdout, name, params):
    h = synthetic_holdout
    base = evaluate(build("popularity").fit(h.X_train).score_batch, h, ks=[10])
    model = evaluate(build(name, params).fit(h.X_train).score_batch, h, ks=[10])
    assert model["ndcg_at_10"] > base["ndcg_at_10"] * 1.1, (name, model["ndcg_at_10"], base["ndcg_at_10"])


def test_evaluation_ranks_like_the_model_server(synthetic_holdout):
    """Offline top-k equals recops_model.recommend_batch on the same fitted arrays (served = evaluated)."""
    recops_model = pytest.importorskip("recops_model")
    from recops_training.evaluation import top_k
    from recops_training.runner import to_rec_model

    h = synthetic_holdout
    cats = np.array(["c"] * len(h.item_ids))
    for name in ("itemknn", "puresvd", "popularity"):
        algo = build(name, {"factors": 8} if name == "puresvd" else {}).fit(h.X_train)
        model = to_rec_model(algo, h.X_train, h.user_ids, h.item_ids, cats, {})
        rows = np.arange(0, 40)
        ours = top_k(algo.score_batch(h.X_train[rows], rows), 10, h.X_train[rows])
        served = recops_model.recommend_batch(model, list(h.user_ids[rows]), 10, exclude_seen=True)
        assert [list(h.item_ids[r]) for r in ours] == [s.item_ids for s in served], name


def test_synthetic_is_deterministic():
    a, _ = make_events(n_users=50, n_items=40, n_events=500, seed=3)
    b, _ = make_events(n_users=50, n_items=40, n_events=500, seed=3)
    pd.testing.assert_frame_equal(a, b)

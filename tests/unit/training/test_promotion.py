"""The promotion gate: the pure decision, and the champion scored on the challenger's holdout with the
model server's own scoring (``recops_model.recommend_batch``), on small real fixtures."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from recops_model import ModelRejected, RecModel, load_model, save_model
from recops_training.algorithms import build
from recops_training.data import Snapshot, full_data, item_categories, temporal_holdout
from recops_training.errors import ChampionUnavailable
from recops_training.evaluation import Holdout, evaluate
from recops_training.promotion import (
    MAX_CHAMPION_OVERLAP,
    ChampionScore,
    champion_overlap,
    champion_score_fn,
    decide_promotion,
    metric_label,
    same_holdout,
    score_champion,
)
from recops_training.runner import to_rec_model
from recops_training.synthetic import make_events

METRIC = "ndcg_at_10"


def decide(value, baseline=0.1, champion=None, margin="0", relative=False, policy="ifBetter", version="3"):
    return decide_promotion(
        policy=policy,
        metric=METRIC,
        value=value,
        baseline_value=baseline,
        champion=champion,
        margin=Decimal(margin),
        relative=relative,
        this_version=version,
    )


# ------------------------------------------------------------------------------------ the decision


def test_no_champion_beats_baseline():
    ok, reason, msg = decide(0.2)
    assert (
        ok
        and reason == "NoChampion"
        and msg == "NDCG@10 0.2000 beats the popularity baseline 0.1000 and there was no champion yet"
    )


def test_worse_than_baseline_is_refused_even_without_champion():
    ok, reason, msg = decide(0.09)
    assert not ok and reason == "WorseThanBaseline" and "popularity baseline 0.1000" in msg
    ok, reason, _ = decide(0.1)  # equal is not better
    assert not ok


def test_champion_and_margin():
    champ = ChampionScore("2", value=0.20)
    assert decide(0.205, champion=champ, margin="0.01")[:2] == (False, "NotBetterThanChampion")
    assert decide(0.215, champion=champ, margin="0.01")[:2] == (True, "BeatChampion")
    assert decide(0.2, champion=champ)[0] is False  # equal to the champion is not better
    assert decide(0.2001, champion=champ)[0] is True
    assert decide(0.203, champion=champ, margin="2", relative=True)[0] is False
    assert decide(0.205, champion=champ, margin="2", relative=True)[0] is True


def test_sentences_name_every_number_compared():
    ok, _, msg = decide(0.081, baseline=0.03, champion=ChampionScore("1", value=0.064), margin="0.005")
    assert ok
    assert msg == (
        "NDCG@10 0.0810 beats champion v1 re-scored on this holdout 0.0640 by margin 0.005 and popularity 0.0300"
    )
    ok, reason, msg = decide(0.066, baseline=0.03, champion=ChampionScore("1", value=0.064), margin="0.005")
    assert not ok and reason == "NotBetterThanChampion"
    assert "0.0660" in msg and "champion v1 re-scored on this holdout 0.0640" in msg and "needs 0.0690" in msg
    same = ChampionScore("1", value=0.064, basis="sameHoldout")
    assert "champion v1 on this same holdout 0.0640" in decide(0.07, baseline=0.03, champion=same)[2]


def test_champion_beaten_but_baseline_not():
    ok, reason, _ = decide(0.15, baseline=0.16, champion=ChampionScore("2", value=0.1))
    assert not ok and reason == "WorseThanBaseline"


def test_rerun_of_the_champion_is_idempotent():
    ok, reason, _ = decide(0.15, champion=ChampionScore("3"), version="3")
    assert ok and reason == "AlreadyChampion"


def test_policies():
    assert decide(0.01, policy="always")[:2] == (True, "PolicyAlways")
    assert decide(0.5, policy="never")[:2] == (False, "PolicyNever")


def test_a_champion_that_could_not_be_scored_is_never_promoted_over():
    ok, reason, msg = decide(0.9, champion=ChampionScore("1", problem="DigestMismatch", detail="popularity.npy: sha"))
    assert not ok and reason == "ChampionNotScored"
    assert "champion v1" in msg and "DigestMismatch" in msg and "policy 'always'" in msg
    ok, reason, _ = decide(0.9, champion=ChampionScore("1"))  # no value, no problem: still not comparable
    assert not ok and reason == "ChampionNotScored"


def test_an_in_sample_champion_is_not_compared():
    high = ChampionScore("1", value=0.5, overlap=0.97)
    ok, reason, msg = decide(0.2, champion=high)
    assert not ok and reason == "ChampionInSample" and "97%" in msg and "NDCG@10 0.5000" in msg and "0.2000" in msg
    low = ChampionScore("1", value=0.15, overlap=MAX_CHAMPION_OVERLAP / 2)
    assert decide(0.2, champion=low)[:2] == (True, "BeatChampion")


def test_metric_label_and_same_holdout():
    assert metric_label("ndcg_at_10") == "NDCG@10"
    assert metric_label("recall_at_20_repeat") == "Recall@20 (repeat)"
    params = {"snapshotVersion": "s", "holdoutCut": "c", "maxUsers": "50000", "seed": "0", "algorithm": "ease"}
    assert same_holdout(params, {"snapshotVersion": "s", "holdoutCut": "c", "maxUsers": 50000, "seed": 0})
    assert not same_holdout(params, {"snapshotVersion": "s", "holdoutCut": "other", "maxUsers": 50000, "seed": 0})
    assert not same_holdout({}, {"snapshotVersion": "s", "holdoutCut": "c", "maxUsers": 50000, "seed": 0})


# ------------------------------------------------------------------- scoring the champion: tiny, by hand


def _tiny_holdout() -> Holdout:
    """Users a, b, z (z unknown to the champion); items i0..i3 (i3 unknown to the champion)."""
    X = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], dtype=np.float32))
    test_new = sp.csr_matrix(np.array([[0, 1, 0, 1], [1, 0, 0, 0], [0, 1, 0, 0]], dtype=np.float32))
    return Holdout(
        X_train=X,
        test_all=test_new,
        n_rel_all=np.array([2, 1, 1]),
        test_new=test_new,
        n_rel_new=np.array([2, 1, 1]),
        user_ids=np.array(["a", "b", "z"]),
        item_ids=np.array(["i0", "i1", "i2", "i3"]),
        popularity=np.array([1, 1, 1, 0], dtype=np.float32) / 3,
    )


def _tiny_champion() -> RecModel:
    """Knows users a, b and items i0, i1, i2, old (outside the holdout's catalogue); item-item scores. It
    remembers that a had i2 (from before the new snapshot's window)."""
    items = np.array(["i0", "i1", "i2", "old"])
    S = np.array([[0, 0.9, 0.1, 0.5], [0.8, 0, 0.2, 0.7], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=np.float32)
    return RecModel(
        algorithm="itemknn",
        kind="item_item",
        user_ids=np.array(["a", "b"]),
        item_ids=items,
        seen=sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 1, 0, 0]], dtype=np.float32)),
        popularity=np.array([0.2, 0.1, 0.6, 0.9], dtype=np.float32),
        item_categories=np.array(["c"] * 4),
        similarity=S,
    )


def test_champion_ranks_like_the_server_on_the_holdout_catalogue():
    h = _tiny_holdout()

    def ranked(exclude_seen):
        scores = champion_score_fn(_tiny_champion(), h, k=2, exclude_seen=exclude_seen)(h.X_train, np.arange(3))
        assert np.isneginf(scores[:, 3]).all()  # a new catalogue item the champion cannot recommend
        return [[h.item_ids[j] for j in np.argsort(-row, kind="stable") if np.isfinite(row[j])] for row in scores]

    # a: only i1 (0.9): the items the champion knows a had (i0, i2) are excluded as served, 'old' is outside
    # the catalogue, i3 is unknown to the champion; with seen items kept (the repeat variant): i1, i2, i0
    assert ranked(True)[0] == ["i1"]
    assert ranked(False)[0] == ["i1", "i2", "i0"]
    served = ranked(True)
    # b: i0 (0.8) then i2 (0.2)
    assert served[1] == ["i0", "i2"]
    # z is unknown to the champion: its popularity fallback, as served (i2 0.6, i0 0.2, i1 0.1; 'old' skipped)
    assert served[2] == ["i2", "i0", "i1"]


def test_champion_score_on_tiny_holdout_by_hand():
    h = _tiny_holdout()
    s = score_champion("1", _tiny_champion, h, "hr_at_1", None, 0)
    # hit@1: a -> i1 (relevant), b -> i0 (relevant), z -> i0 (its fallback's i2 is in z's own history, which
    # the evaluation excludes for everyone; i0 is not relevant): 2 of 3
    assert s.value == pytest.approx(2 / 3) and s.problem is None
    # overlap: the champion trained on (a, i0) (a, i2) (b, i1); the holdout's new pairs are (a,i1) (a,i3) (b,i0) (z,i1)
    assert s.overlap == 0.0
    in_sample = replace(_tiny_champion(), seen=sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 0, 0]], np.float32)))
    assert champion_overlap(in_sample, h) == pytest.approx(2 / 4)


# ---------------------------------------------------------------- drift: old number vs the same holdout


def _snapshot(events: pd.DataFrame, items: pd.DataFrame, name: str) -> Snapshot:
    pairs = events.rename(columns={"ts": "first_ts"}).assign(last_ts=lambda f: f["first_ts"])
    return Snapshot(uri=name, version=name, digest=name, manifest={}, pairs=pairs, granularity="events", items=items)


@pytest.fixture(scope="module")
def drift():
    """Before: 42 days of world A. After: its last 21 days plus 21 days in which users' tastes and the
    items' popularity changed (world B, with new users); the holdout is B's last 7 days."""
    a, items = make_events(n_users=400, n_items=200, n_events=20_000, days=42, seed=1, start="2026-09-01")
    b, _ = make_events(n_users=500, n_items=200, n_events=10_000, days=21, seed=2, start="2026-10-13")
    before = _snapshot(a, items, "before")
    after = _snapshot(pd.concat([a[a.ts >= "2026-09-22"], b], ignore_index=True), items, "after")
    return before, after, temporal_holdout(after, 7, "log1p")


def _registered(algo_name, X, users, items, item_table, tmp_path) -> RecModel:
    """Fit, convert to the served format, save and load it back (manifest verified), as the gate does."""
    algo = build(algo_name).fit(X)
    save_model(to_rec_model(algo, X, users, items, item_categories(items, item_table), {}), tmp_path / algo_name)
    return load_model(tmp_path / algo_name)


def _eval(algo_name, h):
    return evaluate(build(algo_name).fit(h.X_train).score_batch, h, ks=[10])[METRIC]


def test_drift_champion_old_metric_high_but_lower_on_the_new_holdout_is_beaten(drift, tmp_path):
    before, _, h = drift
    old_holdout = temporal_holdout(before, 7, "log1p")
    champion_logged = _eval("itemknn", old_holdout)  # what the champion's own run logged
    X, users, items = full_data(before, "log1p")
    champion = _registered("itemknn", X, users, items, before.items, tmp_path)  # refit on all of 'before'
    challenger = _eval("itemknn", h)
    baseline = _eval("popularity", h)
    rescored = score_champion("1", lambda: champion, h, METRIC, None, 0)
    assert champion_logged > challenger  # the old gate compared with this and refused
    assert rescored.value < challenger and challenger > baseline
    assert rescored.overlap < MAX_CHAMPION_OVERLAP  # trained before the holdout: out-of-sample
    ok, reason, msg = decide(challenger, baseline=baseline, champion=rescored, margin="0.005", version="2")
    assert (ok, reason) == (True, "BeatChampion"), msg
    assert f"{challenger:.4f}" in msg and f"re-scored on this holdout {rescored.value:.4f}" in msg


def test_drift_a_stronger_champion_on_the_same_holdout_refuses_the_challenger(drift, tmp_path):
    _, after, h = drift
    # a champion trained before this holdout's cut: re-scoring it must reproduce the evaluation's own number
    champion = _registered("ease", h.X_train, h.user_ids, h.item_ids, after.items, tmp_path)
    rescored = score_champion("4", lambda: champion, h, METRIC, None, 0)
    assert rescored.value == pytest.approx(_eval("ease", h), abs=1e-6)
    challenger, baseline = _eval("itemknn", h), _eval("popularity", h)
    assert baseline < challenger < rescored.value
    ok, reason, msg = decide(challenger, baseline=baseline, champion=rescored, margin="0.005", version="5")
    assert not ok and reason == "NotBetterThanChampion"
    assert f"NDCG@10 {challenger:.4f} does not beat champion v4 re-scored on this holdout {rescored.value:.4f}" in msg


def test_a_champion_refitted_on_the_holdout_period_is_in_sample(drift, tmp_path):
    _, after, h = drift
    X, users, items = full_data(after, "log1p")
    champion = _registered("itemknn", X, users, items, after.items, tmp_path)
    rescored = score_champion("1", lambda: champion, h, METRIC, None, 0)
    assert rescored.overlap == pytest.approx(1.0)
    assert decide(0.2, champion=rescored)[1] == "ChampionInSample"


# ------------------------------------------------------------------- an unloadable champion is refused


def _pyfunc_dir(tmp_path):
    from recops_model.pyfunc import save_pyfunc_model

    path = tmp_path / "mlflow-model"
    save_pyfunc_model(_tiny_champion(), path)
    return path


def test_champion_loads_from_an_mlflow_model_dir(tmp_path):
    from recops_training.tracking import load_mlflow_model_dir

    model = load_mlflow_model_dir(_pyfunc_dir(tmp_path))
    assert model.item_ids.tolist() == ["i0", "i1", "i2", "old"] and model.digest


def test_tampered_champion_is_refused_before_it_is_read(tmp_path):
    from recops_training.tracking import load_mlflow_model_dir

    d = _pyfunc_dir(tmp_path)
    np.save(d / "artifacts" / "recops_model" / "popularity.npy", np.ones(4, np.float32))
    with pytest.raises(ModelRejected) as err:
        load_mlflow_model_dir(d)
    assert err.value.reason == "DigestMismatch"
    s = score_champion("1", lambda: load_mlflow_model_dir(d), _tiny_holdout(), METRIC, None, 0)
    assert s.value is None and s.problem == "DigestMismatch" and "popularity.npy" in s.detail
    ok, reason, msg = decide(0.9, champion=s)
    assert not ok and reason == "ChampionNotScored" and "DigestMismatch" in msg


def test_champion_swapped_for_another_valid_model_is_refused(tmp_path):
    """A self-consistent model directory whose digest is not the one MLmodel recorded at training."""
    from recops_training.tracking import load_mlflow_model_dir

    d = _pyfunc_dir(tmp_path)
    art = d / "artifacts" / "recops_model"
    other = replace(_tiny_champion(), popularity=np.ones(4, np.float32))
    for f in art.iterdir():
        f.unlink()
    art.rmdir()
    save_model(other, art)
    with pytest.raises(ChampionUnavailable) as err:
        load_mlflow_model_dir(d)
    assert err.value.reason == "DigestMismatch" and "recorded at training" in err.value.message


def test_champion_that_is_not_a_recops_model_is_refused(tmp_path):
    from recops_training.tracking import load_mlflow_model_dir

    d = _pyfunc_dir(tmp_path)
    (d / "MLmodel").write_text(json.dumps({"flavors": {"sklearn": {}}}))
    with pytest.raises(ChampionUnavailable) as err:
        load_mlflow_model_dir(d)
    assert err.value.reason == "NotARecopsModel"

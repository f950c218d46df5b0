"""The promotion gate against a real ``mlflow server``: after drift the challenger is compared with the
champion re-scored on the challenger's own holdout (not with the number the champion's old run logged),
a worse run is still refused and says why, and a champion that cannot be loaded is never promoted over.

The data is the FeaturePipeline's synthetic world (``recops_features.datagen``) with its drift knobs,
written as snapshots in the layout the training job reads (an ``events`` table and the catalogue)."""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from integration.training.jobs import client, config, run_train, versions_of

pytestmark = pytest.mark.integration

END = date(2026, 11, 1)  # fixed, so the world (and every metric below) is the same on every run
DRIFT_START = END - timedelta(days=14)
WINDOW = timedelta(days=28)  # each snapshot covers 28 days, as the full-loop FeaturePipeline does
EASE = {"l2": 200}


def _write_snapshot(root: Path, world, since: date, until: date) -> Path:
    ev = world.events
    day = ev["ts"].dt.date
    ev = ev[(day >= since) & (day < until)]
    events = ev[["user_id", "item_id", "ts"]].assign(event_type=ev["event_type"].astype(str))
    items = world.items[world.items["release_date"] < until][["item_id", "category"]]
    version = "sha256-" + hashlib.sha256(f"{since}..{until}".encode()).hexdigest()[:32]
    d = root / version
    d.mkdir()
    events.to_parquet(d / "events.parquet")
    items.to_parquet(d / "items.parquet")
    manifest = {"version": version, "digest": version, "tables": {"events": {"rows": len(events)}}}
    (d / "manifest.json").write_text(json.dumps(manifest))
    return d


@pytest.fixture(scope="module")
def drifted_snapshots(tmp_path_factory):
    """One world of 42 days; from 14 days before its end a cohort of new users takes 60% of the sessions
    (prices rise too). ``before``: the 28 days before the drift; ``after``: the last 28 days, whose
    7-day holdout lies entirely in the drift."""
    from recops_features.datagen import DriftSpec, GenerateSpec, generate

    spec = GenerateSpec(
        events=100_000,
        days=42,
        end_date=END,
        seed=42,
        drift=DriftSpec(start=DRIFT_START, new_user_share=0.6, price_multiplier=1.3),
    )
    world = generate(spec)
    root = tmp_path_factory.mktemp("drift-snapshots")
    before = _write_snapshot(root, world, DRIFT_START - WINDOW, DRIFT_START)
    after = _write_snapshot(root, world, END - WINDOW, END)
    return before, after


def _gate(**over):
    return {"metric": "ndcg_at_10", "margin": "0.005", **over}


def test_drift_retrain_beats_the_champion_rescored_on_the_new_holdout(tmp_path, mlflow_server, drifted_snapshots):
    before, after = drifted_snapshots
    model = "it-drift"
    c = client(mlflow_server)

    code, first, err, _ = run_train(
        tmp_path, config(before, model, "drift-1", "ease", EASE, promotion=_gate()), mlflow_server, "first"
    )
    assert code == 0 and first["promotionDecision"] == "NoChampion", (first, err[-2000:])
    logged_by_champion = float(first["metrics"]["ndcg_at_10"])  # on the champion's own, pre-drift holdout

    code, second, err, _ = run_train(
        tmp_path, config(after, model, "drift-2", "ease", EASE, promotion=_gate()), mlflow_server, "second"
    )
    assert code == 0, (second, err[-3000:])
    challenger = float(second["metrics"]["ndcg_at_10"])
    baseline = float(second["baselineMetrics"]["ndcg_at_10"])
    champ = second["champion"]
    assert champ["version"] == "1" and champ["metric"] == "ndcg_at_10" and champ["basis"] == "rescored"
    rescored = float(champ["value"])
    # the situation of the bug: the old gate compared with the champion's old number and refused
    assert logged_by_champion > challenger, (logged_by_champion, challenger)
    # the fixed gate: the champion on this holdout is lower, the challenger beats it by the margin and popularity
    assert rescored + 0.005 <= challenger and challenger > baseline
    assert float(champ["holdoutOverlap"]) < 0.2  # v1 was trained before this holdout: out-of-sample
    assert second["promoted"] is True and second["promotionDecision"] == "BeatChampion"
    assert second["promotionReason"] == (
        f"NDCG@10 {challenger:.4f} beats champion v1 re-scored on this holdout {rescored:.4f} by margin 0.005 "
        f"and popularity {baseline:.4f}"
    )
    assert c.get_model_version_by_alias(model, "champion").version == "2"
    run = c.get_run(second["runId"])
    assert run.data.metrics["champion_ndcg_at_10"] == pytest.approx(rescored, abs=5e-5)
    assert run.data.tags["recops.champion.version"] == "1" and run.data.tags["recops.champion.basis"] == "rescored"
    assert "champion_holdout_overlap" in run.data.metrics

    # a deliberately worse run on the drifted snapshot: registered, not promoted, and it says why
    code, worse, err, _ = run_train(
        tmp_path,
        config(after, model, "drift-3", "popularity", {}, promotion=_gate()),
        mlflow_server,
        "worse",
    )
    assert code == 3, (worse, err[-2000:])
    assert worse["reason"] == "PromotionRefused" and worse["promotionDecision"] == "WorseThanBaseline"
    assert "does not beat the popularity baseline" in worse["promotionReason"]
    # v2 evaluated this very holdout: its run's own (out-of-sample) number is the comparison, no re-scoring
    assert worse["champion"]["version"] == "2" and worse["champion"]["basis"] == "sameHoldout"
    assert worse["champion"]["value"] == second["metrics"]["ndcg_at_10"]

    # a good model on a shorter holdout of the same snapshot: v2 was refitted on all of it, so v2's score
    # there is in-sample and the gate refuses to compare (and says how to fix it)
    shorter = config(
        after, model, "drift-4", "ease", EASE, promotion=_gate(), evaluation={"holdoutDays": 5, "ks": [10]}
    )
    code, in_sample, err, _ = run_train(tmp_path, shorter, mlflow_server, "in-sample")
    assert code == 3, (in_sample, err[-2000:])
    assert in_sample["promotionDecision"] == "ChampionInSample", in_sample
    assert float(in_sample["champion"]["holdoutOverlap"]) > 0.9
    assert (
        "champion v2 was trained on" in in_sample["promotionReason"] and "holdoutDays" in in_sample["promotionReason"]
    )
    # the rerun of that job reads the champion's score back from its run: same decision, no second version
    code, again, err, _ = run_train(tmp_path, shorter, mlflow_server, "in-sample-again")
    assert code == 3 and again["reused"] is True and again["promotionDecision"] == "ChampionInSample", again
    assert again["champion"] == in_sample["champion"]
    assert c.get_model_version_by_alias(model, "champion").version == "2"
    assert versions_of(c, model) == [1, 2, 3, 4]


def _artifact_dir(mlflow_home: Path, c, model: str, version: str) -> Path:
    """Where the artifact store keeps the version's ``recops_model`` directory."""
    uri = c.get_model_version_download_uri(model, version)
    assert uri.startswith("mlflow-artifacts:/"), uri
    d = mlflow_home / "artifacts" / uri.removeprefix("mlflow-artifacts:/").lstrip("/") / "artifacts" / "recops_model"
    assert (d / "MANIFEST.json").is_file(), d
    return d


def test_unloadable_champion_refuses_promotion(tmp_path, mlflow_server, mlflow_home, snapshot_dir):
    model = "it-tampered"
    c = client(mlflow_server)
    code, res, err, _ = run_train(tmp_path, config(snapshot_dir, model, "tamper-1"), mlflow_server, "v1")
    assert code == 0 and res["promoted"] is True, (res, err[-2000:])
    art = _artifact_dir(mlflow_home, c, model, "1")

    # tampered after registration: the manifest's digest no longer matches popularity.npy
    np.save(art / "popularity.npy", np.ones(np.load(art / "popularity.npy").shape, np.float32))
    shorter = {"holdoutDays": 5, "ks": [5, 10, 20]}  # another holdout: the champion must be re-scored
    code, res, err, _ = run_train(
        tmp_path, config(snapshot_dir, model, "tamper-2", evaluation=shorter), mlflow_server, "v2"
    )
    assert code == 3, (res, err[-2000:])
    assert res["promoted"] is False and res["promotionDecision"] == "ChampionNotScored"
    assert res["champion"] == {"version": "1", "metric": "ndcg_at_10", "basis": "rescored", "problem": "DigestMismatch"}
    assert "champion v1 could not be scored" in res["promotionReason"] and "popularity.npy" in res["promotionReason"]
    assert c.get_run(res["runId"]).data.tags["recops.champion.problem"].startswith("DigestMismatch")

    # the champion's model directory is gone from the artifact store
    for f in art.iterdir():
        f.unlink()
    art.rmdir()
    code, res, err, _ = run_train(
        tmp_path, config(snapshot_dir, model, "tamper-3", evaluation=shorter), mlflow_server, "v3"
    )
    assert code == 3, (res, err[-2000:])
    assert res["promotionDecision"] == "ChampionNotScored" and res["champion"]["problem"], res
    assert c.get_model_version_by_alias(model, "champion").version == "1"
    assert versions_of(c, model) == [1, 2, 3]

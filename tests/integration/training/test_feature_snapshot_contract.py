"""The snapshot contract with the FeaturePipeline job: its real output (``recops-features generate``
then ``run`` into a local directory) is read by the training job's loader and split in time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def _features(*args, cwd):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(ROOT / s) for s in ("feature-jobs", "training", "model-format")),
    }
    return subprocess.run(
        [sys.executable, "-m", "recops_features", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_training_reads_a_real_feature_snapshot(tmp_path):
    pytest.importorskip("recops_features.job")
    raw, out = tmp_path / "raw", tmp_path / "features"
    p = _features(
        "generate", "--target", str(raw), "--events", "40000", "--days", "21", "--end-date", "2026-11-01", cwd=tmp_path
    )
    assert p.returncode == 0, p.stderr[-2000:]
    events_uri = raw / "events" if (raw / "events").exists() else raw
    catalog = next(iter(sorted(raw.rglob("items*.parquet"))), None)
    cfg = {
        "name": "contract",
        "sources": {"events": {"uri": str(events_uri)}, **({"catalog": {"uri": str(catalog)}} if catalog else {})},
        "window": {"start": "2026-10-11T00:00:00Z", "end": "2026-11-01T00:00:00Z"},
        "output": {"uri": str(out)},
    }
    (tmp_path / "f.json").write_text(json.dumps(cfg))
    p = _features(
        "run", "--config", str(tmp_path / "f.json"), "--result-file", str(tmp_path / "f.result.json"), cwd=tmp_path
    )
    if p.returncode != 0:
        pytest.skip(f"feature job did not publish (exit {p.returncode}): {p.stderr[-1500:]}")

    from recops_training.data import full_data, load_snapshot, temporal_holdout

    snap = load_snapshot(str(out))  # the output root: latest.json names the snapshot
    assert snap.version and (out / snap.version / "manifest.json").exists()
    assert snap.granularity in ("events", "pairs", "pairs-last-only")
    h = temporal_holdout(snap, 7, "log1p")
    assert h.X_train.nnz > 0 and (h.n_rel_all > 0).sum() > 0
    X, users, items = full_data(snap, "log1p")
    assert X.shape == (len(users), len(items)) and X.nnz == len(snap.pairs.drop_duplicates(["user_id", "item_id"]))

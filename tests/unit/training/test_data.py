"""Reading snapshots and the temporal holdout."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from recops_training.data import build_matrix, load_snapshot, temporal_holdout
from recops_training.errors import InvalidInput


def write_snapshot(d, tables, version="sha256-abc"):
    d.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        df.to_parquet(d / f"{name}.parquet")
    (d / "manifest.json").write_text(
        json.dumps({"version": version, "tables": {n: {"rows": len(t)} for n, t in tables.items()}})
    )
    return d


T = pd.Timestamp("2026-10-01", tz="UTC")


def day(n):
    return T + pd.Timedelta(days=n)


@pytest.fixture
def interactions():
    # u1: i1 only before the cut, i2 before and after (repeat), i3 only after (new)
    # u2: i1 before; u3 only after the cut (not a training user)
    return pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2", "u3"],
            "item_id": ["i1", "i2", "i3", "i1", "i2"],
            "strength": [1.0, 3.0, 2.0, 5.0, 1.0],
            "first_ts": [day(1), day(2), day(25), day(3), day(26)],
            "last_ts": [day(5), day(27), day(25), day(3), day(26)],
        }
    )


def test_pairs_split(tmp_path, interactions):
    d = write_snapshot(
        tmp_path / "s1",
        {
            "interactions": interactions,
            "items": pd.DataFrame({"item_id": ["i1", "i2", "i3"], "category": ["a", "b", "b"]}),
        },
    )
    snap = load_snapshot(str(d))
    assert snap.version == "sha256-abc" and snap.granularity == "pairs"
    h = temporal_holdout(snap, holdout_days=7, weighting="strength")  # cut = day 20
    assert h.user_ids.tolist() == ["u1", "u2"] and h.item_ids.tolist() == ["i1", "i2"]
    assert h.X_train.toarray().tolist() == [[1.0, 3.0], [5.0, 0.0]]
    # u1's test items: i2 (repeat) and i3 (new, outside the training catalogue)
    assert h.n_rel_all.tolist() == [2, 0] and h.n_rel_new.tolist() == [1, 0]
    assert h.test_all.toarray().tolist() == [[0, 1], [0, 0]]
    assert h.test_new.nnz == 0  # i3 is not in the catalogue, but counted in n_rel_new
    assert h.popularity.tolist() == pytest.approx([1.0, 0.5])


def test_events_table_preferred(tmp_path):
    ev = pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "a"],
            "item_id": ["x", "y", "x", "x"],
            "ts": [day(0), day(1), day(2), day(9)],
            "event_type": ["view"] * 4,
        }
    )
    d = write_snapshot(tmp_path / "s2", {"events": ev, "interactions": ev[["user_id", "item_id"]]})
    snap = load_snapshot(str(d))
    assert snap.granularity == "events"
    h = temporal_holdout(snap, holdout_days=3, weighting="binary")
    assert h.n_rel_all.tolist() == [1, 0] and h.n_rel_new.tolist() == [0, 0]  # a re-bought x


def test_latest_json_resolves(tmp_path, interactions):
    write_snapshot(tmp_path / "root" / "sha256-abc", {"interactions": interactions})
    (tmp_path / "root" / "latest.json").write_text(json.dumps({"version": "sha256-abc"}))
    assert load_snapshot(str(tmp_path / "root")).version == "sha256-abc"


def test_missing_snapshot_is_invalid_input(tmp_path):
    with pytest.raises(InvalidInput) as e:
        load_snapshot(str(tmp_path / "nope"))
    assert e.value.reason == "SnapshotNotFound" and e.value.exit_code == 2
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "interactions.parquet").write_bytes(b"x")  # manifest not written yet
    with pytest.raises(InvalidInput):
        load_snapshot(str(tmp_path / "half"))


def test_version_mismatch(tmp_path, interactions):
    d = write_snapshot(tmp_path / "s", {"interactions": interactions})
    with pytest.raises(InvalidInput) as e:
        load_snapshot(str(d), expected_version="sha256-other")
    assert e.value.reason == "SnapshotVersionMismatch"


def test_no_time_column(tmp_path, interactions):
    d = write_snapshot(tmp_path / "s", {"interactions": interactions.drop(columns=["first_ts", "last_ts"])})
    with pytest.raises(InvalidInput) as e:
        load_snapshot(str(d))
    assert "first_ts and last_ts" in e.value.message


def test_holdout_too_long(tmp_path, interactions):
    snap = load_snapshot(str(write_snapshot(tmp_path / "s", {"interactions": interactions})))
    with pytest.raises(InvalidInput) as e:
        temporal_holdout(snap, holdout_days=100, weighting="binary")
    assert e.value.reason == "EmptyHoldout"


def test_build_matrix_weighting():
    pairs = pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "x", "y"], "weight": [1.0, 2.0, 4.0]})
    users, items = np.array(["a", "b"]), np.array(["x", "y"])
    assert build_matrix(pairs, users, items, "strength").toarray().tolist() == [[3, 0], [0, 4]]
    assert build_matrix(pairs, users, items, "binary").toarray().tolist() == [[1, 0], [0, 1]]
    assert build_matrix(pairs, users, items, "log1p").toarray() == pytest.approx(np.log1p([[3, 0], [0, 4]]))
    # ids outside the vocabulary are dropped
    assert build_matrix(pairs, np.array(["a"]), np.array(["y"]), "binary").nnz == 0

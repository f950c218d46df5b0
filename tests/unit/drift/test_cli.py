"""The check program end to end on local files: config errors, payload logs, snapshots, report, result."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from recops_drift import cli
from recops_drift import stats as S
from recops_drift.profile import build_reference_profile

NOW = datetime(2026, 11, 29, 4, 0, tzinfo=UTC)
N_ITEMS = 200


def _catalogue() -> tuple[list[str], np.ndarray, list[str]]:
    ids = [f"i{i}" for i in range(N_ITEMS)]
    popularity = (1000.0 / (1 + np.arange(N_ITEMS))).astype(np.float32)  # Zipf-like
    cats = [("books", "toys", "garden", "music")[i % 4] for i in range(N_ITEMS)]
    return ids, popularity, cats


def _profile_file(tmp: Path, *, with_users: bool = False) -> Path:
    rng = np.random.default_rng(1)
    ids, pop, cats = _catalogue()
    weights = pop / pop.sum()
    recommended = rng.choice(ids, p=weights, size=20_000)
    frames: dict[str, Any] = {}
    if with_users:
        import pandas as pd

        frames["users"] = pd.DataFrame(
            {
                "user_id": [f"u{i}" for i in range(5000)],
                "n_events": rng.poisson(20, 5000),
                "segment": rng.choice(["new", "casual", "loyal"], size=5000),
            }
        )
    prof = build_reference_profile(
        frames,
        recommended_items=recommended,
        item_ids=ids,
        item_popularity=pop,
        item_categories=cats,
        model_version="3",
    )
    path = tmp / "reference_profile.json"
    path.write_text(prof.dumps())
    return path


def _write_logs(root: Path, records: list[dict[str, Any]]) -> None:
    by_day: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        by_day.setdefault(rec["ts"][:10], []).append(rec)
    for day, recs in by_day.items():
        folder = root / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        body = "".join(json.dumps(r) + "\n" for r in recs)
        (folder / f"payloads-{len(recs)}.jsonl").write_text(body + "not json\n")


def _records(n: int, *, drift: bool, version: str = "3", hours: float = 20) -> list[dict[str, Any]]:
    rng = np.random.default_rng(2 if drift else 3)
    ids, pop, _ = _catalogue()
    weights = np.ones(N_ITEMS) / N_ITEMS if drift else pop / pop.sum()  # drift: long tail pushed
    out = []
    for j in range(n):
        ts = NOW - timedelta(hours=hours * (j + 0.5) / n)
        items = [str(x) for x in rng.choice(ids, p=weights, size=10)]
        out.append(
            {
                "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "model": "recs",
                "modelVersion": version,
                "route": "single",
                "userId": f"u{j}",
                "k": 10,
                "category": None,
                "excludeSeen": True,
                "excludeCount": 0,
                "knownUser": True,
                "fallback": False,
                "itemIds": items,
                "scores": [1.0] * 10,
            }
        )
    return out


def _run(tmp: Path, config: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    cfg = tmp / "config.json"
    cfg.write_text(json.dumps(config))
    out = tmp / "result.json"
    code = cli.main(["run", "--config", str(cfg), "--result-file", str(out)])
    body = out.read_bytes()
    assert len(body) < 4096
    return code, json.loads(body)


def _config(tmp: Path, profile: Path, logs: Path, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "monitor": "recs-drift",
        "namespace": "shop",
        "reference": {"profileUri": str(profile)},
        "current": {"payloadLogs": {"uri": str(logs), "duration": "24h"}},
        "features": [
            {"name": "output.popularity", "method": "ks", "threshold": "0.1"},
            {"name": "output.category", "method": "chi2", "threshold": "0.1"},
        ],
        "driftShare": "0.5",
        "minSamples": 200,
        "report": {"path": str(tmp / "report.html")},
        "checkedAt": NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    base.update(extra)
    return base


def test_no_drift_then_drift_from_payload_logs(tmp_path: Path) -> None:
    profile = _profile_file(tmp_path)
    logs = tmp_path / "logs"
    _write_logs(logs, _records(1000, drift=False) + _records(300, drift=True, version="2"))
    code, doc = _run(tmp_path, _config(tmp_path, profile, logs))
    assert code == 0, doc
    assert doc["ok"] and doc["reason"] == "NoDrift" and doc["drifted"] is False
    assert doc["samples"] == 1000  # the other model version's records are not counted
    assert {f["name"] for f in doc["features"]} >= {"output.popularity", "output.category"}
    assert doc["reportUri"] == str(tmp_path / "report.html")
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in html and "output.popularity" in html
    assert doc["checkedAt"] == "2026-11-29T04:00:00Z"

    drifted = tmp_path / "drifted"
    _write_logs(drifted, _records(1000, drift=True))
    code, doc = _run(tmp_path, _config(tmp_path, profile, drifted))
    assert code == 0 and doc["reason"] == "DriftDetected" and doc["drifted"] is True
    pop = next(f for f in doc["features"] if f["name"] == "output.popularity")
    assert pop["drifted"] and pop["status"] == "Drifted" and float(pop["score"]) > 0.1
    assert "output.popularity" in doc["driftedFeatures"]


def test_window_excludes_old_records_and_reports_insufficient_data(tmp_path: Path) -> None:
    profile = _profile_file(tmp_path)
    logs = tmp_path / "logs"
    _write_logs(logs, _records(150, drift=True) + _records(2000, drift=True, hours=24 * 5)[1500:])
    code, doc = _run(tmp_path, _config(tmp_path, profile, logs))
    assert code == 0
    assert doc["reason"] == "InsufficientData" and doc["drifted"] is False and doc["ok"] is True
    assert all(f["status"] == "InsufficientData" for f in doc["features"])


def test_snapshot_as_current_window(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    profile = _profile_file(tmp_path, with_users=True)
    root = tmp_path / "features"
    snap = root / "snapshots" / "v2"
    snap.mkdir(parents=True)
    rng = np.random.default_rng(9)
    pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(4000)],
            "n_events": rng.poisson(35, 4000),
            "segment": rng.choice(["new", "casual", "loyal"], size=4000),
        }
    ).to_parquet(snap / "users.parquet")
    (snap / "manifest.json").write_text(json.dumps({"version": "sha256:abc", "tables": {"users": {"rows": 4000}}}))
    (root / "latest.json").write_text(json.dumps({"path": "snapshots/v2"}))
    config = _config(tmp_path, profile, tmp_path / "no-logs")
    config["current"] = {"snapshot": {"uri": str(root)}}
    config["features"] = []
    code, doc = _run(tmp_path, config)
    assert code == 0, doc
    statuses = {f["name"]: f for f in doc["features"]}
    assert statuses["users.n_events"]["drifted"] and statuses["users.segment"]["status"] == "NoDrift"
    assert doc["snapshotVersion"] == "sha256:abc" and doc["samples"] == 4000


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"reference": {}}, "reference"),
        ({"driftShare": 0.3}, "driftShare"),
        ({"features": [{"name": "x", "method": "wasserstein"}]}, "features[0].method"),
        ({"features": [{"name": "x", "threshold": "abc"}]}, "features[0].threshold"),
        ({"minSampels": 3}, "minSampels"),
        ({"current": {"payloadLogs": {"uri": "/x", "duration": "1 day"}}}, "current.payloadLogs.duration"),
    ],
)
def test_invalid_config_exit_2_names_the_field(tmp_path: Path, config: dict[str, Any], needle: str) -> None:
    base = _config(tmp_path, tmp_path / "p.json", tmp_path / "logs")
    base.update(config)
    code, doc = _run(tmp_path, base)
    assert code == 2 and doc["ok"] is False and doc["reason"] == "InvalidConfig"
    assert needle in doc["message"]


def test_missing_reference_is_invalid_input(tmp_path: Path) -> None:
    code, doc = _run(tmp_path, _config(tmp_path, tmp_path / "nope.json", tmp_path / "logs"))
    assert code == 2 and doc["reason"] == "NotFound" and "nope.json" in doc["message"]
    (tmp_path / "bad.json").write_text('{"format": "something-else"}')
    code, doc = _run(tmp_path, _config(tmp_path, tmp_path / "bad.json", tmp_path / "logs"))
    assert code == 2 and doc["reason"] == "InvalidReference"


def test_result_document_is_trimmed_below_4_kib() -> None:
    rng = np.random.default_rng(4)
    names = {f"feature_with_a_rather_long_name_{i:03d}": rng.normal(size=2000) for i in range(200)}
    prof = S.prepare_profile(names)
    current = {k: v + (0.5 if i % 2 else 0.0) for i, (k, v) in enumerate(names.items())}
    result = S.compare(prof, current, S.DriftSpec())
    doc = cli.result_document(result, checked_at="2026-11-29T04:00:00Z", report_uri="s3://b/" + "r" * 300)
    body = json.dumps(doc, separators=(",", ":")).encode()
    assert len(body) < 4000
    assert doc["featuresTotal"] == 200 and doc["featuresOmitted"] == 200 - len(doc["features"])
    assert all(f["drifted"] for f in doc["features"])  # drifted ones first
    assert doc["score"] == "0.5" and doc["drifted"] is True


def test_result_goes_to_env_file_or_stdout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    target = tmp_path / "r.json"
    monkeypatch.setenv("RECOPS_RESULT_FILE", str(target))
    cli.write_result({"ok": True, "reason": "NoDrift", "message": "m"}, None)
    assert json.loads(target.read_text())["reason"] == "NoDrift"
    monkeypatch.delenv("RECOPS_RESULT_FILE")
    cli.write_result({"ok": True, "reason": "NoDrift", "message": "m"}, "-")
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_training_reference_document_is_understood(tmp_path: Path) -> None:
    # The shape recops_training.runner.reference_profile writes (predictions only, no raw samples).
    doc = {
        "kind": "RecopsReferenceProfile",
        "formatVersion": 1,
        "snapshot": {"uri": "s3://f/s", "version": "v1", "digest": "d", "granularity": "events"},
        "tables": None,
        "statistics": None,
        "predictions": {
            "k": 10,
            "users": 500,
            "categoryShare": {"books": 0.4, "toys": 0.3, "garden": 0.2, "music": 0.1},
            "recommendedPopularity": {
                "mean": 120.0,
                "quantiles": {"0.1": 5.0, "0.25": 20.0, "0.5": 60.0, "0.75": 150.0, "0.9": 300.0},
            },
        },
    }
    path = tmp_path / "training_profile.json"
    path.write_text(json.dumps(doc))
    from recops_drift.profile import load_reference_document

    prof = load_reference_document(doc)
    assert set(prof.features) == {"output.category", "output.popularity"}
    category = prof.features["output.category"]
    assert isinstance(category, S.CategoricalProfile) and category.counts.tolist() == [
        2000,
        1500,
        1000,
        500,
        0,
    ]
    popularity = prof.features["output.popularity"]
    assert isinstance(popularity, S.NumericProfile) and not popularity.exact
    assert popularity.edges.tolist() == [5.0, 20.0, 60.0, 150.0, 300.0]
    assert popularity.bin_counts.tolist() == [500, 750, 1250, 1250, 750, 500]


def test_profile_subcommand_builds_an_exact_profile_from_a_snapshot(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    snap = tmp_path / "snap"
    snap.mkdir()
    rng = np.random.default_rng(12)
    pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(3000)],
            "age": rng.normal(40, 9, 3000),
            "tier": rng.choice(["a", "b"], 3000),
        }
    ).to_parquet(snap / "users.parquet")
    (snap / "manifest.json").write_text(
        json.dumps({"version": "sha256:def", "tables": {"users": {"file": "users.parquet", "rows": 3000}}})
    )
    out = tmp_path / "profile.json"
    result = tmp_path / "profile-result.json"
    code = cli.main(["profile", "--snapshot", str(snap), "--out", str(out), "--result-file", str(result)])
    doc = json.loads(result.read_text())
    assert code == 0 and doc["reason"] == "ProfileWritten" and doc["features"] == 2, doc
    prof = S.ReferenceProfile.loads(out.read_text())
    assert set(prof.features) == {"users.age", "users.tier"}
    age = prof.features["users.age"]
    assert isinstance(age, S.NumericProfile) and age.exact and age.count == 3000
    assert prof.source["snapshotVersion"] == "sha256:def"


def test_item_lookup_from_a_real_model_directory_is_digest_checked(tmp_path: Path) -> None:
    import sys

    root = Path(__file__).resolve().parents[3]
    sys.path.insert(0, str(root / "model-format"))
    recops_model = pytest.importorskip("recops_model")
    sp = pytest.importorskip("scipy.sparse")
    from recops_drift import sources

    model = recops_model.RecModel(
        algorithm="popularity",
        kind="popularity",
        user_ids=np.array(["u1", "u2"]),
        item_ids=np.array(["a", "b", "c"]),
        seen=sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32)),
        popularity=np.array([5.0, 3.0, 1.0], dtype=np.float32),
        item_categories=np.array(["books", "toys", "books"]),
    )
    recops_model.save_model(model, tmp_path / "m")
    lookup = sources.item_lookup_from_model_dir(str(tmp_path / "m"))
    assert lookup.item_ids == ("a", "b", "c") and lookup.categories == ("books", "toys", "books")
    assert lookup.popularity.tolist() == [5.0, 3.0, 1.0]
    np.save(tmp_path / "m" / "popularity.npy", np.array([9.0, 9.0, 9.0], dtype=np.float32))  # tampered
    from recops_drift.errors import InvalidInput

    with pytest.raises(InvalidInput, match="does not match MANIFEST"):
        sources.item_lookup_from_model_dir(str(tmp_path / "m"))

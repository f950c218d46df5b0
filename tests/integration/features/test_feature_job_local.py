"""The job program with local-directory inputs and outputs (the lab's `local` backend, PVC mounts).

Real processes and a real filesystem; no servers needed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from recops_features.datagen import GenerateSpec, generate, write_dataset
from recops_features.snapshot import SnapshotCorrupt, load_snapshot, read_latest

pytestmark = pytest.mark.integration

FEATURE_JOBS = str(Path(__file__).resolve().parents[3] / "feature-jobs")
SPEC = GenerateSpec(events=8_000, days=7, end_date=date(2026, 11, 29), seed=21)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RECOPS_"))}
    return {**env, "PYTHONPATH": FEATURE_JOBS, **extra}


def _config(lake: Path, out: Path, **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "sources": {
            "events": {"uri": str(lake / "events")},
            "catalog": {"uri": str(lake / "catalog")},
            "profiles": {"uri": str(lake / "profiles" / "users.parquet")},
        },
        "window": {"lastDays": 7, "referenceTime": "2026-11-29T00:30:00Z"},
        "output": {"uri": str(out)},
        "quality": {"maxEventAge": "6h", "maxNullFraction": [{"table": "users", "column": "segment", "max": "0"}]},
    }
    cfg.update(overrides)
    return cfg


def _run(cfg: dict[str, Any], tmp_path: Path, name: str, **env: str) -> tuple[int, dict[str, Any], str]:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(cfg))
    result = tmp_path / f"{name}.result.json"
    proc = subprocess.run(
        [sys.executable, "-m", "recops_features", "run", "--config", str(path)],
        env=_env(RECOPS_RESULT_FILE=str(result), **env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc.returncode, (json.loads(result.read_text()) if result.exists() else {}), proc.stderr


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    root = tmp_path_factory.mktemp("lake")
    data = generate(SPEC)
    write_dataset(data, str(root), fmt="jsonl", rows_per_file=500)
    return root, data


def test_generate_cli_writes_partitions_and_summary(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "recops_features",
            "generate",
            "--target",
            str(tmp_path / "g"),
            "--events",
            "3000",
            "--days",
            "3",
            "--end-date",
            "2026-11-29",
            "--seed",
            "1",
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["events"] == 3000 and summary["eventFiles"] == 3
    parts = sorted(p.parent.name for p in (tmp_path / "g" / "events").rglob("part-*.parquet"))
    assert parts == ["date=2026-11-26", "date=2026-11-27", "date=2026-11-28"]
    assert json.loads((tmp_path / "g" / "generator.json").read_text())["spec"]["seed"] == 1
    log_line = json.loads(proc.stderr.strip().splitlines()[0])
    assert log_line["level"] == "info" and log_line["msg"][0].isupper()


def test_local_snapshot_from_jsonl_matches_generated_counts(lake: tuple[Path, Any], tmp_path: Path) -> None:
    root, data = lake
    out = tmp_path / "out"
    code, result, stderr = _run(_config(root, out), tmp_path, "run")
    assert code == 0, (result, stderr)
    window = data.events[data.events["ts"] >= pd.Timestamp("2026-11-22", tz="UTC")]
    assert result["events"] == len(window)
    assert result["rows"] == len(window.drop_duplicates(["user_id", "item_id"]))
    assert result["users"] == window["user_id"].nunique() and result["items"] == window["item_id"].nunique()
    snap = Path(result["uri"])
    assert sorted(p.name for p in snap.iterdir()) == [
        "interactions.parquet",
        "items.parquet",
        "manifest.json",
        "users.parquet",
    ]
    assert sorted(p.name for p in out.iterdir()) == [snap.name, "latest.json"]
    assert read_latest(str(out))["version"] == result["version"]  # type: ignore[index]
    users = pd.read_parquet(snap / "users.parquet")
    assert users["events"].sum() == len(window)
    manifest, frames = load_snapshot(str(out))  # follows latest.json, verifies sha256s
    assert manifest["version"] == result["version"] and len(frames["interactions"]) == result["rows"]
    (snap / "items.parquet").write_bytes(b"tampered")
    with pytest.raises(SnapshotCorrupt):
        load_snapshot(str(snap))
    # Structured logs: one JSON object per line, no stack traces.
    for line in stderr.strip().splitlines():
        assert json.loads(line)["logger"] == "recops-features"


def test_local_kill_midway_leaves_no_snapshot_and_rerun_is_clean(lake: tuple[Path, Any], tmp_path: Path) -> None:
    root, _ = lake
    out = tmp_path / "out"
    code, _, _ = _run(_config(root, out), tmp_path, "killed", RECOPS_FEATURES_FAULT="after-data-file")
    assert code == -signal.SIGKILL
    leftovers = list(out.iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".tmp-")  # staging only: invisible to readers
    assert read_latest(str(out)) is None
    code, result, _ = _run(_config(root, out), tmp_path, "rerun")
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [result["version"], "latest.json"]
    code, again, _ = _run(_config(root, out), tmp_path, "again")
    assert code == 0 and again["version"] == result["version"] and again["reason"] == "AlreadyPublished"


def test_local_concurrent_runs_one_snapshot(lake: tuple[Path, Any], tmp_path: Path) -> None:
    root, _ = lake
    out = tmp_path / "out"
    procs = []
    for i in range(3):
        path = tmp_path / f"c{i}.json"
        path.write_text(json.dumps(_config(root, out)))
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "recops_features",
                    "run",
                    "--config",
                    str(path),
                    "--result-file",
                    str(tmp_path / f"c{i}.result.json"),
                ],
                env=_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    versions = {json.loads((tmp_path / f"c{i}.result.json").read_text())["version"] for i in range(3)}
    assert len(versions) == 1
    assert sorted(p.name for p in out.iterdir()) == [versions.pop(), "latest.json"]


def test_custom_transform_only(lake: tuple[Path, Any], tmp_path: Path) -> None:
    root, _ = lake
    plugin = tmp_path / "plug"
    plugin.mkdir()
    (plugin / "daily.py").write_text(
        "def daily(frames):\n"
        "    ev = frames['events']\n"
        "    out = ev.assign(day=ev['ts'].dt.floor('D')).groupby('day', as_index=False).size()\n"
        "    return {'daily': out}\n"
    )
    cfg = _config(
        root,
        tmp_path / "out",
        transform={"mode": "custom", "function": "daily:daily"},
        quality={"minRows": [{"table": "daily", "min": 7}], "uniqueKeys": [{"table": "daily", "columns": ["day"]}]},
    )
    code, result, stderr = _run(cfg, tmp_path, "custom", PYTHONPATH=f"{FEATURE_JOBS}:{plugin}")
    assert code == 0, (result, stderr)
    assert result["rows"] == 7 and Path(result["uri"], "daily.parquet").exists()


@pytest.mark.parametrize(
    ("transform", "reason"),
    [
        ({"mode": "custom", "function": "no_such_module:f"}, "TransformNotFound"),
        ({"mode": "custom", "function": "json:no_such_function"}, "TransformNotFound"),
        ({"mode": "custom", "function": "json:dumps"}, "TransformFailed"),
    ],
)
def test_broken_custom_transforms_exit_2(
    lake: tuple[Path, Any], tmp_path: Path, transform: dict[str, str], reason: str
) -> None:
    root, _ = lake
    code, result, _ = _run(_config(root, tmp_path / "out", transform=transform), tmp_path, "bad")
    assert code == 2 and result["reason"] == reason
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_missing_local_input_and_bad_config_file(tmp_path: Path) -> None:
    code, result, _ = _run(_config(tmp_path / "nowhere", tmp_path / "out"), tmp_path, "missing")
    assert code == 2 and result["reason"] == "InputNotFound" and "sources.events.uri" in result["message"]
    proc = subprocess.run(
        [sys.executable, "-m", "recops_features", "run", "--config", str(tmp_path / "none.json"), "--result-file", "-"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and json.loads(proc.stdout)["reason"] == "ConfigNotFound"


def test_stale_freshness_exits_3_and_publishes_nothing(lake: tuple[Path, Any], tmp_path: Path) -> None:
    root, _ = lake
    cfg = _config(root, tmp_path / "out", window={"lastDays": 7, "referenceTime": "2026-11-30T12:00:00Z"})
    code, result, _ = _run(cfg, tmp_path, "stale")
    assert code == 3 and result["reason"] == "QualityGateFailed"
    check = next(q for q in result["quality"] if q["name"] == "maxEventAge")
    assert check["passed"] is False and check["threshold"] == "6h" and check["observed"].endswith("h")
    assert read_latest(str(tmp_path / "out")) is None

"""A real ``mlflow server`` (SQLite backend store, local artifact root) on a free loopback port,
and a small synthetic snapshot directory in the FeaturePipeline's layout."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
for sub in ("training", "model-format", "feature-jobs"):
    p = str(ROOT / sub)
    if p not in sys.path:
        sys.path.insert(0, p)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mlflow_bin() -> list[str]:
    exe = Path(sys.executable).with_name("mlflow")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mlflow"]


@pytest.fixture(scope="session")
def mlflow_home(tmp_path_factory):
    """The MLflow server's directory: mlflow.db, mlflow.log and the artifact store ``artifacts/``."""
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture(scope="session")
def mlflow_server(mlflow_home):
    """Start ``mlflow server`` and yield its URI; logs go to <mlflow_home>/mlflow.log."""
    d = mlflow_home
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    log = open(d / "mlflow.log", "wb")  # noqa: SIM115 - stays open while the server runs
    cmd = [
        *_mlflow_bin(),
        "server",
        "--backend-store-uri",
        f"sqlite:///{d / 'mlflow.db'}",
        "--artifacts-destination",
        str(d / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=d, start_new_session=True)
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}: {(d / 'mlflow.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(
                f"mlflow server did not become healthy in 120 s: {(d / 'mlflow.log').read_text()[-3000:]}"
            )
        time.sleep(0.5)
    yield uri
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
    log.close()


@pytest.fixture(scope="session")
def snapshot_dir(tmp_path_factory):
    """A published snapshot: interactions (user_id, item_id, strength, event counts, first_ts, last_ts),
    items, users and manifest.json written last."""
    from recops_training.synthetic import make_events

    events, items = make_events(n_users=800, n_items=400, n_events=30_000, n_categories=12, days=42, seed=7)
    g = events.groupby(["user_id", "item_id"], sort=True)
    inter = g.agg(first_ts=("ts", "min"), last_ts=("ts", "max"), event_count=("ts", "size")).reset_index()
    inter["strength"] = inter["event_count"].astype("float64")
    users = inter.groupby("user_id").size().rename("n_items").reset_index()
    root = tmp_path_factory.mktemp("snapshots")
    version = "sha256-" + "ab" * 16
    d = root / version
    d.mkdir()
    inter.to_parquet(d / "interactions.parquet")
    items.to_parquet(d / "items.parquet")
    users.to_parquet(d / "users.parquet")
    manifest = {
        "version": version,
        "digest": version,
        "tables": {
            "interactions": {"rows": len(inter), "columns": {"strength": {"mean": float(inter.strength.mean())}}},
            "items": {"rows": len(items), "columns": {"price": {"mean": float(items.price.mean())}}},
        },
    }
    (d / "manifest.json").write_text(json.dumps(manifest))
    (root / "latest.json").write_text(json.dumps({"version": version}))
    yield d
    shutil.rmtree(root, ignore_errors=True)

"""Reading a snapshot from an S3 prefix. The S3 endpoint is moto in server mode: an EMULATOR of S3
(real HTTP, real boto3 client), not AWS."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def moto_s3_emulator(tmp_path_factory):
    exe = Path(sys.executable).with_name("moto_server")
    if not exe.exists():
        pytest.skip("moto_server (the S3 emulator) is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_snapshot_from_s3_prefix_emulated(moto_s3_emulator, monkeypatch, tmp_path):
    import boto3
    import pandas as pd
    from recops_training.data import load_snapshot, temporal_holdout
    from recops_training.errors import InvalidInput

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_s3_emulator)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3 = boto3.client("s3", endpoint_url=moto_s3_emulator)
    s3.create_bucket(Bucket="features")
    t = pd.Timestamp("2026-10-01", tz="UTC")
    inter = pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "b"],
            "item_id": ["x", "y", "x", "z"],
            "strength": [1.0, 2.0, 1.0, 3.0],
            "first_ts": [t, t, t, t + pd.Timedelta(days=9)],
            "last_ts": [t, t + pd.Timedelta(days=9), t, t + pd.Timedelta(days=9)],
        }
    )
    version = "f" * 64
    inter.to_parquet(tmp_path / "interactions.parquet")
    s3.upload_file(str(tmp_path / "interactions.parquet"), "features", f"shop/{version}/interactions.parquet")
    s3.put_object(
        Bucket="features", Key=f"shop/{version}/manifest.json", Body=json.dumps({"version": version}).encode()
    )
    s3.put_object(
        Bucket="features",
        Key="shop/latest.json",
        Body=json.dumps({"version": version, "uri": f"s3://features/shop/{version}"}).encode(),
    )
    for uri in (f"s3://features/shop/{version}", "s3://features/shop"):
        snap = load_snapshot(uri)
        assert snap.version == version and len(snap.pairs) == 4
    h = temporal_holdout(snap, 3, "strength")
    assert h.n_rel_all.tolist() == [1, 1] and h.n_rel_new.tolist() == [0, 1]
    with pytest.raises(InvalidInput) as e:
        load_snapshot("s3://features/nothing-here")
    assert e.value.reason == "SnapshotNotFound"
    assert os.environ["AWS_ENDPOINT_URL_S3"] == moto_s3_emulator

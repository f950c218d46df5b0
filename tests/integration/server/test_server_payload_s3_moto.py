"""Payload logs to S3 from the real server process. The S3 endpoint is moto in server mode: an
emulator of the S3 API on loopback, not AWS."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from recops_model import save_model
from serverproc_helpers import free_port, small_model, stop_process, wait_http

pytestmark = pytest.mark.integration

CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture
def s3_emulator(tmp_path: Path) -> Iterator[str]:
    pytest.importorskip("moto")
    port = free_port()
    with open(tmp_path / "moto.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/moto-api/", 60, proc)
        yield url
    finally:
        stop_process(proc)


def test_payload_logs_land_in_s3_emulator(tmp_path: Path, s3_emulator: str, start_server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import boto3

    for k, v in CREDS.items():
        monkeypatch.setenv(k, v)
    s3 = boto3.client("s3", endpoint_url=s3_emulator)
    s3.create_bucket(Bucket="recops-payloads")
    save_model(small_model(), tmp_path / "model")
    srv = start_server(
        {"RECOPS_MODEL_URI": str(tmp_path / "model"), "RECOPS_RELOAD_INTERVAL_SECONDS": "0",
         "RECOPS_PAYLOAD_LOG_URI": "s3://recops-payloads/shop/recs", "RECOPS_PAYLOAD_SAMPLE_PERCENT": "100",
         "RECOPS_PAYLOAD_LOG_FLUSH_SECONDS": "0.2", "RECOPS_DEPLOYMENT": "shop/recs",
         "AWS_ENDPOINT_URL_S3": s3_emulator, **CREDS}
    )  # fmt: skip
    import httpx

    for u in ("u1", "u2", "nobody"):
        assert httpx.get(f"{srv.url}/v1/recommendations/{u}", params={"k": 2}).status_code == 200
    deadline = time.monotonic() + 20
    records: list[dict[str, object]] = []
    while time.monotonic() < deadline and len(records) < 3:
        listing = s3.list_objects_v2(Bucket="recops-payloads", Prefix="shop/recs/date=")
        records = []
        for obj in listing.get("Contents", []):
            assert obj["Key"].endswith(".jsonl")
            body = s3.get_object(Bucket="recops-payloads", Key=obj["Key"])["Body"].read().decode()
            records += [json.loads(line) for line in body.splitlines()]
        time.sleep(0.2)
    assert sorted(str(r["userId"]) for r in records) == ["nobody", "u1", "u2"]
    assert all(r["deployment"] == "shop/recs" and r["modelVersion"] for r in records)

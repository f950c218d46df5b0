"""Real servers for the drift check: ``mlflow server`` (SQLite backend store, local artifacts) and an
S3-compatible endpoint (moto in server mode: an emulator of S3, said so in the test names)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT / "drift") not in sys.path:
    sys.path.insert(0, str(ROOT / "drift"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(proc: subprocess.Popen[bytes], url: str, log: Path, what: str, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{what} was not ready in {seconds:.0f} s: {log.read_text()[-3000:]}")
        time.sleep(0.5)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)


def _bin(name: str, module: str) -> list[str]:
    exe = Path(sys.executable).with_name(name)
    return [str(exe)] if exe.exists() else [sys.executable, "-m", module]


@pytest.fixture(scope="session")
def drift_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` on a free loopback port; yields its URI."""
    if shutil.which("mlflow") is None and not Path(sys.executable).with_name("mlflow").exists():
        pytest.skip("mlflow is not installed")
    d = tmp_path_factory.mktemp("drift-mlflow")
    port = free_port()
    log = d / "mlflow.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                *_bin("mlflow", "mlflow"),
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
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=d,
            start_new_session=True,
        )
    uri = f"http://127.0.0.1:{port}"
    try:
        _wait(proc, f"{uri}/health", log, "mlflow server")
        yield uri
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def drift_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto in server mode (an S3 emulator) on a free loopback port; yields its endpoint URL."""
    pytest.importorskip("moto")
    d = tmp_path_factory.mktemp("drift-moto")
    port = free_port()
    log = d / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*_bin("moto_server", "moto.server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=d,
            start_new_session=True,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait(proc, f"{endpoint}/moto-api/", log, "moto_server", seconds=60)
        yield endpoint
    finally:
        _stop(proc)

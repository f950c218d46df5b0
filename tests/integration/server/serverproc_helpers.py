"""Process helpers for the model server integration tests (imported by name: pytest puts this
directory on sys.path)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import scipy.sparse as sp
from recops_model import RecModel

REPO = Path(__file__).resolve().parents[3]
PYTHONPATH = os.pathsep.join(
    [str(REPO / "model-format"), str(REPO / "model-server"), os.environ.get("PYTHONPATH", "")]
).rstrip(os.pathsep)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None, ok=(200,)) -> httpx.Response:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} while waiting for {url}")
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code in ok:
                return r
            last = r.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout}s (last: {last})")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class ServerProcess:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
        self.proc = proc
        self.url = url
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def launch_server(
    env: dict[str, str],
    log_dir: Path,
    ready_timeout: float = 60,
    taskset: str | None = None,
    args: tuple[str, ...] = (),
    port: int | None = None,
) -> ServerProcess:
    """`python -m recops_server.cli [args]` on a free loopback port with RECOPS_* env; waits for /readyz.

    ``port``: where the server is expected to listen when ``env`` or ``args`` move it away from RECOPS_PORT."""
    port = port or free_port()
    log_path = log_dir / f"server-{port}.log"
    full_env = {
        **os.environ,
        "PYTHONPATH": PYTHONPATH,
        "RECOPS_HOST": "127.0.0.1",
        "RECOPS_PORT": str(port),
        "OPENBLAS_NUM_THREADS": "1",
        **env,
    }
    cmd = [sys.executable, "-m", "recops_server.cli", *args]
    if taskset and shutil.which("taskset"):
        cmd = ["taskset", "-c", taskset, *cmd]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/readyz", ready_timeout, proc)
    except Exception as exc:
        stop_process(proc)
        raise RuntimeError(f"{exc}\n{log_path.read_text()[-3000:]}") from None
    return ServerProcess(proc, url, log_path)


def small_model(shift: float = 0.0) -> RecModel:
    return RecModel(
        algorithm="puresvd",
        kind="factors",
        user_ids=np.array(["u1", "u2", "u3"]),
        item_ids=np.array(["a", "b", "c", "d"]),
        seen=sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 2, 0, 1], [0, 0, 0, 0]], dtype=np.float32)),
        popularity=np.array([4, 3, 2, 1], dtype=np.float32),
        item_categories=np.array(["x", "x", "y", "y"]),
        user_factors=np.array([[1, 0], [0, 1], [1, 1]], np.float32),
        item_factors=np.array([[1, 0], [0.5, 0.5], [shift, 1], [2, 0]], np.float32),
        meta={"params": {"factors": 2}},
    )


def big_model(n_users: int = 2000, n_items: int = 50_000, f: int = 32) -> RecModel:
    rng = np.random.default_rng(0)
    return RecModel(
        algorithm="puresvd",
        kind="factors",
        user_ids=np.array([f"u{i}" for i in range(n_users)]),
        item_ids=np.array([f"i{i}" for i in range(n_items)]),
        seen=sp.csr_matrix(
            (
                np.ones(n_users * 20, np.float32),
                (np.repeat(np.arange(n_users), 20), rng.integers(0, n_items, n_users * 20)),
            ),
            shape=(n_users, n_items),
        ),
        popularity=rng.random(n_items).astype(np.float32),
        item_categories=np.array([f"c{i % 20}" for i in range(n_items)]),
        user_factors=rng.standard_normal((n_users, f)).astype(np.float32),
        item_factors=rng.standard_normal((n_items, f)).astype(np.float32),
    )

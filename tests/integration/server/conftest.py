"""Real processes for the model server integration tests: an `mlflow server` (SQLite backend store,
local artifact root) and the model server itself as a uvicorn subprocess (`python -m recops_server.cli`)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# helpers shared by this directory's tests (pytest runs with --import-mode=importlib)
sys.path.insert(0, str(Path(__file__).parent))
from serverproc_helpers import ServerProcess, free_port, launch_server, stop_process, wait_http

ARTIFACTS: dict[str, Path] = {}
"""Each MLflow server's --artifacts-destination by its URL (another tier may start its own server too)."""


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server + model registry (SQLite, local artifacts); ready in ~20 s."""
    pytest.importorskip("mlflow")
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = open(root / "mlflow.log", "wb")  # noqa: SIM115
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    ARTIFACTS[uri] = root / "artifacts"
    try:
        wait_http(f"{uri}/health", 120, proc)
    except Exception:
        stop_process(proc)
        raise RuntimeError((root / "mlflow.log").read_text()[-3000:]) from None
    yield uri
    stop_process(proc)
    log.close()


@pytest.fixture(scope="session")
def mlflow_artifacts(mlflow_server: str) -> Path:
    """The server's --artifacts-destination (created when the first artifact is logged)."""
    return ARTIFACTS[mlflow_server]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start `python -m recops_server.cli` with RECOPS_* env; waits for /readyz."""
    procs: list[ServerProcess] = []

    def start(env: dict[str, str], ready_timeout: float = 60, taskset: str | None = None) -> ServerProcess:
        srv = launch_server(env, tmp_path, ready_timeout=ready_timeout, taskset=taskset)
        procs.append(srv)
        return srv

    yield start
    for p in procs:
        stop_process(p.proc)

"""When the lab cannot start, the user learns what failed and how to fix it, and nothing is left running.

Each test drives `python -m recops.lab up` as a user would, in its own state directory and on its own ports
(so a lab already running on the default ports is not touched), and then looks through /proc for any
process that still mentions that state directory.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from recops.lab.procs import free_port

pytestmark = pytest.mark.timeout(180)


def _up(state: Path, *components: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "recops.lab", "up", *components, "--state-dir", str(state),
                           "--no-build"], capture_output=True, text=True, env=env, timeout=150)


def _processes_mentioning(marker: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            found.append(f"{pid}: {cmd[:200]}")
    return found


@pytest.fixture
def isolated_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Every fixed service port moved to a free one, so these tests never touch a running lab."""
    env = {**os.environ}
    for name in ("MLFLOW", "S3", "POSTGRES", "PROMETHEUS", "ALERTMANAGER", "OPERATOR_METRICS"):
        env[f"RECOPS_LAB_PORT_{name}"] = str(free_port())
    yield env
    for line in _processes_mentioning(str(tmp_path)):  # belt and braces: never leave a stray behind
        os.kill(int(line.split(":")[0]), 9)


def test_port_in_use_names_port_and_fix_and_stops_what_it_started(tmp_path: Path,
                                                                   isolated_env: dict[str, str]) -> None:
    state = tmp_path / "lab"
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env = {**isolated_env, "RECOPS_LAB_PORT_S3": str(port)}
        proc = _up(state, "mlflow", "s3", env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    message = proc.stderr
    assert "lab component s3 failed to start" in message
    assert f"127.0.0.1:{port} is already in use" in message and "RECOPS_LAB_PORT_S3=PORT" in message
    assert "stopped what this start had started: mlflow" in proc.stdout  # mlflow was spawned first
    assert _processes_mentioning(str(state)) == []


def test_missing_prerequisite_names_the_package_and_the_command(tmp_path: Path,
                                                                isolated_env: dict[str, str]) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    env = {**isolated_env, "PATH": f"{Path(sys.executable).parent}:{bare}"}  # no Debian prometheus on PATH
    proc = _up(tmp_path / "lab", "prometheus", env=env)
    assert proc.returncode == 1
    assert "lab component prometheus failed to start: Prometheus not installed" in proc.stderr
    assert "python -m recops.lab deps" in proc.stderr and "apt-get install prometheus" in proc.stderr


def test_component_crashing_at_start_points_to_its_log_and_stops_the_others(tmp_path: Path,
                                                                            isolated_env: dict[str, str]) -> None:
    """A `prometheus` that dies at start-up (a stand-in that exits 1, as a broken install would), started
    after a real Alertmanager: the error names the component and quotes its log; Alertmanager is stopped."""
    fake = tmp_path / "bin"
    fake.mkdir()
    exe = fake / "prometheus"
    exe.write_text("#!/bin/sh\necho 'err=\"opening storage failed: permission denied\"' >&2\nexit 1\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    env = {**isolated_env, "PATH": f"{fake}:{os.environ['PATH']}"}
    state = tmp_path / "lab"
    proc = _up(state, "alertmanager", "prometheus", env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "lab component prometheus failed to start: prometheus exited during start-up" in proc.stderr
    assert "opening storage failed: permission denied" in proc.stderr  # the log's last lines are shown
    assert "python -m recops.lab deps" in proc.stderr
    assert "stopped what this start had started: alertmanager" in proc.stdout
    assert _processes_mentioning(str(state)) == []

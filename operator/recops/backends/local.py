"""The local backend: the same job and server programs as processes on the operator's host.

This is what lets the embedded lab do real work without a kubelet or Docker. Credentials are read from the
referenced Secrets at start and passed only in the process environment.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from recops.backends.base import JobObservation, JobRequest, ServingObservation, ServingRequest
from recops.backends.retry import FIRST_DELAY_SECONDS, attempt_text
from recops.conditions import now_rfc3339
from recops.controllers.common import Owner, SecretEnv
from recops.faults import crash_point

# Job and server programs, run with the operator's own interpreter.
PROGRAM_MODULES = {
    "recops-features": "recops_features.cli",
    "recops-train": "recops_training.cli",
    "recops-drift": "recops_drift.cli",
    "recops-serve": "recops_server.cli",
}
# What a local process inherits from the operator's environment; nothing else leaks into it.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV", "OPENBLAS_NUM_THREADS",
                 "OMP_NUM_THREADS", "TMPDIR")

SecretLookup = Callable[[str, str, str], str | None]


class MissingSecret(Exception):
    pass


def _first_retry_delay() -> float:
    """RECOPS_LOCAL_RETRY_DELAY_SECONDS: the wait before a local job's first retry (doubling, capped at 60 s)."""
    try:
        return float(os.environ.get("RECOPS_LOCAL_RETRY_DELAY_SECONDS") or FIRST_DELAY_SECONDS)
    except ValueError:
        return FIRST_DELAY_SECONDS


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as ended.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _read_json(path: Path) -> dict[str, Any]:
    """The JSON object in a run file, or {} while it is missing, half-written or not an object."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def job_observation_from_exit(ended: Mapping[str, Any], started_at: str | None,
                              result: Mapping[str, Any] | None) -> JobObservation:
    """How a finished local run ended, from the runner's `exit.json` (an old runner's has no attempts)."""
    code = int(ended["exitCode"])
    attempts = int(ended.get("attempts") or 1)
    message = f"exit code {code}"
    if attempts > 1:
        codes = ", ".join(str(c) for c in ended.get("exitCodes") or [])
        message += f" after {attempts} attempts (exit codes {codes})"
    return JobObservation("Succeeded" if code == 0 else "Failed", started_at, ended["finishedAt"], result, message,
                          attempts=attempts)


def running_message(attempt: Mapping[str, Any]) -> str:
    """What a running local job is doing, from the runner's `attempt.json` (empty before the first attempt)."""
    if not attempt.get("attempt"):
        return ""
    current = int(attempt["attempt"])
    limit = int(attempt.get("of") or current) - 1
    if attempt.get("retryAt"):
        codes = attempt.get("exitCodes") or []
        last = f" with exit code {codes[-1]}" if codes else ""
        return (f"{attempt_text(current, limit)} ended{last}; {attempt_text(current + 1, limit)} starts at "
                f"{attempt['retryAt']}")
    return attempt_text(current, limit)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalBackend:
    name = "local"

    def __init__(self, state_dir: Path, secret_lookup: SecretLookup, first_retry_delay: float | None = None) -> None:
        self.state_dir = state_dir
        self.secret_lookup = secret_lookup
        self.first_retry_delay = _first_retry_delay() if first_retry_delay is None else first_retry_delay

    # -- shared -------------------------------------------------------------------------------------------------
    def _dir(self, owner: Owner, name: str) -> Path:
        # Keyed by the owner's uid: a deleted and recreated object never inherits an old run.
        return self.state_dir / owner.namespace / owner.uid / name

    def _env(self, owner: Owner, plain: Mapping[str, str], secrets: tuple[SecretEnv, ...]) -> dict[str, str]:
        env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
        env.update(plain)
        for s in secrets:
            value = self.secret_lookup(owner.namespace, s.secret, s.key)
            if value is None:
                raise MissingSecret(f"Secret {s.secret!r} key {s.key!r} not found")
            env[s.env] = value
        return env

    @staticmethod
    def _command(program: str) -> list[str]:
        return [sys.executable, "-m", PROGRAM_MODULES[program]]

    # -- batch --------------------------------------------------------------------------------------------------
    def submit(self, request: JobRequest) -> None:
        run_dir = self._dir(request.owner, request.name)
        if (run_dir / "pid").exists():
            return  # already submitted: idempotent
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(request.config, indent=2, sort_keys=True))
        env = self._env(request.owner, request.plain_env, request.secret_env)
        env["RECOPS_RESULT_FILE"] = str(run_dir / "result.json")
        command = [sys.executable, "-m", "recops.backends.local_runner", str(run_dir),
                   "--backoff-limit", str(request.backoff_limit), "--first-delay", str(self.first_retry_delay), "--",
                   *self._command(request.program), "run", "--config", str(run_dir / "config.json"),
                   "--result-file", str(run_dir / "result.json")]
        proc = subprocess.Popen(command, env=env, start_new_session=True, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        (run_dir / "started.json").write_text(json.dumps({"startedAt": now_rfc3339(), "pid": proc.pid}))
        (run_dir / "pid").write_text(str(proc.pid))
        crash_point("job-submitted")

    def observe(self, owner: Owner, name: str) -> JobObservation | None:
        run_dir = self._dir(owner, name)
        if not (run_dir / "pid").exists():
            return None
        started = _read_json(run_dir / "started.json")
        result = _read_json(run_dir / "result.json") or None  # a result document is never empty
        if (run_dir / "exit.json").exists():
            ended = json.loads((run_dir / "exit.json").read_text())
            return job_observation_from_exit(ended, started.get("startedAt"), result)
        attempt = _read_json(run_dir / "attempt.json")
        pid = int((run_dir / "pid").read_text())
        if _alive(pid):  # a result.json now is an earlier attempt's: the run's result comes with exit.json
            return JobObservation("Running", started.get("startedAt"), None, None, running_message(attempt),
                                  attempts=attempt.get("attempt"))
        return JobObservation("Failed", started.get("startedAt"), now_rfc3339(), result,
                              "the job process ended without recording an exit code (killed?)",
                              attempts=attempt.get("attempt"))

    def cancel(self, owner: Owner, name: str) -> None:
        self._kill(self._dir(owner, name))

    def release(self, owner: Owner) -> None:
        """Nothing to do: run directories stay as the record of what ran (keyed by the owner's uid)."""

    @staticmethod
    def _kill(run_dir: Path) -> None:
        pid_file = run_dir / "pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(pid_file.read_text()), signal.SIGTERM)

    # -- serving ------------------------------------------------------------------------------------------------
    def apply(self, request: ServingRequest) -> None:
        run_dir = self._dir(request.owner, request.name)
        digest = hashlib.sha256(json.dumps([dict(request.env), [s.__dict__ for s in request.secret_env],
                                            request.replicas], sort_keys=True).encode()).hexdigest()[:16]
        state = self._serving_state(run_dir)
        if state and state.get("digest") == digest and _alive(int(state["pid"])):
            return
        if state:
            self._kill(run_dir)
        if request.replicas == 0:
            (run_dir / "serving.json").unlink(missing_ok=True)
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        port = int(state["port"]) if state and state.get("digest") == digest else _free_port()
        env = self._env(request.owner, request.env, request.secret_env)
        env.update({"RECOPS_PORT": str(port), "RECOPS_HOST": "127.0.0.1"})
        with open(run_dir / "server.log", "ab") as log:
            proc = subprocess.Popen(self._command("recops-serve"), env=env, start_new_session=True,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=run_dir)
        (run_dir / "pid").write_text(str(proc.pid))
        (run_dir / "serving.json").write_text(json.dumps({"pid": proc.pid, "port": port, "digest": digest,
                                                          "startedAt": now_rfc3339()}))

    @staticmethod
    def _serving_state(run_dir: Path) -> dict[str, Any] | None:
        path = run_dir / "serving.json"
        return json.loads(path.read_text()) if path.exists() else None

    def observe_serving(self, owner: Owner, name: str, desired_replicas: int = 1) -> ServingObservation | None:
        run_dir = self._dir(owner, name)
        state = self._serving_state(run_dir)
        if state is None:
            return None
        url = f"http://127.0.0.1:{state['port']}"
        alive = _alive(int(state["pid"]))
        ready, version, message = False, None, "" if alive else "the server process is not running"
        if alive:
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:  # noqa: S310 (loopback only)
                    body = json.loads(resp.read() or b"{}")
                    ready = resp.status == 200
                    version = body.get("modelVersion") or body.get("version")
            except (OSError, ValueError) as exc:
                message = f"not ready: {exc}"
        return ServingObservation(desired_replicas=desired_replicas, replicas=1 if alive else 0,
                                  ready_replicas=1 if ready else 0, updated_replicas=1 if alive else 0, url=url,
                                  served_version=str(version) if version else None,
                                  model_loaded=ready, message=message)

    def delete(self, owner: Owner, name: str) -> None:
        self._kill(self._dir(owner, name))

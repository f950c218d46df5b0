"""``recops lab up|down|status``: start, reuse, inspect and stop the embedded lab.

All state lives in ``<state_dir>/lab.json`` (pids, ports, urls; mode 0600 because it holds the
lab's generated PostgreSQL password). Data (etcd, PostgreSQL, MLflow, Prometheus TSDB) lives in a
runtime dir on tmpfs and is removed by ``down``; logs, certificates and kubeconfigs stay in the state
dir.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recops.lab.binaries import binary_paths, build
from recops.lab.certs import ensure_pki
from recops.lab.components import (
    COMPONENTS,
    K8S_COMPONENTS,
    START_ORDER,
    Ctx,
    Record,
    expand,
    postgres_dsn,
)
from recops.lab.paths import cache_dir, runtime_dir
from recops.lab.paths import state_dir as default_state_dir
from recops.lab.procs import LabError, log_hint, pid_alive, stop_group

Progress = Callable[[str], None]
STATE_FILE = "lab.json"


@dataclass
class LabInfo:
    """How to reach a running lab. ``env`` is ready to merge into a subprocess environment."""

    state_dir: Path
    components: list[str]
    kubeconfig: Path | None = None
    server: str | None = None
    mlflow_uri: str | None = None
    postgres_dsn: str | None = None
    s3_endpoint: str | None = None
    s3_credentials: dict[str, str] = field(default_factory=dict)
    prometheus_url: str | None = None
    alertmanager_url: str | None = None
    bin_dir: dict[str, Path] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        env: dict[str, str] = {"RECOPS_LAB_DIR": str(self.state_dir)}
        if self.kubeconfig:
            env["KUBECONFIG"] = str(self.kubeconfig)
        if self.bin_dir:
            dirs = sorted({str(p.parent) for p in self.bin_dir.values()})
            env["PATH"] = os.pathsep.join([*dirs, os.environ.get("PATH", "")])
        if self.mlflow_uri:
            env["MLFLOW_TRACKING_URI"] = self.mlflow_uri
        if self.postgres_dsn:
            env["RECOPS_POSTGRES_DSN"] = self.postgres_dsn
        if self.s3_endpoint:
            env.update(
                {
                    "AWS_ENDPOINT_URL_S3": self.s3_endpoint,
                    "RECOPS_S3_ENDPOINT": self.s3_endpoint,
                    "AWS_ACCESS_KEY_ID": self.s3_credentials.get("access_key", "testing"),
                    "AWS_SECRET_ACCESS_KEY": self.s3_credentials.get("secret_key", "testing"),
                    "AWS_DEFAULT_REGION": self.s3_credentials.get("region", "us-east-1"),
                }
            )
        if self.prometheus_url:
            env["PROMETHEUS_URL"] = self.prometheus_url
        if self.alertmanager_url:
            env["ALERTMANAGER_URL"] = self.alertmanager_url
        return env

    def kubectl(self) -> Path:
        return self.bin_dir["kubectl"]

    def helm(self) -> Path:
        return self.bin_dir["helm"]


# --------------------------------------------------------------------------- state file


def load_state(state: Path) -> dict[str, Any]:
    try:
        data = json.loads((state / STATE_FILE).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, json.JSONDecodeError):
        return {}


def save_state(state: Path, data: dict[str, Any]) -> None:
    state.mkdir(parents=True, exist_ok=True)
    tmp = state / (STATE_FILE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
    os.replace(tmp, state / STATE_FILE)


@contextlib.contextmanager
def _locked(state: Path) -> Iterator[None]:
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(state / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _ctx(state: Path, records: dict[str, Record], bins: dict[str, Path] | None = None) -> Ctx:
    data = load_state(state)
    run = Path(data.get("runtime_dir") or runtime_dir(state))
    return Ctx(
        state=state,
        run=run,
        bins=bins or {k: Path(v) for k, v in data.get("bins", {}).items()} or binary_paths(),
        records=records,
    )


def info_from_state(state: Path, data: dict[str, Any]) -> LabInfo:
    recs: dict[str, Record] = data.get("components", {})
    info = LabInfo(
        state_dir=state,
        components=[c for c in START_ORDER if c in recs],
        bin_dir={k: Path(v) for k, v in data.get("bins", {}).items()},
    )
    if "kube-apiserver" in recs:
        info.kubeconfig = state / "kubeconfig"
        info.server = recs["kube-apiserver"]["url"]
    if "mlflow" in recs:
        info.mlflow_uri = recs["mlflow"]["url"]
    if "postgres" in recs:
        info.postgres_dsn = postgres_dsn(recs["postgres"])
    if "s3" in recs:
        info.s3_endpoint = recs["s3"]["url"]
        info.s3_credentials = {k: recs["s3"][k] for k in ("access_key", "secret_key", "region")}
    if "prometheus" in recs:
        info.prometheus_url = recs["prometheus"]["url"]
    if "alertmanager" in recs:
        info.alertmanager_url = recs["alertmanager"]["url"]
    return info


# --------------------------------------------------------------------------- up


def _print(msg: str) -> None:
    print(msg, flush=True)


def up(
    components: str | list[str] | tuple[str, ...] | None = None,
    state_dir: Path | str | None = None,
    progress: Progress | None = None,
    bins: dict[str, Path] | None = None,
) -> LabInfo:
    """Start the requested components (default: all), reusing healthy ones already running.

    ``components``: names or groups (``k8s``, ``services``, ``all``); dependencies are added.
    Returns a :class:`LabInfo`. Raises :class:`LabError` naming the component that failed.
    """
    progress = progress or _print
    state = Path(state_dir).expanduser() if state_dir else default_state_dir()
    names = expand(components)
    with _locked(state):
        data = load_state(state)
        run = Path(data.get("runtime_dir") or runtime_dir(state))
        run.mkdir(parents=True, exist_ok=True)
        if bins is None:
            bins = binary_paths(cache_dir())
            if any(n in K8S_COMPONENTS for n in names) and not all(p.exists() for p in bins.values()):
                progress("[lab] control-plane binaries missing: building them once (see `build`)")
                bins = {**bins, **build(progress)}
        data.update(
            {
                "version": 1,
                "state_dir": str(state),
                "runtime_dir": str(run),
                "bins": {k: str(v) for k, v in bins.items()},
            }
        )
        records: dict[str, Record] = data.setdefault("components", {})
        ctx = Ctx(state=state, run=run, bins=bins, records=records)
        if any(n in K8S_COMPONENTS for n in names):
            ctx.pki = ensure_pki(state / "pki")
        timings: dict[str, float] = {}
        t0 = time.monotonic()
        restarted: set[str] = set()
        pending: dict[str, float] = {}  # name -> spawn time

        def fail(name: str, exc: Exception) -> None:
            rec = records.pop(name, {})
            pending.pop(name, None)
            _stop_one(ctx, name, rec)
            save_state(state, data)
            hint = _fix_hint(name)
            log = ctx.log(name)
            if log.exists() and "address already in use" in log.read_text(errors="replace")[-4000:].lower():
                ports = ", ".join(f"{k}={v}" for k, v in rec.get("ports", {}).items())
                hint = (
                    f" A port it needs ({ports}) is taken by another process: free it (`ss -ltnp` shows "
                    "who holds it) or run `python -m recops.lab up` again to pick new free ports."
                )
            raise LabError(f"lab component {name} failed to start: {exc}{hint}") from exc

        def wait_ready(targets: list[str]) -> None:
            """Poll all pending targets together so each one's ready time is its own."""
            while any(n in pending for n in targets):
                for name in list(pending):
                    comp, rec = COMPONENTS[name], records[name]
                    elapsed = time.monotonic() - pending[name]
                    try:
                        if comp.ready(ctx, rec):
                            if comp.after_ready:
                                comp.after_ready(ctx, rec)
                            timings[name] = time.monotonic() - pending.pop(name)
                            progress(f"[lab] {name} ready in {timings[name]:.1f}s ({rec.get('url', '')})")
                            save_state(state, data)
                            continue
                        pid = rec.get("pid") if name != "postgres" else None
                        if pid is not None and not pid_alive(pid):
                            raise LabError(f"{name} exited during start-up.{log_hint(ctx.log(name))}")
                        if elapsed > comp.timeout:
                            raise LabError(f"{name} was not ready after {comp.timeout:.0f}s.{log_hint(ctx.log(name))}")
                    except LabError as exc:
                        fail(name, exc)
                time.sleep(0.2)

        try:
            for name in names:
                comp = COMPONENTS[name]
                prev = records.get(name)
                dep_restarted = any(d in restarted for d in comp.deps)
                if prev and not dep_restarted and comp.ready(ctx, prev):
                    progress(f"[lab] {name}: already running (pid {prev.get('pid')}), reused")
                    continue
                if prev:
                    _stop_one(ctx, name, prev)
                wait_ready(list(comp.deps))
                started = time.monotonic()
                try:
                    # A component stopped alone (`down(components=...)`) comes back on the ports it had: its
                    # clients (kubeconfigs, a running operator) still address them.
                    rec = comp.start(ctx, prev or data.get("stopped", {}).pop(name, None))
                except LabError as exc:
                    save_state(state, data)
                    raise LabError(f"lab component {name} failed to start: {exc}{_fix_hint(name)}") from exc
                records[name] = rec
                restarted.add(name)
                pending[name] = started
                save_state(state, data)
                progress(f"[lab] {name}: starting (pid {rec.get('pid') or rec.get('starter_pid')})")
            wait_ready(names)
        except LabError:
            # All or nothing: a failed `up` leaves none of the processes it started behind.
            undo = [n for n in reversed(START_ORDER) if n in restarted and n in records]
            for name in undo:
                _stop_one(ctx, name, records.pop(name))
            save_state(state, data)
            if undo:
                progress(f"[lab] stopped what this start had started: {', '.join(undo)}")
            raise
        info = info_from_state(state, data)
        info.timings = {**timings, "total": time.monotonic() - t0}
        data.setdefault("timings", {}).update(info.timings)
        save_state(state, data)
        progress(
            f"[lab] up: {', '.join(names)} in {info.timings['total']:.1f}s; "
            f"state in {state}" + (f"; export KUBECONFIG={info.kubeconfig}" if info.kubeconfig else "")
        )
        return info


def _fix_hint(name: str) -> str:
    hints = {
        "etcd": " Fix: check the etcd log; `python -m recops.lab build` rebuilds the binary.",
        "kube-apiserver": " Fix: check the log; stale data? `python -m recops.lab down` then `up`.",
        "kwok": " Fix: check the kwok log and that the API server is ready.",
        "mlflow": " Fix: is `mlflow` installed in this Python environment (`pip install mlflow`)?",
        "postgres": " Fix: `python -m recops.lab deps` installs Debian's postgresql.",
        "prometheus": " Fix: `python -m recops.lab deps` installs Debian's prometheus.",
        "alertmanager": " Fix: `python -m recops.lab deps` installs prometheus-alertmanager.",
        "s3": " Fix: `pip install 'moto[server]'` in this Python environment.",
    }
    return hints.get(name, "")


# --------------------------------------------------------------------------- down / status


def _stop_one(ctx: Ctx, name: str, rec: Record) -> None:
    comp = COMPONENTS.get(name)
    if comp and comp.stop:
        with contextlib.suppress(Exception):
            comp.stop(ctx, rec)
    for key in ("pid", "starter_pid"):
        pid = rec.get(key)
        if pid and ours(pid, ctx, rec):
            stop_group(pid)


def ours(pid: int, ctx: Ctx, rec: Record) -> bool:
    """Guard against pid reuse (e.g. after a reboot): only signal a process whose command line
    mentions this lab's state or runtime dir (or, for moto, its recorded port)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    markers = [str(ctx.state), str(ctx.run)] + [f" {p}" for p in rec.get("ports", {}).values()]
    return any(m in cmd for m in markers)


def down(
    state_dir: Path | str | None = None,
    progress: Progress | None = None,
    components: str | list[str] | None = None,
    keep_data: bool = False,
) -> list[str]:
    """Stop the lab's processes (all, or the named components) and remove its runtime data."""
    progress = progress or _print
    state = Path(state_dir).expanduser() if state_dir else default_state_dir()
    stopped: list[str] = []
    with _locked(state):
        data = load_state(state)
        records: dict[str, Record] = data.get("components", {})
        ctx = _ctx(state, records)
        names = expand(components, with_deps=False) if components else list(START_ORDER)
        todo = [n for n in reversed(START_ORDER) if n in names and n in records]

        def stop(name: str) -> None:
            t = time.monotonic()
            _stop_one(ctx, name, records[name])
            progress(f"[lab] {name}: stopped ({time.monotonic() - t:.1f}s)")

        # all at once (each one: SIGTERM to its process group, SIGKILL after 10 s)
        with ThreadPoolExecutor(max_workers=max(1, len(todo))) as pool:
            list(pool.map(stop, todo))
        for name in todo:
            # What a component stopped alone needs to come back as it was: its ports (clients address them) and
            # PostgreSQL's password (its data directory, kept until the whole lab goes down, was made with it).
            rec = records.pop(name)
            data.setdefault("stopped", {})[name] = {k: rec[k] for k in ("ports", "password") if k in rec}
            stopped.append(name)
        data["components"] = records
        if not records:
            data.pop("stopped", None)
            run = Path(data.get("runtime_dir") or runtime_dir(state))
            if not keep_data and run.exists() and run != state:
                shutil.rmtree(run, ignore_errors=True)
            data.pop("timings", None)
        save_state(state, data)
    return stopped


def status(state_dir: Path | str | None = None) -> dict[str, dict[str, Any]]:
    """Per component: running (pid alive), ready (health check passes), pid, url, ports."""
    state = Path(state_dir).expanduser() if state_dir else default_state_dir()
    data = load_state(state)
    records: dict[str, Record] = data.get("components", {})
    ctx = _ctx(state, records)
    out: dict[str, dict[str, Any]] = {}
    for name in START_ORDER:
        rec = records.get(name)
        if not rec:
            continue
        ready = COMPONENTS[name].ready(ctx, dict(rec))
        pid = rec.get("pid")
        out[name] = {
            "running": pid_alive(pid) or ready,
            "ready": ready,
            "pid": pid,
            "url": rec.get("url"),
            "ports": rec.get("ports", {}),
            "log": str(ctx.log(name)),
        }
    return out


def connect(state_dir: Path | str | None = None, components: str | list[str] | None = None) -> LabInfo | None:
    """A :class:`LabInfo` for an already running lab if every requested component is healthy."""
    state = Path(state_dir).expanduser() if state_dir else default_state_dir()
    st = status(state)
    wanted = expand(components) if components else list(st)
    if not wanted or any(not st.get(n, {}).get("ready") for n in wanted):
        return None
    return info_from_state(state, load_state(state))


__all__ = ["LabError", "LabInfo", "connect", "down", "log_hint", "status", "up"]

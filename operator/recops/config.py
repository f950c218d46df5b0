"""The operator's settings, one documented place (read from the environment, prefix RECOPS_)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


@dataclass(frozen=True)
class Config:
    # How often every object is re-checked against the observed state (restores deleted or edited children).
    resync_seconds: int = field(default_factory=lambda: _env_int("RECOPS_RESYNC_SECONDS", 30))
    # Comma-separated backends this operator may use; `local` runs jobs and servers as local processes.
    enabled_backends: frozenset[str] = field(default_factory=lambda: frozenset(
        b.strip() for b in os.environ.get("RECOPS_BACKENDS", "kubernetes").split(",") if b.strip()))
    # Where the local backend keeps run directories (configs, results, logs, pids).
    local_state_dir: Path = field(default_factory=lambda: Path(os.environ.get(
        "RECOPS_LOCAL_STATE_DIR", str(Path.home() / ".local/state/recops/runs"))))
    # Port of the operator's Prometheus metrics (drift scores, reconcile counters); 0 disables.
    metrics_port: int = field(default_factory=lambda: _env_int("RECOPS_METRICS_PORT", 9090))
    # Port of the health endpoint (/healthz).
    health_port: int = field(default_factory=lambda: _env_int("RECOPS_HEALTH_PORT", 8081))
    # First port the local backend gives model servers.
    local_port_base: int = field(default_factory=lambda: _env_int("RECOPS_LOCAL_PORT_BASE", 18080))
    # Seconds to wait for an HTTP dependency (MLflow) when checking that it is reachable.
    http_timeout_seconds: int = field(default_factory=lambda: _env_int("RECOPS_HTTP_TIMEOUT", 3))


def load() -> Config:
    return Config()

"""Where the lab keeps binaries (cache) and running state. Pure path logic, no side effects."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CACHE_ENV = "RECOPS_CACHE"
STATE_ENV = "RECOPS_LAB_DIR"


def cache_dir(env: dict[str, str] | None = None) -> Path:
    """The build cache root: ``$RECOPS_CACHE`` or ``~/.cache/recops``."""
    env = dict(os.environ) if env is None else env
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV]).expanduser()
    xdg = env.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "recops"


def state_dir(env: dict[str, str] | None = None) -> Path:
    """The running lab's directory: ``$RECOPS_LAB_DIR`` or ``~/.local/state/recops/lab``."""
    env = dict(os.environ) if env is None else env
    if env.get(STATE_ENV):
        return Path(env[STATE_ENV]).expanduser()
    xdg = env.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return base / "recops" / "lab"


def runtime_dir(state: Path) -> Path:
    """Scratch data (etcd, PostgreSQL) on tmpfs when /dev/shm exists, else inside the state dir.

    The name is derived from the state dir so two labs never share it.
    """
    digest = hashlib.sha256(str(state.resolve()).encode()).hexdigest()[:12]
    shm = Path("/dev/shm")  # noqa: S108 - tmpfs on purpose; the name is private and per lab
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm / f"recops-lab-{digest}"
    return state / "run"


def go_env_dirs(cache: Path) -> dict[str, str]:
    """GOMODCACHE / GOCACHE inside our cache so a build never touches the user's Go caches."""
    return {"GOMODCACHE": str(cache / "go" / "mod"), "GOCACHE": str(cache / "go" / "build")}

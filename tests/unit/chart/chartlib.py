"""Helpers shared by the chart tests (unit and integration): find helm, render the chart, walk pod templates."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "recops"
RELEASE, NAMESPACE = "recops", "recops-system"
# Every optional part switched on: what the strictest checks should see.
ALL_FEATURES = ("metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true", "crds.install=true")


def find_binary(name: str) -> Path | None:
    """A lab binary (cached under ~/.cache/recops/bin by `make lab-build`), $RECOPS_<NAME>, or PATH."""
    explicit = os.environ.get(f"RECOPS_{name.upper()}")
    if explicit:
        return Path(explicit)
    try:
        from recops.lab import binaries

        path = binaries.binary_paths().get(name)
        if path and path.exists():
            return path
    except Exception:
        pass
    cached = sorted(glob.glob(str(Path.home() / ".cache" / "recops" / "bin" / f"*{name}*" / name)))
    if cached:
        return Path(cached[-1])
    found = shutil.which(name)
    return Path(found) if found else None


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    binary = find_binary("helm")
    if binary is None:
        raise AssertionError("helm not found: run `make lab-build` (it caches helm under ~/.cache/recops/bin)")
    proc = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def render_text(*sets: str, release: str = RELEASE, namespace: str = NAMESPACE, check: bool = True
                ) -> subprocess.CompletedProcess[str]:
    args = ["template", release, str(CHART), "--namespace", namespace]
    for s in sets:
        args += ["--set", s]
    return helm(*args, check=check)


def render(*sets: str, **kw: Any) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(render_text(*sets, **kw).stdout) if d]


def pod_specs(obj: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(pod template metadata, pod spec) of a workload object."""
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind == "Pod":
        yield obj.get("metadata") or {}, spec
    elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        yield spec["template"].get("metadata") or {}, spec["template"]["spec"]
    elif kind == "CronJob":
        template = spec["jobTemplate"]["spec"]["template"]
        yield template.get("metadata") or {}, template["spec"]

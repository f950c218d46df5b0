"""The embedded lab: a local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok fake nodes) plus MLflow, PostgreSQL, an S3 emulator (moto), Prometheus and
Alertmanager, all on 127.0.0.1 with free ports, no Docker and no cloud.

    from recops.lab import build, up, down, status
    build()                                  # once: Go module proxy -> ~/.cache/recops (cached)
    lab = up(components=["k8s", "mlflow"])   # idempotent; returns LabInfo (.kubeconfig, .env, ...)
    down()
"""

from recops.lab.binaries import BuildError, build
from recops.lab.components import ALL_COMPONENTS, GROUPS
from recops.lab.core import LabInfo, connect, down, status, up
from recops.lab.debian import ensure_debian_packages
from recops.lab.procs import LabError

__all__ = [
    "ALL_COMPONENTS",
    "GROUPS",
    "BuildError",
    "LabError",
    "LabInfo",
    "build",
    "connect",
    "down",
    "ensure_debian_packages",
    "status",
    "up",
]

"""The chart installed with `helm install` into the lab's real API server (RBAC on), once per session."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from chartrelease import Release
from fixtures.kube import PROM_CRDS, Kubectl
from unit.chart.chartlib import CHART


@pytest.fixture(scope="session")
def release(lab: Any) -> Iterator[Release]:
    admin = Kubectl(lab.kubectl, lab.env, "default")
    # The real prometheus-operator CRDs (ServiceMonitor, PrometheusRule) and the current generated CRDs
    # (Helm's crds/ install skips CRDs that exist, and other tests may have applied an older copy).
    admin.run("apply", "--server-side", "--force-conflicts", "-f", str(PROM_CRDS), namespaced=False)
    admin.run("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"), namespaced=False)
    admin.run("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all", namespaced=False)
    name = f"rc{uuid.uuid4().hex[:6]}"
    rel = Release(name=name, namespace=name, service_account=f"{name}-operator", persona_prefix=f"{name}-",
                  lab=lab)
    rel.helm("install", name, str(CHART), "--namespace", name, "--create-namespace", "--wait", "--timeout", "180s",
             "--set", f"rbac.personaPrefix={name}-", "--set", "metrics.serviceMonitor.enabled=true",
             "--set", "metrics.prometheusRule.enabled=true")
    try:
        yield rel
    finally:
        rel.helm("uninstall", name, "--namespace", name, "--wait", "--timeout", "120s", check=False)
        admin.run("delete", "namespace", name, "--wait=false", check=False, namespaced=False)


@pytest.fixture
def namespace(release: Release) -> Iterator[Kubectl]:
    """A fresh namespace for one test, driven as the cluster admin."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    k = Kubectl(release.lab.kubectl, release.lab.env, name)
    k.run("create", "namespace", name, namespaced=False)
    yield k
    k.run("delete", "namespace", name, "--wait=false", check=False, namespaced=False)

"""A real kube-apiserver with our generated CRDs and the real prometheus-operator CRDs installed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fixtures.kube import PROM_CRDS, ROOT, Kubectl, temp_namespace


@pytest.fixture(scope="session")
def cluster(lab: Any) -> Any:
    kubectl = Kubectl(lab.kubectl, lab.env, "default")
    kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(PROM_CRDS), namespaced=False)
    kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"), namespaced=False)
    kubectl.run("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all", namespaced=False)
    return lab


@pytest.fixture
def kubectl(cluster: Any) -> Iterator[Kubectl]:
    with temp_namespace(cluster, "t") as k:
        yield k

"""Outages of the control plane: with the operator (a real subprocess) running and its object converged, the lab's
real kube-apiserver is stopped and started again on the same port (the lab's own `down`/`up` for that one
component), or etcd is frozen (SIGSTOP, then SIGCONT), for 5 s, 30 s and (the API server) 120 s. Then a spec
changes and the test measures how long the operator, never restarted (same PID), takes to update the child after
the component is healthy again.

Uses the lab (fixed ports): `flock /tmp/recops-lab.lock .venv/bin/pytest tests/reliability/test_apiserver_outage.py`.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures.kube import Kubectl, temp_namespace
from fixtures.operator import OperatorProcess, operator_env, wait_for
from recops.lab import down, up
from recops.lab.core import load_state

pytestmark = [pytest.mark.integration, pytest.mark.lab("k8s")]
RESULTS: list[tuple[str, int, float, float]] = []
# kopf retries failed API requests (its watches too) at most 5 s apart (recops.main), then reacts within a second.
RECOVERY_LIMIT = 15.0


@pytest.fixture
def namespace(cluster: Any) -> Iterator[Kubectl]:
    with temp_namespace(cluster, "outage") as k:
        yield k


@pytest.fixture
def operator(cluster: Any, namespace: Kubectl, tmp_path: Path) -> Iterator[OperatorProcess]:
    op = OperatorProcess(operator_env(cluster.env, tmp_path), tmp_path / "operator.log")
    op.start()
    try:
        yield op
    finally:  # the operator cleans up its object, so the namespace can go (the next operator would keep it)
        namespace.run("delete", "recommenderdeployment", "rd", "--wait=true", "--timeout=30s", check=False)
        op.stop()
        gone = namespace.run("get", "recommenderdeployment", "rd", check=False).returncode != 0
        if not gone:
            print(f"\nthe operator did not clean up rd in {namespace.namespace}: {op.logs()[-2000:]}")


def _record(cluster: Any, name: str) -> dict[str, Any]:
    return dict(load_state(cluster.state_dir)["components"][name])


def _healthy(kubectl: Kubectl) -> bool:
    return kubectl.run("get", "--raw", "/readyz", check=False, namespaced=False).returncode == 0


def _start_apiserver(cluster: Any) -> None:
    up(components=["kube-apiserver"], state_dir=cluster.state_dir, progress=lambda _: None,
       bins={k: Path(v) for k, v in load_state(cluster.state_dir)["bins"].items()})


@pytest.mark.parametrize(("component", "seconds"), [("kube-apiserver", 5), ("kube-apiserver", 30),
                                                    ("kube-apiserver", 120), ("etcd", 5), ("etcd", 30)])
def test_operator_recovers_from_an_outage_without_a_restart(
        cluster: Any, namespace: Kubectl, operator: OperatorProcess, component: str, seconds: int) -> None:
    doc = {"apiVersion": "recops.dev/v1alpha1", "kind": "RecommenderDeployment",
           "metadata": {"name": "rd", "namespace": namespace.namespace},
           "spec": {"model": {"name": "m", "version": "1", "trackingUri": "http://127.0.0.1:1"}, "replicas": 1}}
    namespace.run("create", "-f", "-", stdin=yaml.safe_dump(doc))
    wait_for(lambda: namespace.run("get", "deployment", "rd", check=False).returncode == 0, 60, "the Deployment")
    assert operator.proc is not None
    pid = operator.proc.pid
    outage_started = time.monotonic()
    if component == "kube-apiserver":
        port = _record(cluster, "kube-apiserver")["ports"]["https"]
        try:
            down(cluster.state_dir, progress=lambda _: None, components=["kube-apiserver"])
            assert not _healthy(namespace), "the API server still answers after `down`"
            time.sleep(seconds)
        finally:
            _start_apiserver(cluster)  # also when the test fails: the other tests need the lab
        assert _record(cluster, "kube-apiserver")["ports"]["https"] == port, "the API server came back elsewhere"
    else:
        etcd = int(_record(cluster, "etcd")["pid"])
        os.kill(etcd, signal.SIGSTOP)
        try:
            time.sleep(seconds)
            assert not _healthy(namespace), "the API server reports ready with etcd frozen"
        finally:
            os.kill(etcd, signal.SIGCONT)
    wait_for(lambda: _healthy(namespace), 120, f"{component} healthy again", interval=0.2)
    back = time.monotonic()
    unavailable = back - outage_started  # the API server stops gracefully (up to 10 s) before the sleep begins
    namespace.run("patch", "rd", "rd", "--type=merge", "-p", '{"spec":{"replicas":2}}')
    wait_for(lambda: namespace.get_json("deployment", "rd")["spec"]["replicas"] == 2, 180,
             "the operator to update the Deployment after the outage", interval=0.2)
    recovery = time.monotonic() - back
    assert operator.proc.poll() is None and operator.proc.pid == pid, "the operator exited or was restarted"
    assert recovery < RECOVERY_LIMIT, f"the operator took {recovery:.1f}s to react after {component} came back"
    RESULTS.append((component, seconds, unavailable, recovery))
    print(f"\n{component} down {seconds}s (unhealthy {unavailable:.1f}s in all): the operator (PID {pid}, not "
          f"restarted) updated the child {recovery:.1f}s after the component was healthy again")
    print("component | outage s | unhealthy s | recovery s\n" +
          "\n".join(f"{c} | {s} | {u:.1f} | {r:.1f}" for c, s, u, r in RESULTS))

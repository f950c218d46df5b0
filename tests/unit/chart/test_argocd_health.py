"""Argo CD health checks (argocd/health/*.lua) run in Lua 5.1, as Argo CD's gopher-lua does, against objects
captured from the operator on the lab (fixtures/argocd/, see fixtures/argocd/README.md)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartlib import ROOT, render

lupa = pytest.importorskip("lupa.lua51", reason="pip install lupa (a dev dependency)")

ARGOCD = ROOT / "argocd"
FIXTURES = Path(__file__).parent / "fixtures" / "argocd"
KINDS = ("FeaturePipeline", "TrainingRun", "RecommenderDeployment", "DriftMonitor")


def health(obj: dict[str, Any]) -> dict[str, str]:
    """Run the kind's check the way Argo CD does: the object as the global `obj`, a table returned."""
    runtime = lupa.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = runtime.table_from(json.loads(json.dumps(obj)), recursive=True)
    script = (ARGOCD / "health" / f"{obj['kind']}.lua").read_text()
    result = runtime.execute(script)
    return {k: result[k] for k in ("status", "message") if result[k] is not None}


def fixture(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / f"{name}.json").read_text()))


# Captured from the operator (RECOPS_BACKENDS=kubernetes, chart ServiceAccount): what each state looks like.
EXPECTED = {
    "featurepipeline-new": ("Progressing", "report status"),
    "trainingrun-new": ("Progressing", "report status"),
    "recommenderdeployment-new": ("Progressing", "report status"),
    "driftmonitor-new": ("Progressing", "report status"),
    "featurepipeline-stale": ("Progressing", "observe generation 2"),
    "recommenderdeployment-stale": ("Progressing", "observe generation 2"),
    "driftmonitor-stale": ("Progressing", "observe generation 2"),
    "featurepipeline-ok": ("Healthy", "Scheduled"),
    "trainingrun-ok": ("Progressing", "WaitingForSnapshot"),
    "recommenderdeployment-ok": ("Progressing", "MLflowUnavailable"),
    "driftmonitor-ok": ("Progressing", "WaitingForReference"),
    "featurepipeline-failed": ("Degraded", "SecretNotFound"),
    "trainingrun-failed": ("Degraded", "BackendUnavailable"),
    "recommenderdeployment-failed": ("Degraded", "BackendUnavailable"),
    "driftmonitor-failed": ("Degraded", "BackendUnavailable"),
    "driftmonitor-drifted": ("Healthy", "Drift detected"),
}


def test_every_fixture_has_an_expectation() -> None:
    assert {p.stem for p in FIXTURES.glob("*.json")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_health_of_captured_objects(name: str) -> None:
    status, words = EXPECTED[name]
    result = health(fixture(name))
    assert result["status"] == status, result
    assert words in result["message"], result


def _with_summary(name: str, type_: str, status: str, reason: str) -> dict[str, Any]:
    obj = copy.deepcopy(fixture(name))
    for cond in obj["status"]["conditions"]:
        if cond["type"] == type_:
            cond.update(status=status, reason=reason, message=f"{reason} message")
    return obj


def test_trainingrun_succeeded_is_healthy_and_failed_is_degraded() -> None:
    assert health(_with_summary("trainingrun-ok", "Succeeded", "True", "Promoted"))["status"] == "Healthy"
    assert health(_with_summary("trainingrun-ok", "Succeeded", "False", "QualityGateFailed"))["status"] == "Degraded"


def test_drift_detected_is_not_degraded() -> None:
    drifted = fixture("driftmonitor-drifted")
    assert {c["type"]: c["status"] for c in drifted["status"]["conditions"]} == {"Ready": "True",
                                                                                 "DriftDetected": "True"}
    assert health(drifted)["status"] == "Healthy"
    quiet = _with_summary("driftmonitor-drifted", "DriftDetected", "False", "NoDrift")
    assert health(quiet) == {"status": "Healthy", "message": "Monitoring: checks are scheduled"}


def test_missing_summary_condition_and_empty_conditions() -> None:
    obj = fixture("featurepipeline-ok")
    obj["status"]["conditions"] = [c for c in obj["status"]["conditions"] if c["type"] != "Ready"]
    assert health(obj)["status"] == "Progressing"
    obj["status"]["conditions"] = []
    assert health(obj)["status"] == "Progressing"


def test_cm_patch_is_current_and_holds_every_check() -> None:
    proc = subprocess.run([sys.executable, str(ARGOCD / "gen_cm_patch.py"), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    data = yaml.safe_load((ARGOCD / "argocd-cm-patch.yaml").read_text())["data"]
    assert set(data) == {f"resource.customizations.health.recops.dev_{k}" for k in KINDS}
    for kind in KINDS:
        lua = (ARGOCD / "health" / f"{kind}.lua").read_text()
        assert data[f"resource.customizations.health.recops.dev_{kind}"] == lua


def wave(obj: dict[str, Any]) -> int:
    return int((obj["metadata"].get("annotations") or {}).get("argocd.argoproj.io/sync-wave", "0"))


def test_application_installs_crds_first() -> None:
    apps = list(yaml.safe_load_all((ARGOCD / "application.yaml").read_text()))
    chart_app = next(a for a in apps if a["spec"]["source"].get("path") == "charts/recops")
    helm = chart_app["spec"]["source"]["helm"]
    assert helm["skipCrds"] is True and helm["valuesObject"]["crds"]["install"] is True
    workloads = next(a for a in apps if a is not chart_app)
    assert wave(chart_app) < wave(workloads)
    docs = render(*[f"{k}={v}" for k, v in (("crds.install", "true"), ("crds.keep", "true"))])
    crd_waves = {wave(d) for d in docs if d["kind"] == "CustomResourceDefinition"}
    other_waves = {wave(d) for d in docs if d["kind"] != "CustomResourceDefinition"}
    assert len(crd_waves) == 1 and max(crd_waves) < min(other_waves)

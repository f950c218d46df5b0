"""The operator, a real subprocess, against the real control plane: status, finalizers, restored children."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures.kube import ROOT, Kubectl, conditions
from fixtures.operator import OperatorProcess, run_operator, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.lab("k8s")]

SECRETS = {"clickstream-s3": {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"},
           "profiles-db": {"dsn": "postgresql://canary:canary@127.0.0.1:1/db"}}


@pytest.fixture
def operator(cluster: Any, tmp_path: Path) -> Iterator[OperatorProcess]:
    yield from run_operator(cluster.env, tmp_path)


def _apply_examples(kubectl: Kubectl, secrets: bool = True) -> list[dict[str, Any]]:
    if secrets:
        for name, data in SECRETS.items():
            kubectl.run("create", "secret", "generic", name, *[f"--from-literal={k}={v}" for k, v in data.items()])
    docs = []
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        doc["metadata"]["namespace"] = kubectl.namespace
        if "generateName" in doc["metadata"]:
            doc["metadata"]["name"] = doc["metadata"].pop("generateName") + "x"
        kubectl.run("create", "-f", "-", stdin=yaml.safe_dump(doc))
        docs.append(doc)
    return docs


def test_status_on_every_example(kubectl: Kubectl, operator: OperatorProcess) -> None:
    docs = _apply_examples(kubectl)
    expected = {"FeaturePipeline": {"Ready", "QualityPassed"}, "TrainingRun": {"Succeeded", "Promoted"},
                "RecommenderDeployment": {"Ready", "ModelLoaded", "Progressing"},
                "DriftMonitor": {"Ready", "DriftDetected"}}
    for doc in docs:
        kind, name = doc["kind"], doc["metadata"]["name"]

        def reconciled(kind: str = kind, name: str = name) -> dict[str, Any] | None:
            obj = kubectl.get_json(kind.lower(), name)
            status = obj.get("status") or {}
            ok = status.get("observedGeneration") == obj["metadata"]["generation"] and \
                expected[kind] <= set(conditions(obj)) and \
                "recops.dev/finalizer" in (obj["metadata"].get("finalizers") or [])
            return obj if ok else None

        obj = wait_for(reconciled, 60, f"{kind} {name} reconciled with its finalizer")
        for cond in conditions(obj).values():
            assert cond["status"] in ("True", "False", "Unknown") and cond["reason"] and cond["lastTransitionTime"]
    fp = kubectl.get_json("fp", "shop-features")
    assert conditions(fp)["Ready"]["status"] == "True"
    tr = kubectl.get_json("tr", "shop-ease-x")
    # The example's FeaturePipeline has no snapshot yet: the run waits and says why.
    assert conditions(tr)["Succeeded"]["reason"] == "WaitingForSnapshot"
    rd = kubectl.get_json("rd", "shop-recommender")
    assert conditions(rd)["ModelLoaded"]["reason"] == "MLflowUnavailable"
    assert "spec.model.trackingUri" in conditions(rd)["ModelLoaded"]["message"]
    # No secret value ever reaches a status or an Event.
    everything = kubectl.run("get", "recops,events", "-o", "yaml").stdout
    assert "canary" not in everything


def test_missing_secret_is_reported_then_recovers(kubectl: Kubectl, operator: OperatorProcess) -> None:
    doc = yaml.safe_load((ROOT / "examples" / "featurepipeline.yaml").read_text())
    doc["metadata"]["namespace"] = kubectl.namespace
    kubectl.run("create", "-f", "-", stdin=yaml.safe_dump(doc))

    def not_found() -> bool:
        return conditions(kubectl.get_json("fp", "shop-features")).get("Ready", {}).get("reason") == "SecretNotFound"

    wait_for(not_found, 60, "SecretNotFound")
    message = conditions(kubectl.get_json("fp", "shop-features"))["Ready"]["message"]
    assert "credentialsSecretRef" in message and "clickstream-s3" in message
    for name, data in SECRETS.items():
        kubectl.run("create", "secret", "generic", name, *[f"--from-literal={k}={v}" for k, v in data.items()])
    wait_for(lambda: conditions(kubectl.get_json("fp", "shop-features"))["Ready"]["status"] == "True", 30,
             "Ready after the Secrets were created")
    events = kubectl.run("get", "events", "--field-selector", "involvedObject.name=shop-features").stdout
    assert "SecretNotFound" in events and "Scheduled" in events


def test_deleted_child_is_restored_within_resync(kubectl: Kubectl, operator: OperatorProcess) -> None:
    _apply_examples(kubectl)
    wait_for(lambda: kubectl.run("get", "cronjob", "shop-features-features", check=False).returncode == 0, 60,
             "the CronJob")
    kubectl.run("delete", "cronjob", "shop-features-features")
    started = time.monotonic()
    wait_for(lambda: kubectl.run("get", "cronjob", "shop-features-features", check=False).returncode == 0, 30,
             "the CronJob restored")
    restored_after = time.monotonic() - started
    assert restored_after < 3 + 5, f"restored after {restored_after:.1f}s (resync is 3s)"
    # An edited child is put back too (server-side apply owns the fields it sets).
    kubectl.run("patch", "cronjob", "shop-features-features", "--type=merge", "-p", '{"spec":{"schedule":"* * * * *"}}')
    wait_for(lambda: kubectl.get_json("cronjob", "shop-features-features")["spec"]["schedule"] == "0 3 * * *", 30,
             "the edited schedule reverted")


def test_finalizer_added_and_removed_on_delete(kubectl: Kubectl, operator: OperatorProcess) -> None:
    _apply_examples(kubectl)
    for resource in ("fp/shop-features", "rd/shop-recommender", "dm/shop-drift", "tr/shop-ease-x"):
        kind, name = resource.split("/")
        wait_for(lambda kind=kind, name=name: "recops.dev/finalizer" in
                 (kubectl.get_json(kind, name)["metadata"].get("finalizers") or []), 60, f"finalizer on {resource}")
        kubectl.run("delete", resource, "--timeout=60s")
        assert kubectl.run("get", resource, check=False).returncode != 0

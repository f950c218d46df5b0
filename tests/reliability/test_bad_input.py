"""Bad input, end to end: invalid manifests, specs, requests and job configs, each row with the exact message
the user sees, captured from the real component that catches it:

* manifests: ``kubectl apply`` against the lab's kube-apiserver with our generated CRDs (schema + CEL),
  on create and on update; the message is kubectl's stderr;
* specs the schema cannot judge: the operator as a subprocess writes a condition; the message is the
  condition's, read with ``kubectl get -o json``;
* requests: the model server as a process with a small model; the message is the error body's;
* job programs: ``recops-features|recops-train|recops-drift run --config -``; the message is the error line
  on stderr (and the result document), the exit code the contract's 2.

Every row also checks that nothing was lost: a refused object is not stored, a refused update leaves the
stored object (spec and resourceVersion) as it was, a refused spec gets no workload, the server keeps
answering valid requests the same way, a refused job writes nothing.

The table is written to docs/reliability/bad-input.md (golden file: the test fails when the doc is stale;
``RECOPS_UPDATE_DOCS=1`` rewrites it). More schema cases, asserted to name their field, live in
tests/integration/operator/test_api_server.py (``INVALID``) and are not repeated here.
"""

from __future__ import annotations

import copy
import datetime as dt
import difflib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fixtures.kube import ROOT, Kubectl, conditions, temp_namespace
from fixtures.operator import OperatorProcess, run_operator, wait_for
from recops_model import save_model
from serverproc_helpers import PYTHONPATH, launch_server, small_model, stop_process

pytestmark = [pytest.mark.integration, pytest.mark.lab("k8s")]

DOC = ROOT / "docs" / "reliability" / "bad-input.md"
THIS = "tests/reliability/test_bad_input.py"
UPDATE_HINT = f"run RECOPS_UPDATE_DOCS=1 pytest {THIS}"
BIN = Path(sys.executable).parent
REMOVED = object()  # a field deleted from the manifest

# Says what to do: the words our messages and the API server's standard field errors use for it.
HINT = re.compile(r"\b(set|use|one of|must|should|supported values|Required value|create|add|fix|choose|enable|"
                  r"needs|retry|retrying)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Row:
    surface: str
    input: str
    caught_by: str
    message: str


OBSERVED: dict[str, Row] = {}  # case id -> what the real component said (filled by the tests below)


def _clarity_problems(message: str, names: str, needs_hint: bool) -> list[str]:
    problems = []
    if names not in message:
        problems.append(f"does not name {names!r}")
    if needs_hint and not HINT.search(message):
        problems.append("does not say what to do")
    return problems


def check_clear(case_id: str, message: str, names: str, *, needs_hint: bool) -> None:
    """The message names the field (or parameter) and, for manifests and conditions, says what to do.

    A message listed in UNCLEAR is a known finding: it must still fail the check (so a fix shows up here)."""
    problems = _clarity_problems(message, names, needs_hint)
    if case_id in UNCLEAR:
        assert problems, f"{case_id}: the message is clear now; remove it from UNCLEAR ({UPDATE_HINT}):\n{message}"
    else:
        assert not problems, f"{case_id}: unclear message ({'; '.join(problems)}):\n{message}"


# Messages that fail the clarity check today: where they come from and the wording we propose.
UNCLEAR: dict[str, tuple[str, str]] = {
    "fp-field-typo": (
        "kube-apiserver strict field validation (not ours to reword)",
        "no change possible in the CRD; `kubectl explain featurepipeline.spec` lists the valid fields"),
    "tr-params-as-map": (
        "kube-apiserver strict field validation (not ours to reword): names the key, not the list shape",
        "none possible in the CRD (strict decoding runs before validation); the field's description already says "
        "params is a list of {name, value}"),
    "fp-duplicate-event-weight": (
        "kube-apiserver list-map validation (`x-kubernetes-list-type: map`, not ours to reword)",
        "none possible in the CRD; the path names the duplicate entry"),
    "rd-mlflow-unreachable": (
        "operator/recops/reconcile.py, recommenderdeployment() (`f\"spec.model.trackingUri: {exc}\"`)",
        "spec.model.trackingUri: MLflow at http://127.0.0.1:9 is unreachable: [Errno 111] Connection refused; "
        "check the URL and that MLflow is running (retrying)"),
    "server-unknown-route": (
        "model-server/recops_server/errors.py, on_http() (passes Starlette's detail through)",
        "path: no route GET /v1/recomendations/u1; use GET /v1/recommendations/{userId}, "
        "POST /v1/recommendations or GET /v1/model"),
    "server-start-bad-setting": (
        "model-server/recops_server/cli.py, serve() (`str(exc)` of pydantic's ValidationError: names the "
        "setting, not its variable, and dumps every input value)",
        "RECOPS_MAX_CONCURRENCY: Input should be a valid integer, unable to parse string as an integer "
        "(got 'lots')"),
}


def _example(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "examples" / name).read_text()))


def _with(doc: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for path, value in changes.items():
        node: Any = doc
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        if value is REMOVED:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return doc


def _describe(changes: dict[str, Any]) -> str:
    return ", ".join(f"{p} removed" if v is REMOVED else f"{p}: {json.dumps(v)}" for p, v in changes.items())


def _cel_messages() -> set[str]:
    """The messages of our CEL rules, read from the generated CRDs."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for rule in node.get("x-kubernetes-validations") or []:
                found.add(rule["message"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in (ROOT / "crds").glob("*.yaml"):
        walk(yaml.safe_load(path.read_text()))
    return found


CEL_MESSAGES = _cel_messages()


def _apiserver_stage(message: str) -> str:
    if any(m in message for m in CEL_MESSAGES):
        return "apiserver: CEL rule"
    if "strict decoding error" in message:
        return "apiserver: strict field validation"
    return "apiserver: OpenAPI schema"


# ---------------------------------------------------------------------------------------------- manifests

FP, TR, RD, DM = "featurepipeline.yaml", "trainingrun.yaml", "recommenderdeployment.yaml", "driftmonitor.yaml"
KINDS = {FP: "FeaturePipeline", TR: "TrainingRun", RD: "RecommenderDeployment", DM: "DriftMonitor"}


@dataclass(frozen=True)
class Manifest:
    id: str
    example: str
    changes: dict[str, Any]
    names: str  # the field the message must name
    update: bool = False  # False: create the bad object; True: apply the example first, then the bad version


MANIFESTS = [
    Manifest("fp-field-typo", FP, {"spec.schedul": "0 4 * * *"}, "spec.schedul"),
    Manifest("fp-unknown-concurrency-policy", FP, {"spec.concurrencyPolicy": "Sometimes"}, "spec.concurrencyPolicy"),
    Manifest("fp-deadline-too-short", FP, {"spec.activeDeadlineSeconds": 30}, "spec.activeDeadlineSeconds"),
    Manifest("fp-half-life-words", FP, {"spec.features.decayHalfLife": "2 weeks"}, "spec.features.decayHalfLife"),
    Manifest("fp-duplicate-event-weight", FP, {"spec.features.eventWeights.1.event": "view"},
             "spec.features.eventWeights[1]"),
    Manifest("fp-ecs-local-clickstream", FP, {"spec.backend": "ecs", "spec.sources.clickstream.uri": "/data/events"},
             "spec.sources.clickstream.uri"),
    Manifest("fp-dsn-key-missing", FP, {"spec.sources.profiles.dsnSecretRef.key": REMOVED},
             "spec.sources.profiles.dsnSecretRef.key"),
    Manifest("fp-schedule-hour-25", FP, {"spec.schedule": "0 25 * * *"}, "spec.schedule"),
    Manifest("tr-no-snapshot", TR, {"spec.snapshot.featurePipelineRef": REMOVED}, "spec.snapshot"),
    Manifest("tr-tracking-uri-no-scheme", TR, {"spec.mlflow.trackingUri": "mlflow:5000"}, "spec.mlflow.trackingUri"),
    Manifest("tr-params-as-map", TR, {"spec.algorithm.params": {"l2": "200"}}, "spec.algorithm.params"),
    Manifest("tr-param-value-number", TR, {"spec.algorithm.params.0.value": 200}, "spec.algorithm.params[0].value"),
    Manifest("tr-no-cutoffs", TR, {"spec.evaluation.k": []}, "spec.evaluation.k"),
    Manifest("tr-negative-cutoff", TR, {"spec.evaluation.k": [-5]}, "spec.evaluation.k[0]"),
    Manifest("rd-model-name-missing", RD, {"spec.model.name": REMOVED}, "spec.model.name"),
    Manifest("rd-privileged-port", RD, {"spec.port": 80}, "spec.port"),
    Manifest("rd-negative-replicas", RD, {"spec.replicas": -1}, "spec.replicas"),
    Manifest("rd-neither-alias-nor-version", RD, {"spec.model.alias": REMOVED}, "spec.model"),
    Manifest("rd-toggle-as-bool", RD, {"spec.monitoring.serviceMonitor": True}, "spec.monitoring.serviceMonitor"),
    Manifest("dm-refresh-without-pipeline", DM, {"spec.target.featurePipelineRef": REMOVED},
             "spec.onDrift.refreshFeatures"),
    Manifest("dm-unknown-source", DM, {"spec.sources": ["Kafka"]}, "spec.sources[0]"),
    Manifest("dm-unknown-severity", DM, {"spec.alerting": {"severity": "page"}}, "spec.alerting.severity"),
    Manifest("dm-template-two-snapshots", DM, {"spec.onDrift.trainingRunTemplate.spec.snapshot.uri": "s3://b/x"},
             "spec.onDrift.trainingRunTemplate.spec.snapshot"),
    Manifest("dm-schedule-four-fields", DM, {"spec.schedule": "*/15 * * *"}, "spec.schedule"),
    Manifest("dm-schedule-minute-61", DM, {"spec.schedule": "61 * * * *"}, "spec.schedule"),
    Manifest("dm-drift-share-above-one", DM, {"spec.driftShare": "1.5"}, "spec.driftShare"),
    # updates of a stored, valid object: refused, and the stored object stays as it was
    Manifest("tr-update-immutable", TR, {"spec.algorithm.name": "puresvd"}, "spec", update=True),
    Manifest("rd-update-min-above-max", RD, {"spec.autoscaling.minReplicas": 9}, "minReplicas", update=True),
    Manifest("rd-update-alias-and-version", RD, {"spec.model.version": "3"}, "spec.model", update=True),
    Manifest("dm-update-float-threshold", DM, {"spec.features.0.threshold": 0.3}, "spec.features[0].threshold",
             update=True),
    Manifest("dm-update-retrain-without-template", DM, {"spec.onDrift.trainingRunTemplate": REMOVED},
             "onDrift.trainingRunTemplate", update=True),
    Manifest("fp-update-schedule-words", FP, {"spec.schedule": "every hour"}, "spec.schedule", update=True),
    Manifest("fp-update-output-removed", FP, {"spec.output": REMOVED}, "spec.output", update=True),
]


@pytest.fixture(scope="module")
def ns(cluster: Any) -> Iterator[Kubectl]:
    """One namespace for the whole module (the operator's objects live here too)."""
    with temp_namespace(cluster, "bad-input") as k:
        yield k


def _named(example: str, name: str, namespace: str) -> dict[str, Any]:
    doc = _example(example)
    doc["metadata"] = {"name": name, "namespace": namespace}
    return doc


@pytest.mark.parametrize("case", MANIFESTS, ids=lambda c: c.id)
def test_manifest_is_refused_by_the_api_server(ns: Kubectl, case: Manifest) -> None:
    kind = KINDS[case.example]
    good = _named(case.example, case.id, ns.namespace)
    before = None
    if case.update:
        ns.run("apply", "-f", "-", stdin=yaml.safe_dump(good))
        before = ns.get_json(kind.lower(), case.id)
    bad = _with(good, case.changes)
    proc = ns.run("apply", "-f", "-", stdin=yaml.safe_dump(bad), check=False)
    message = proc.stderr.strip()
    OBSERVED[case.id] = Row(f"{kind} ({'update' if case.update else 'create'})", _describe(case.changes),
                            _apiserver_stage(message), message)
    assert proc.returncode != 0, f"accepted: {_describe(case.changes)}\n{proc.stdout}"
    check_clear(case.id, message, case.names, needs_hint=True)
    # nothing lost: a refused create stores nothing, a refused update leaves the stored object untouched
    stored = ns.run("get", kind.lower(), case.id, "-o", "json", check=False)
    if before is None:
        assert stored.returncode != 0 and "NotFound" in stored.stderr, stored.stdout
    else:
        after = json.loads(stored.stdout)
        assert after["spec"] == before["spec"]
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        ns.run("delete", kind.lower(), case.id, "--wait=false")  # the operator's rows below need a clean namespace


# --------------------------------------------------------------------------------------- operator conditions

@dataclass(frozen=True)
class Spec:
    id: str
    example: str
    bad: dict[str, Any]  # the input the row is about (shown in the doc)
    condition: str  # the condition that must carry the message
    reason: str
    names: str
    note: str = ""  # what makes the input bad, when the value alone does not show it
    setup: dict[str, Any] = field(default_factory=dict)  # other changes that isolate the problem (not shown)


# Secrets that exist: `s3-ok` with both S3 keys; `db-nokey` with only a `url` key.
S3_CREDS = {"spec.sources.clickstream.s3.credentialsSecretRef.name": "s3-ok",
            "spec.output.s3.credentialsSecretRef.name": "s3-ok"}
S3_OK = {**S3_CREDS, "spec.sources.profiles": REMOVED}
# The operator under test enables kubernetes, ecs and sagemaker (not local), with no AWS settings.
BACKENDS = "kubernetes,ecs,sagemaker"
UNREACHABLE = "http://127.0.0.1:9"  # nothing listens on the discard port
SNAPSHOT_URI = {"spec.snapshot": {"uri": "s3://shop-features/snapshots/v1"}}
TOKEN_REF = {"name": "mlflow-token", "key": "token"}
SERVED = {"spec.target.deploymentRef.name": "rd-mlflow-unreachable"}  # a RecommenderDeployment that exists

SPECS = [
    Spec("fp-secret-missing", FP, {"spec.sources.clickstream.s3.credentialsSecretRef.name": "clickstream-s3"},
         "Ready", "SecretNotFound", "spec.sources.clickstream.s3.credentialsSecretRef", "no such Secret"),
    Spec("fp-secret-key-missing", FP, {"spec.sources.profiles.dsnSecretRef": {"name": "db-nokey", "key": "dsn"}},
         "Ready", "SecretKeyNotFound", "spec.sources.profiles.dsnSecretRef", "the Secret has no key dsn",
         setup=S3_CREDS),
    Spec("fp-schedule-range-reversed", FP, {"spec.schedule": "30-10 * * * *"}, "Ready", "InvalidSpec",
         "spec.schedule", "in range but backwards (a CEL check would cost 16.6x the API server's budget)",
         setup=S3_OK),
    Spec("fp-backend-not-enabled", FP, {"spec.backend": "local"}, "Ready", "BackendUnavailable", "spec.backend",
         f"operator enables {BACKENDS}", setup=S3_OK),
    Spec("fp-backend-not-configured", FP, {"spec.backend": "ecs"}, "Ready", "BackendUnavailable", "spec.backend",
         "no AWS settings", setup=S3_OK),
    Spec("tr-pipeline-missing", TR, {"spec.snapshot.featurePipelineRef.name": "no-such-pipeline"}, "Succeeded",
         "FeaturePipelineNotFound", "spec.snapshot.featurePipelineRef"),
    Spec("tr-token-secret-missing", TR, {"spec.mlflow.tokenSecretRef": TOKEN_REF}, "Succeeded", "SecretNotFound",
         "spec.mlflow.tokenSecretRef", "no such Secret", setup=SNAPSHOT_URI),
    Spec("tr-backend-not-configured", TR, {"spec.backend": "sagemaker"}, "Succeeded", "BackendUnavailable",
         "spec.backend", "no AWS settings"),
    Spec("tr-mlflow-unreachable", TR, {"spec.mlflow.trackingUri": UNREACHABLE}, "Succeeded", "MLflowUnavailable",
         "spec.mlflow.trackingUri", "nothing listens there", setup=SNAPSHOT_URI),
    Spec("rd-token-secret-missing", RD, {"spec.model.tokenSecretRef": TOKEN_REF}, "Ready", "SecretNotFound",
         "spec.model.tokenSecretRef", "no such Secret", setup={"spec.payloadLogging": REMOVED}),
    Spec("rd-payload-secret-key-missing", RD, {"spec.payloadLogging.s3.credentialsSecretRef.name": "db-nokey"},
         "Ready", "SecretKeyNotFound", "spec.payloadLogging.s3.credentialsSecretRef", "the Secret has no S3 keys"),
    Spec("rd-mlflow-unreachable", RD, {"spec.model.trackingUri": UNREACHABLE}, "ModelLoaded", "MLflowUnavailable",
         "spec.model.trackingUri", "nothing listens there", setup={"spec.payloadLogging": REMOVED}),
    Spec("dm-deployment-missing", DM, {"spec.target.deploymentRef.name": "no-such-deployment"}, "Ready",
         "RecommenderDeploymentNotFound", "spec.target.deploymentRef"),
    Spec("dm-pipeline-missing", DM, {"spec.target.featurePipelineRef.name": "no-such-pipeline"}, "Ready",
         "FeaturePipelineNotFound", "spec.target.featurePipelineRef", setup=SERVED),
    Spec("dm-backend-not-enabled", DM, {"spec.backend": "local"}, "Ready", "BackendUnavailable", "spec.backend",
         f"operator enables {BACKENDS}", setup=SERVED),
]


@dataclass(frozen=True)
class Gap:
    """An input the API server accepts although it is invalid: what happens to it is observed, not assumed."""

    id: str
    example: str
    bad: dict[str, Any]
    later: str = ""  # the row that catches it later, if any
    setup: dict[str, Any] = field(default_factory=dict)
    fix: str = ""  # the change we propose (in operator/recops/api or the reconcile: not edited by this test's author)


GAPS: list[Gap] = []  # none left (the last, reversed cron ranges, is an InvalidSpec condition now)
GAP_OBSERVED: dict[str, str] = {}
GAP_KINDS = {gap.id: gap.example for gap in GAPS}


@dataclass
class OperatorRun:
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> the object as the operator left it
    applied: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> the manifest as applied
    workloads: list[str] = field(default_factory=list)  # CronJobs, Jobs, Deployments in the namespace
    accepted: dict[str, str] = field(default_factory=dict)  # gap id -> kubectl's answer
    refused: dict[str, str] = field(default_factory=dict)  # gap id -> kubectl's error (the gap is closed)
    log: str = ""
    settled_seconds: float = 0.0


@pytest.fixture(scope="module")
def operator_run(cluster: Any, ns: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorRun]:
    """Every condition row's object (and the gap objects) at once, one operator subprocess for all of them."""
    ns.run("create", "secret", "generic", "s3-ok", "--from-literal=AWS_ACCESS_KEY_ID=x",
           "--from-literal=AWS_SECRET_ACCESS_KEY=y")
    ns.run("create", "secret", "generic", "db-nokey", "--from-literal=url=postgresql://canary@127.0.0.1:1/db")
    run = OperatorRun()
    for case in SPECS:
        doc = _with(_named(case.example, case.id, ns.namespace), {**case.setup, **case.bad})
        ns.run("apply", "-f", "-", stdin=yaml.safe_dump(doc))
        run.applied[case.id] = doc
    for gap in GAPS:
        doc = _with(_named(gap.example, gap.id, ns.namespace), {**gap.setup, **gap.bad})
        proc = ns.run("apply", "-f", "-", stdin=yaml.safe_dump(doc), check=False)
        if proc.returncode:
            run.refused[gap.id] = proc.stderr.strip()
        else:
            run.applied[gap.id], run.accepted[gap.id] = doc, proc.stdout.strip()
    tmp = tmp_path_factory.mktemp("operator")
    operator = run_operator(cluster.env, tmp, RECOPS_BACKENDS=BACKENDS)
    op: OperatorProcess = next(operator)
    try:
        started = time.monotonic()

        def settled() -> bool:
            for case in SPECS:
                obj = ns.get_json(KINDS[case.example].lower(), case.id)
                if conditions(obj).get(case.condition, {}).get("reason") != case.reason:
                    return False
                run.objects[case.id] = obj
            return True

        wait_for(settled, 90, "every condition row's reason")
        run.settled_seconds = time.monotonic() - started
        time.sleep(2 * 3 + 1)  # two more resyncs (RECOPS_RESYNC_SECONDS=3) for the gap objects
        for gap_id in run.accepted:
            run.objects[gap_id] = ns.get_json(KINDS[GAP_KINDS[gap_id]].lower(), gap_id)
        run.workloads = ns.run("get", "cronjobs,jobs,deployments", "-o", "name").stdout.split()
        run.log = op.logs()
        yield run
    finally:
        operator.close()
        _delete_all(ns)


def _delete_all(ns: Kubectl) -> None:
    """Delete this module's objects; with the operator gone, their finalizers are taken off by hand."""
    kinds = "featurepipelines,trainingruns,recommenderdeployments,driftmonitors"
    ns.run("delete", kinds, "--all", "--wait=false", check=False)
    for name in ns.run("get", kinds, "-o", "name", check=False).stdout.split():
        ns.run("patch", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False)


@pytest.mark.parametrize("case", SPECS, ids=lambda c: c.id)
def test_spec_problem_is_a_condition(operator_run: OperatorRun, case: Spec) -> None:
    obj = operator_run.objects[case.id]
    cond = conditions(obj)[case.condition]
    message = str(cond["message"])
    shown = _describe(case.bad) + (f" ({case.note})" if case.note else "")
    OBSERVED[case.id] = Row(f"{KINDS[case.example]} (operator)", shown,
                            f"operator: {case.condition}={cond['status']} ({cond['reason']})", message)
    check_clear(case.id, message, case.names, needs_hint=True)
    # nothing lost: the operator never rewrote the spec and started no workload for the refused spec
    assert _subset(operator_run.applied[case.id]["spec"], obj["spec"]), "the operator changed the spec"
    assert operator_run.workloads == [], operator_run.workloads


def _subset(small: Any, big: Any) -> bool:
    """Every value the user applied is still there (the API server only added defaults)."""
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and _subset(v, big[k]) for k, v in small.items())
    return bool(small == big)


if GAPS:  # pytest would report an empty parameter set as a skipped test

    @pytest.mark.parametrize("gap", GAPS, ids=lambda g: g.id)
    def test_gap_is_observed(operator_run: OperatorRun, gap: Gap) -> None:
        """Accepted at admission although invalid: record what the user gets instead (a finding, listed in the doc)."""
        if gap.id in operator_run.refused:
            pytest.fail(f"{gap.id} is refused at admission now: move it to MANIFESTS ({operator_run.refused[gap.id]})")
        obj = operator_run.objects[gap.id]
        assert _subset(operator_run.applied[gap.id]["spec"], obj["spec"])
        seen = operator_run.accepted[gap.id]
        if not gap.later:  # nothing catches it later: what does the status say after the operator saw it?
            conds = conditions(obj)
            if conds:
                seen += "; status: " + "; ".join(f"{t}={c['status']} ({c['reason']}): {c['message']}"
                                                 for t, c in sorted(conds.items()))
            else:
                evidence = _log_evidence(operator_run.log, str(next(iter(gap.bad.values()))))
                assert evidence, "no status and nothing about the value in the operator's log"
                seen += f"; no status after two resyncs; only the operator's log says why: {evidence}"
        GAP_OBSERVED[gap.id] = seen


def _log_evidence(log: str, value: str) -> str:
    """The first error in the operator's log that quotes the value: an exception's text or an API server answer."""
    for line in log.splitlines():
        if "HTTP response body: " in line:
            text = str(json.loads(line.partition("HTTP response body: ")[2]).get("message", ""))
        elif "[ERROR" in line and " seconds: " in line:  # kopf: "... failed ... will try again in N seconds: <error>"
            text = line.partition(" seconds: ")[2]
        else:
            continue
        if value in text:
            return text.strip()
    return ""


# ---------------------------------------------------------------------------------------------- model server

@dataclass(frozen=True)
class Request:
    id: str
    method: str
    path: str
    body: bytes | None
    status: int
    names: str


BATCH = "/v1/recommendations"


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


SERVER_SETTINGS = {"RECOPS_MAX_K": "50", "RECOPS_MAX_BATCH_REQUESTS": "4", "RECOPS_RELOAD_INTERVAL_SECONDS": "0"}
REQUESTS = [
    Request("server-k-zero", "GET", "/v1/recommendations/u1?k=0", None, 422, "k"),
    Request("server-k-above-api-limit", "GET", "/v1/recommendations/u1?k=5000", None, 422, "k"),
    Request("server-k-above-server-max", "GET", "/v1/recommendations/u1?k=100", None, 422, "k"),
    Request("server-k-not-a-number", "GET", "/v1/recommendations/u1?k=ten", None, 422, "k"),
    Request("server-unknown-category", "GET", "/v1/recommendations/u1?category=shoes", None, 400, "category"),
    Request("server-exclude-seen-not-bool", "GET", "/v1/recommendations/u1?excludeSeen=maybe", None, 422,
            "excludeSeen"),
    Request("server-user-id-too-long", "GET", "/v1/recommendations/" + "u" * 300, None, 422, "user_id"),
    Request("server-unknown-route", "GET", "/v1/recomendations/u1", None, 404, "/v1/recomendations/u1"),
    Request("server-malformed-json", "POST", BATCH, b'{"requests": [{"userId": "u1",}]}', 400, "body"),
    Request("server-body-not-object", "POST", BATCH, _json([{"userId": "u1"}]), 422, "body"),
    Request("server-empty-batch", "POST", BATCH, _json({"requests": []}), 422, "requests"),
    Request("server-batch-too-large", "POST", BATCH, _json({"requests": [{"userId": "u1"}] * 5}), 400, "requests"),
    Request("server-batch-unknown-field", "POST", BATCH, _json({"requests": [{"user": "u1"}]}), 422,
            "requests[0].user"),
    Request("server-batch-k-wrong-type", "POST", BATCH, _json({"requests": [{"userId": "u1", "k": "ten"}]}), 422,
            "requests[0].k"),
    Request("server-batch-unknown-category", "POST", BATCH,
            _json({"requests": [{"userId": "u1"}, {"userId": "u2", "category": "shoes"}]}), 400,
            "requests[1].category"),
]
VALID = "/v1/recommendations/u1?k=2"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("server")
    save_model(small_model(), tmp / "model")
    srv = launch_server({"RECOPS_MODEL_URI": str(tmp / "model"), **SERVER_SETTINGS}, tmp)
    try:
        baseline = httpx.get(srv.url + VALID, timeout=10)
        assert baseline.status_code == 200, baseline.text
        yield srv.url, baseline.json()
    finally:
        stop_process(srv.proc)


@pytest.mark.parametrize("case", REQUESTS, ids=lambda c: c.id)
def test_bad_request_gets_a_clear_4xx(server: tuple[str, dict[str, Any]], case: Request) -> None:
    url, baseline = server
    headers = {"content-type": "application/json"} if case.body is not None else {}
    resp = httpx.request(case.method, url + case.path, content=case.body, headers=headers, timeout=10)
    error = resp.json()["error"]
    message = str(error["message"])
    shown = case.path if len(case.path) < 60 else case.path[:40] + f"... ({len(case.path)} characters)"
    body = "" if case.body is None else " " + (case.body.decode() if len(case.body) < 80 else
                                               case.body.decode()[:60] + "...")
    OBSERVED[case.id] = Row("model server", f"{case.method} {shown}{body}",
                            f"server: {resp.status_code} {error['reason']}", message)
    assert resp.status_code == case.status, resp.text
    check_clear(case.id, message, case.names, needs_hint=False)
    # nothing lost: the same process answers a valid request exactly as before
    again = httpx.get(url + VALID, timeout=10)
    assert again.status_code == 200 and again.json() == baseline


@dataclass(frozen=True)
class Startup:
    id: str
    env: dict[str, str]
    names: str


STARTUPS = [
    Startup("server-start-no-model", {"RECOPS_MODEL_URI": ""}, "RECOPS_MODEL_URI"),
    Startup("server-start-bad-setting", {"RECOPS_MAX_CONCURRENCY": "lots"}, "RECOPS_MAX_CONCURRENCY"),
]


@pytest.mark.parametrize("case", STARTUPS, ids=lambda c: c.id)
def test_bad_server_setting_stops_the_start(server: tuple[str, dict[str, Any]], tmp_path: Path,
                                            case: Startup) -> None:
    save_model(small_model(), tmp_path / "model")
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "RECOPS_MODEL_URI": str(tmp_path / "model"), **case.env}
    proc = subprocess.run([sys.executable, "-m", "recops_server.cli"], env=env, capture_output=True, text=True,
                          timeout=60)
    doc = json.loads(proc.stderr.strip().splitlines()[-1])
    message = str(doc["message"]).replace(str(tmp_path), "<tmp>")
    OBSERVED[case.id] = Row("recops-serve (start)", ", ".join(f"{k}={v!r}" for k, v in case.env.items()),
                            f"process exit {proc.returncode} ({doc['reason']})", message)
    assert proc.returncode == 2, proc.stderr
    check_clear(case.id, message, case.names, needs_hint=False)
    # nothing lost: the server already running keeps answering
    url, baseline = server
    assert httpx.get(url + VALID, timeout=10).json() == baseline


# ---------------------------------------------------------------------------------------------- job programs

@dataclass(frozen=True)
class JobCase:
    id: str
    program: str
    config: Any  # a dict (sent as JSON) or raw text
    names: str


FEATURES = {"sources": {"events": {"uri": "events"}}, "window": {"lastDays": 7}, "output": {"uri": "out"}}
TRAIN = {"runKey": "k1", "snapshot": {"uri": "snapshot"}, "algorithm": {"name": "ease"},
         "mlflow": {"registeredModelName": "shop-recommender"}}
DRIFT = {"reference": {"profileUri": "profile.json"}, "current": {"payloadLogs": {"uri": "payloads"}},
         "report": {"path": "out/report.html"}}

JOBS = [
    JobCase("features-unknown-key", "recops-features", {**FEATURES, "windw": {"lastDays": 7}}, "windw"),
    JobCase("features-window-both-ways", "recops-features",
            {**FEATURES, "window": {"lastDays": 7, "start": "2026-01-01", "end": "2026-01-02"}}, "window"),
    JobCase("features-null-fraction-above-one", "recops-features",
            {**FEATURES, "quality": {"maxNullFraction": [{"table": "items", "max": "1.5"}]}},
            "quality.maxNullFraction.0.max"),
    JobCase("features-event-age-words", "recops-features", {**FEATURES, "quality": {"maxEventAge": "two days"}},
            "quality.maxEventAge"),
    JobCase("features-config-not-json", "recops-features", "{sources: 1", "--config"),
    JobCase("train-negative-k", "recops-train", {**TRAIN, "evaluation": {"ks": [-5]}}, "evaluation.ks"),
    JobCase("train-metric-not-computed", "recops-train",
            {**TRAIN, "evaluation": {"ks": [5, 10]}, "promotion": {"metric": "ndcg_at_50"}}, "promotion.metric"),
    JobCase("train-unknown-param", "recops-train", {**TRAIN, "algorithm": {"name": "ease", "params": {"factors": 64}}},
            "algorithm.params.factors"),
    JobCase("train-negative-margin", "recops-train", {**TRAIN, "promotion": {"margin": "-0.1"}}, "promotion.margin"),
    JobCase("drift-share-above-one", "recops-drift", {**DRIFT, "driftShare": "1.5"}, "driftShare"),
    JobCase("drift-two-references", "recops-drift",
            {**DRIFT, "reference": {"profileUri": "profile.json", "snapshotUri": "snapshot"}}, "reference"),
    JobCase("drift-threshold-float", "recops-drift", {**DRIFT, "features": [{"name": "price", "threshold": 0.2}]},
            "features[0].threshold"),
]


@dataclass(frozen=True)
class JobOutcome:
    code: int
    stderr_message: str
    result: dict[str, Any]
    files_before: dict[str, bytes]
    files_after: dict[str, bytes]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _run_job(case: JobCase, work: Path) -> JobOutcome:
    """One run with the working directory as its world: an existing output (a published `latest.json`)."""
    (work / "out").mkdir(parents=True)
    (work / "out" / "latest.json").write_text('{"version": "previous"}\n')
    before = _files(work)
    config = case.config if isinstance(case.config, str) else json.dumps(case.config)
    result_file = work.parent / f"{work.name}.result.json"
    env = {**os.environ, "MLFLOW_TRACKING_URI": UNREACHABLE, "OPENBLAS_NUM_THREADS": "1"}
    env.pop("RECOPS_RESULT_FILE", None)
    proc = subprocess.run([str(BIN / case.program), "run", "--config", "-", "--result-file", str(result_file)],
                          input=config, capture_output=True, text=True, cwd=work, env=env, timeout=120)
    errors = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    errors = [e for e in errors if e.get("level") == "error"]
    line = errors[-1] if errors else {}
    return JobOutcome(proc.returncode, str(line.get("message") or line.get("error") or proc.stderr),
                      json.loads(result_file.read_text()), before, _files(work))


@pytest.fixture(scope="module")
def job_outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, JobOutcome]:
    root = tmp_path_factory.mktemp("jobs")
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {case.id: pool.submit(_run_job, case, root / case.id) for case in JOBS}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("case", JOBS, ids=lambda c: c.id)
def test_bad_job_config_exits_2_with_a_clear_message(job_outcomes: dict[str, JobOutcome], case: JobCase) -> None:
    out = job_outcomes[case.id]
    shown = case.config if isinstance(case.config, str) else _describe_config(case)
    OBSERVED[case.id] = Row(f"{case.program} run", shown, f"job: exit {out.code} ({out.result.get('reason')})",
                            out.stderr_message)
    assert out.code == 2, f"exit {out.code}, expected 2 (invalid config: do not retry): {out.stderr_message}"
    assert out.result["ok"] is False and out.result["message"] == out.stderr_message
    check_clear(case.id, out.stderr_message, case.names, needs_hint=False)
    # nothing lost: the published output is untouched and nothing new was written
    assert out.files_after == out.files_before


def _describe_config(case: JobCase) -> str:
    base = {"recops-features": FEATURES, "recops-train": TRAIN, "recops-drift": DRIFT}[case.program]
    diff = {k: v for k, v in case.config.items() if base.get(k) != v}
    return json.dumps(diff, separators=(", ", ": "))


# ---------------------------------------------------------------------------------------------- the document

ALL_IDS = [c.id for c in MANIFESTS] + [c.id for c in SPECS] + [c.id for c in REQUESTS] + \
    [c.id for c in STARTUPS] + [c.id for c in JOBS]


def _cell(text: str) -> str:
    """Markdown table cell: code spans per line (exact text), pipes escaped, lines joined with <br>."""
    def span(line: str) -> str:
        line = line.replace("|", "\\|")
        return f"`` {line} ``" if "`" in line else f"`{line}`"
    return "<br>".join(span(line) for line in text.splitlines() if line.strip()) or "(empty)"


def render() -> str:
    numbers = {case_id: n for n, case_id in enumerate(ALL_IDS, start=1)}
    lines = [
        "# Bad input: what the user sees",
        "",
        "Each row was observed against the real component that catches it: the lab's kube-apiserver with the",
        "generated CRDs (`kubectl apply`, create and update), the operator as a subprocess (the condition",
        "message from `kubectl get -o json`), the model server process with a small model (the error body's",
        "`message`), and the job programs (`run --config -`: the error line on stderr, exit code 2). Every row",
        "also checks that nothing was lost: a refused object is not stored, a refused update leaves the stored",
        "object unchanged, a refused spec starts no workload, the server keeps answering valid requests the",
        "same way, a refused job writes nothing. More schema cases (asserted to name their field) are in",
        "`tests/integration/operator/test_api_server.py` (`INVALID`, `test_trainingrun_spec_is_immutable`).",
        "",
        f"{len(ALL_IDS)} rows.",
        "",
        "| # | surface | input | caught by | message |",
        "|---|---|---|---|---|",
    ]
    for case_id in ALL_IDS:
        row = OBSERVED[case_id]
        lines.append(f"| {numbers[case_id]} | {row.surface} | {_cell(row.input)} | {row.caught_by} | "
                     f"{_cell(row.message)} |")
    lines += ["", "## Accepted although invalid (gaps)", ""]
    if GAPS:
        lines += ["The API server stores these; what happens next was observed with the operator running.", "",
                  "| surface | input | what happens | caught later by | proposed |", "|---|---|---|---|---|"]
    else:
        lines += ["None: every input above is refused at admission or surfaced as a condition."]
    for gap in GAPS:
        later = f"row {numbers[gap.later]}" if gap.later else "nothing: the user is not told"
        lines.append(f"| {KINDS[gap.example]} (create) | {_cell(_describe(gap.bad))} | "
                     f"{_cell(GAP_OBSERVED[gap.id])} | {later} | {_cell(gap.fix)} |")
    lines += ["", "## Messages that fail the clarity check (findings)", "",
              "A row's message must name its field; manifest and condition rows must also say what to do.", "",
              "| # | where the message comes from | proposed |", "|---|---|---|"]
    for case_id, (source, proposal) in sorted(UNCLEAR.items(), key=lambda item: numbers[item[0]]):
        lines.append(f"| {numbers[case_id]} | {source.replace('|', '/')} | {_cell(proposal)} |")
    return "\n".join(lines) + "\n"


def test_doc_is_current() -> None:
    """The table in docs/reliability/bad-input.md is what the components said in this run (golden file)."""
    missing = [case_id for case_id in ALL_IDS if case_id not in OBSERVED]
    missing += [gap.id for gap in GAPS if gap.id not in GAP_OBSERVED]
    assert not missing, f"rows not observed in this run (run the whole file, see the failures above): {missing}"
    body = render()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    header = f"<!-- Generated by {THIS} on {stamp}. Do not edit: {UPDATE_HINT} -->\n"
    current = DOC.read_text() if DOC.exists() else ""
    if current.partition("\n")[2] == body:
        return
    if os.environ.get("RECOPS_UPDATE_DOCS") == "1":
        DOC.parent.mkdir(parents=True, exist_ok=True)
        DOC.write_text(header + body)
        return
    diff = "".join(list(difflib.unified_diff(current.partition("\n")[2].splitlines(True), body.splitlines(True),
                                             str(DOC), "observed"))[:60])
    pytest.fail(f"{DOC.relative_to(ROOT)} is stale: {UPDATE_HINT}\n{diff}")

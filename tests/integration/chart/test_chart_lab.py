"""The chart on the real control plane: install, server-side validation, the operator running with the chart's
own ServiceAccount token (zero 403s), its permission list against a reviewed golden file, the persona roles,
and Pod Security `restricted` admission for every pod template (the chart's and the operator-built ones)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartrelease import Release, write_token_kubeconfig
from fixtures.kube import ROOT, Kubectl
from fixtures.operator import OperatorProcess, run_operator, wait_for
from unit.chart.chartlib import ALL_FEATURES, CHART, pod_specs
from unit.chart.children import built_children

pytestmark = [pytest.mark.integration, pytest.mark.lab("k8s")]

GOLDEN = Path(__file__).parent / "golden" / "operator-permissions.txt"
KINDS = ("featurepipelines", "trainingruns", "recommenderdeployments", "driftmonitors")
SECRETS = {"clickstream-s3": {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"},
           "profiles-db": {"dsn": "postgresql://u:p@127.0.0.1:1/db"}}
DENIED = re.compile(r"\b403\b|forbidden|Not enough permissions", re.IGNORECASE)


def test_release_is_deployed_and_available(release: Release) -> None:
    status = json.loads(release.helm("status", release.name, "-n", release.namespace, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    admin = Kubectl(release.lab.kubectl, release.lab.env, release.namespace)
    deploy = admin.get_json("deployment", f"{release.name}-operator")
    assert deploy["status"].get("availableReplicas") == 1  # kwok runs the pod on a fake node
    kinds = {line.split("/")[0] for line in admin.run("get", "sa,svc,deploy,cm,networkpolicy,servicemonitor,"
                                                             "prometheusrule", "-o", "name").stdout.split()}
    assert {"serviceaccount", "service", "deployment.apps", "configmap", "networkpolicy.networking.k8s.io",
            "servicemonitor.monitoring.coreos.com", "prometheusrule.monitoring.coreos.com"} <= kinds


def test_every_rendered_object_passes_server_side_validation(release: Release) -> None:
    rendered = release.helm("template", "dryrun", str(CHART), "--namespace", release.namespace,
                            *[a for s in ALL_FEATURES for a in ("--set", s)],
                            "--set", "rbac.personaPrefix=dryrun-").stdout
    admin = Kubectl(release.lab.kubectl, release.lab.env, release.namespace)
    proc = admin.run("apply", "--dry-run=server", "--server-side", "--force-conflicts", "-f", "-",
                     stdin=rendered, namespaced=False)
    assert "Warning" not in proc.stderr, proc.stderr
    assert proc.stdout.count("(server dry run)") == len([d for d in yaml.safe_load_all(rendered) if d])


# -- the operator with the chart's ServiceAccount -----------------------------------------------------------------

@pytest.fixture
def sa_operator(release: Release, tmp_path: Path) -> Iterator[OperatorProcess]:
    kubeconfig = write_token_kubeconfig(release, tmp_path / "sa.kubeconfig")
    yield from run_operator({**release.lab.env, "KUBECONFIG": str(kubeconfig)}, tmp_path)


def _apply_examples(k: Kubectl) -> list[dict[str, Any]]:
    for name, data in SECRETS.items():
        k.run("create", "secret", "generic", name, *[f"--from-literal={a}={b}" for a, b in data.items()])
    docs = []
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        doc["metadata"]["namespace"] = k.namespace
        if "generateName" in doc["metadata"]:
            doc["metadata"]["name"] = doc["metadata"].pop("generateName") + "x"
        k.run("create", "-f", "-", stdin=yaml.safe_dump(doc))
        docs.append(doc)
    return docs


def test_operator_with_the_charts_service_account(namespace: Kubectl, sa_operator: OperatorProcess) -> None:
    docs = _apply_examples(namespace)
    for doc in docs:
        kind, name = doc["kind"].lower(), doc["metadata"]["name"]

        def reconciled(kind: str = kind, name: str = name) -> bool:
            obj = namespace.get_json(kind, name)
            return bool((obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]
                        and "recops.dev/finalizer" in (obj["metadata"].get("finalizers") or []))

        wait_for(reconciled, 90, f"{kind}/{name} reconciled by the operator running as the chart's ServiceAccount")
    # Children the operator applied with those permissions, and a few resync cycles (RECOPS_RESYNC_SECONDS=3).
    wait_for(lambda: namespace.run("get", "cronjob", "shop-features-features", check=False).returncode == 0, 30,
             "the FeaturePipeline's CronJob")
    assert namespace.run("get", "events", "-o", "name").stdout.strip(), "no Event was posted"
    time.sleep(10)
    for doc in docs:  # deletion exercises the finalizer removal (a patch) too
        namespace.run("delete", doc["kind"].lower(), doc["metadata"]["name"], "--timeout=60s")
    log = sa_operator.logs()
    # A 403 with reason NamespaceTerminating is admission refusing writes into another test's namespace while it
    # is deleted (the operator watches every namespace), not a missing permission.
    denied = [line for line in log.splitlines() if DENIED.search(line) and "NamespaceTerminating" not in line]
    assert not denied, "\n".join(denied[:20])
    assert "Handler 'reconcile' succeeded" in log


# -- permissions ---------------------------------------------------------------------------------------------------

def permission_rows(k: Kubectl, user: str) -> list[tuple[str, list[str]]]:
    """(resource, verbs) rows of `kubectl auth can-i --list` (non-resource URLs dropped: they come from the
    built-in system:discovery and system:public-info-viewer roles every authenticated user has)."""
    out = k.run("auth", "can-i", "--list", f"--as={user}").stdout
    rows = []
    for line in out.splitlines()[1:]:
        match = re.match(r"^(\S+)\s+\[(.*?)\]\s+\[(.*?)\]\s+\[(.*?)\]\s*$", line)
        if match and match.group(2) == "":
            rows.append((match.group(1), match.group(4).split()))
    return rows


def golden_lines(rows: list[tuple[str, list[str]]]) -> list[str]:
    return sorted(f"{resource} {' '.join(sorted(verbs))}" for resource, verbs in rows)


def test_operator_permissions_match_the_reviewed_golden_file(release: Release, namespace: Kubectl) -> None:
    rows = permission_rows(namespace, release.sa_user)
    for resource, verbs in rows:
        assert "*" not in resource and "*" not in verbs, (resource, verbs)
        assert not {"escalate", "bind", "impersonate"} & set(verbs), (resource, verbs)
        if resource == "secrets":
            assert verbs == ["get"], verbs
    expected = [line for line in GOLDEN.read_text().splitlines() if line and not line.startswith("#")]
    assert golden_lines(rows) == expected, (
        "the operator's permissions changed; review and update the golden file:\n" + "\n".join(golden_lines(rows)))


PERSONAS = {"data-engineer": {"featurepipelines"}, "ml-scientist": {"trainingruns", "driftmonitors"},
            "platform-engineer": {"recommenderdeployments"}, "viewer": set()}


def _can(k: Kubectl, user: str, verb: str, resource: str, *extra: str) -> bool:
    proc = k.run("auth", "can-i", verb, resource, *extra, f"--as={user}", check=False)
    return proc.stdout.strip() == "yes"


def test_persona_roles_allow_and_deny_on_every_kind(release: Release, namespace: Kubectl) -> None:
    for persona in PERSONAS:
        namespace.run("create", "rolebinding", f"as-{persona}", f"--clusterrole={release.persona_prefix}{persona}",
                      f"--user={persona}@example.com")
    # The aggregation controller fills the persona roles in (kube-controller-manager).
    wait_for(lambda: all(_can(namespace, f"{p}@example.com", "list", "featurepipelines.recops.dev")
                         for p in PERSONAS), 60, "aggregated persona roles")
    failures = []
    for persona, owned in PERSONAS.items():
        user = f"{persona}@example.com"
        for kind in KINDS:
            for verb in ("get", "list", "watch", "create", "update", "patch", "delete"):
                expected = verb in ("get", "list", "watch") or kind in owned
                if _can(namespace, user, verb, f"{kind}.recops.dev") is not expected:
                    failures.append(f"{persona} {verb} {kind}: expected {expected}")
            if _can(namespace, user, "patch", f"{kind}.recops.dev", "--subresource=status"):
                failures.append(f"{persona} may patch {kind}/status (only the operator writes status)")
        if _can(namespace, user, "update", "recommenderdeployments.recops.dev", "--subresource=scale") is not (
                persona == "platform-engineer"):
            failures.append(f"{persona} scale")
        if _can(namespace, user, "get", "secrets"):
            failures.append(f"{persona} may read secrets")
        if _can(Kubectl(namespace.binary, namespace.env, "default"), user, "list", "featurepipelines.recops.dev"):
            failures.append(f"{persona}: a RoleBinding leaked outside its namespace")
    assert not failures, failures


def test_builtin_view_and_edit_include_the_recops_kinds(namespace: Kubectl) -> None:
    namespace.run("create", "rolebinding", "viewer", "--clusterrole=view", "--user=v@example.com")
    namespace.run("create", "rolebinding", "editor", "--clusterrole=edit", "--user=e@example.com")
    wait_for(lambda: _can(namespace, "v@example.com", "list", "driftmonitors.recops.dev"), 60, "view aggregation")
    for kind in KINDS:
        assert _can(namespace, "v@example.com", "get", f"{kind}.recops.dev")
        assert not _can(namespace, "v@example.com", "create", f"{kind}.recops.dev")
        assert _can(namespace, "e@example.com", "create", f"{kind}.recops.dev")
        assert _can(namespace, "e@example.com", "delete", f"{kind}.recops.dev")


# -- Pod Security ---------------------------------------------------------------------------------------------------

def _restricted(k: Kubectl) -> None:
    k.run("label", "namespace", k.namespace, "pod-security.kubernetes.io/enforce=restricted",
          "pod-security.kubernetes.io/warn=restricted", "pod-security.kubernetes.io/audit=restricted",
          namespaced=False)


def _create(k: Kubectl, obj: dict[str, Any]) -> None:
    proc = k.run("create", "-f", "-", stdin=json.dumps(obj), check=False)
    what = f"{obj['kind']}/{obj['metadata']['name']}"
    assert proc.returncode == 0, f"{what} rejected: {proc.stderr}"
    assert "Warning" not in proc.stderr, f"{what}: {proc.stderr}"


def _as_pods(objects: list[dict[str, Any]], namespace: str, prefix: str) -> list[dict[str, Any]]:
    pods = []
    for obj in objects:
        for i, (_, spec) in enumerate(pod_specs(obj)):
            pods.append({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": f"{prefix}-{obj['kind'].lower()}-{obj['metadata']['name']}-{i}"[:63]
                                      .rstrip("-"), "namespace": namespace},
                         "spec": spec})
    return pods


def test_chart_pod_templates_pass_restricted(release: Release, namespace: Kubectl) -> None:
    _restricted(namespace)
    rendered = release.helm("template", "psa", str(CHART), "--namespace", namespace.namespace).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    workloads = [d for d in docs if list(pod_specs(d))]
    assert [w["kind"] for w in workloads] == ["Deployment"]
    _create(namespace, next(d for d in docs if d["kind"] == "ServiceAccount"))
    for obj in workloads + _as_pods(workloads, namespace.namespace, "chart"):
        _create(namespace, obj)


def test_operator_built_pod_templates_pass_restricted(namespace: Kubectl) -> None:
    _restricted(namespace)
    children = built_children(namespace.namespace)
    workloads = [c for c in children if list(pod_specs(c))]
    assert {w["kind"] for w in workloads} == {"CronJob", "Job", "Deployment"}
    for obj in workloads:
        obj["metadata"].pop("ownerReferences", None)  # no owner exists here; keep the garbage collector away
    for obj in workloads + _as_pods(workloads, namespace.namespace, "op"):
        _create(namespace, obj)

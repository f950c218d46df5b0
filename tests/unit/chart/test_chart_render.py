"""The Helm chart renders, lints clean, rejects unknown values and follows the labelling and security rules."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartlib import ALL_FEATURES, CHART, ROOT, helm, pod_specs, render, render_text

RECOMMENDED = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
               "app.kubernetes.io/managed-by", "app.kubernetes.io/part-of", "helm.sh/chart")


def _by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.parametrize("sets", [(), ALL_FEATURES], ids=["defaults", "all-features"])
def test_helm_lint_is_clean(sets: tuple[str, ...]) -> None:
    args = ["lint", str(CHART), "--strict"] + [a for s in sets for a in ("--set", s)]
    out = helm(*args).stdout
    assert "[WARNING]" not in out and "[ERROR]" not in out, out


def test_default_render() -> None:
    kinds = sorted(d["kind"] for d in render())
    assert kinds == sorted(["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service",
                            "ConfigMap", "NetworkPolicy"] + ["ClusterRole"] * 9)


def test_values_schema_is_current() -> None:
    proc = subprocess.run([sys.executable, str(CHART / "hack" / "gen_schema.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_schema_rejects_unknown_keys_everywhere() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(node: dict[str, Any], path: str) -> None:
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path} accepts unknown keys"
            for key, child in node["properties"].items():
                walk(child, f"{path}.{key}")

    walk(schema, "")


@pytest.mark.parametrize("bad", ["bogus=1", "operator.bogus=1", "operator.image.tagg=x", "crds.instal=true",
                                 "metrics.serviceMonitor.intervall=1m", "operator.replicas=2",
                                 "operator.backends={kubernetes,azure}", "operator.image.pullPolicy=Sometimes"])
def test_invalid_values_are_rejected(bad: str) -> None:
    proc = render_text(bad, check=False)
    assert proc.returncode != 0, f"--set {bad} was accepted"
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr


def test_every_object_has_the_recommended_labels() -> None:
    for doc in render(*ALL_FEATURES):
        labels = doc["metadata"].get("labels") or {}
        missing = [k for k in RECOMMENDED if k not in labels]
        assert not missing, f"{doc['kind']}/{doc['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_selectors_never_use_chart_or_version_labels() -> None:
    for doc in render(*ALL_FEATURES):
        spec = doc.get("spec") or {}
        selectors = [spec.get("selector")] if doc["kind"] in ("Service", "Deployment", "ServiceMonitor") else []
        for sel in selectors:
            labels = (sel or {}).get("matchLabels", sel) or {}
            assert labels, f"{doc['kind']} without a selector"
            assert not {"helm.sh/chart", "app.kubernetes.io/version"} & set(labels), (doc["kind"], labels)
        if doc["kind"] == "Deployment":
            template_labels = doc["spec"]["template"]["metadata"]["labels"]
            assert doc["spec"]["selector"]["matchLabels"].items() <= template_labels.items()


def test_operator_deployment() -> None:
    (deploy,) = _by_kind(render(), "Deployment")
    spec = deploy["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    (container,) = spec["template"]["spec"]["containers"]
    assert container["args"][:2] == ["operator", "--health-port=8081"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["RECOPS_METRICS_PORT"] == "9090" and env["RECOPS_BACKENDS"] == "kubernetes"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 9090, "health": 8081}
    probe = container["livenessProbe"]
    assert probe["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert container["image"] == "ghcr.io/recops/recops-operator:0.1.0"
    assert spec["template"]["spec"]["serviceAccountName"] == "recops-operator"


def test_values_reach_the_deployment() -> None:
    digest = "sha256:" + "a" * 64
    (deploy,) = _by_kind(render(f"operator.image.digest={digest}", "operator.backends={kubernetes,local}",
                                "operator.watchNamespaces={shop,ads}", "operator.metricsPort=9102"), "Deployment")
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"ghcr.io/recops/recops-operator@{digest}"
    assert "--namespace=shop" in container["args"] and "--namespace=ads" in container["args"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["RECOPS_BACKENDS"] == "kubernetes,local" and env["RECOPS_METRICS_PORT"] == "9102"


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The Pod Security `restricted` rules a pod spec breaks (the admission test in integration is the judge)."""
    out = []
    psc = pod.get("securityContext") or {}
    for c in pod.get("initContainers", []) + pod["containers"]:
        sc = c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{c['name']}: allowPrivilegeEscalation")
        if "ALL" not in (sc.get("capabilities") or {}).get("drop", []):
            out.append(f"{c['name']}: capabilities.drop ALL")
        if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
            out.append(f"{c['name']}: runAsNonRoot")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{c['name']}: seccompProfile")
        if sc.get("privileged") or (c.get("ports") and any(p.get("hostPort") for p in c["ports"])):
            out.append(f"{c['name']}: privileged/hostPort")
    if any("hostPath" in v for v in pod.get("volumes", [])):
        out.append("hostPath volume")
    return out


def test_chart_pods_meet_restricted() -> None:
    for doc in render(*ALL_FEATURES):
        for _, pod in pod_specs(doc):
            assert restricted_violations(pod) == []
            (container,) = pod["containers"]
            assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_crds_come_from_crds_dir_by_default() -> None:
    assert not _by_kind(render(), "CustomResourceDefinition")
    included = helm("template", "recops", str(CHART), "--include-crds").stdout
    assert len([d for d in yaml.safe_load_all(included) if d and d["kind"] == "CustomResourceDefinition"]) == 4


@pytest.mark.parametrize("keep", [True, False])
def test_crds_as_templates_match_the_generated_files(keep: bool) -> None:
    rendered = {d["metadata"]["name"]: d for d in
                _by_kind(render("crds.install=true", f"crds.keep={str(keep).lower()}"), "CustomResourceDefinition")}
    generated = {}
    for path in sorted((CHART / "crds").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        generated[doc["metadata"]["name"]] = doc
    assert rendered.keys() == generated.keys() and len(rendered) == 4
    for name, doc in rendered.items():
        assert doc["spec"] == generated[name]["spec"], f"{name}: the template changed the generated spec"
        annotations = doc["metadata"]["annotations"]
        assert annotations["argocd.argoproj.io/sync-wave"] == "-10"
        assert ("helm.sh/resource-policy" in annotations) is keep


def test_dashboard_configmap() -> None:
    (cm,) = [d for d in render() if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["recops.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "recops.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    for metric in ("recops_request_duration_seconds_bucket", "recops_requests_total", "recops_model_info",
                   "recops_drift_score", "recops_drift_detected", "recops_fallback_recommendations_total"):
        assert metric in exprs


def _exported_metric_names() -> set[str]:
    """Sample names the model server and the operator really export (so a panel never queries nothing)."""
    from prometheus_client import REGISTRY
    from recops import metrics  # noqa: F401  (registers the operator's metrics in the default registry)
    from recops_server.metrics import Metrics

    names: set[str] = set()
    registries = [Metrics().registry, REGISTRY]
    for registry in registries:
        for family in registry.collect():
            names.add(family.name)
            names.update({f"{family.name}{s}" for s in ("_total", "_bucket", "_count", "_sum", "_created")})
    return names


def test_dashboard_queries_only_exported_metrics() -> None:
    dashboard = json.loads((CHART / "dashboards" / "recops.json").read_text())
    text = json.dumps(dashboard)
    used = set(re.findall(r"\b(recops_[a-z_]+)", text))
    unknown = used - _exported_metric_names()
    assert not unknown, f"the dashboard queries metrics nobody exports: {sorted(unknown)}"


def test_operator_prometheus_rules_pass_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (`recops lab deps` installs Debian's prometheus)")
    (rule,) = _by_kind(render("metrics.prometheusRule.enabled=true"), "PrometheusRule")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert names == {"RecopsOperatorDown", "RecopsReconcileErrors", "RecopsOperatorRestarting",
                     "RecopsDriftChecksStale"}


def test_service_monitor_selects_the_metrics_service() -> None:
    docs = render("metrics.serviceMonitor.enabled=true")
    (monitor,) = _by_kind(docs, "ServiceMonitor")
    (service,) = _by_kind(docs, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"


def test_kind_config() -> None:
    config = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster" and [n["role"] for n in config["nodes"]] == ["control-plane", "worker"]

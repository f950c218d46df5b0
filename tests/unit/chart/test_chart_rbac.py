"""RBAC: least privilege for the operator (derived from what the builders create), aggregated persona roles."""

from __future__ import annotations

from typing import Any

import pytest
from chartlib import ALL_FEATURES, render
from children import PLURALS, built_children

FORBIDDEN_VERBS = {"escalate", "bind", "impersonate", "*"}
KINDS = ("featurepipelines", "trainingruns", "recommenderdeployments", "driftmonitors")


def _roles() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in render(*ALL_FEATURES) if d["kind"] in ("ClusterRole", "Role")}


def _allowed(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(group in r.get("apiGroups", []) and resource in r.get("resources", []) and verb in r["verbs"]
               for r in rules)


def test_no_wildcards_and_no_privilege_escalation_verbs() -> None:
    for name, role in _roles().items():
        for rule in role.get("rules") or []:
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert not any("*" in v for v in rule.get(field, [])), f"{name}: wildcard in {field}: {rule}"
            assert not FORBIDDEN_VERBS & set(rule["verbs"]), f"{name}: {rule}"
            assert "roles" not in rule["resources"] and "clusterroles" not in rule["resources"], name


def test_secrets_are_read_one_by_one_only() -> None:
    for name, role in _roles().items():
        for rule in role.get("rules") or []:
            if "secrets" in rule["resources"]:
                assert rule["verbs"] == ["get"], f"{name} may {rule['verbs']} secrets"


def test_operator_may_apply_every_child_the_builders_make() -> None:
    rules = _roles()["recops-operator"]["rules"]
    children = built_children()
    assert {c["kind"] for c in children} >= {"ConfigMap", "CronJob", "Job", "Deployment", "Service",
                                             "PodDisruptionBudget", "HorizontalPodAutoscaler", "ServiceMonitor",
                                             "PrometheusRule"}
    for child in children:
        group = child["apiVersion"].rpartition("/")[0]
        resource = PLURALS.get(child["kind"])
        assert resource, f"the builders make a {child['kind']}: add it to the chart's ClusterRole and PLURALS"
        for verb in ("get", "create", "patch"):  # server-side apply = patch (+ create when absent)
            assert _allowed(rules, group, resource, verb), f"operator may not {verb} {group}/{resource}"


def test_operator_custom_object_access() -> None:
    rules = _roles()["recops-operator"]["rules"]
    for kind in KINDS:
        for verb in ("get", "list", "watch", "patch"):
            assert _allowed(rules, "recops.dev", kind, verb)
        assert _allowed(rules, "recops.dev", f"{kind}/status", "patch")
        assert not _allowed(rules, "recops.dev", kind, "delete") and not _allowed(rules, "recops.dev", kind, "update")
    assert _allowed(rules, "recops.dev", "trainingruns", "create")  # a DriftMonitor's retraining run
    assert not any(_allowed(rules, "recops.dev", k, "create") for k in KINDS if k != "trainingruns")


PERSONAS = {"data-engineer": {"featurepipelines"}, "ml-scientist": {"trainingruns", "driftmonitors"},
            "platform-engineer": {"recommenderdeployments"}, "viewer": set()}


@pytest.mark.parametrize("persona", sorted(PERSONAS))
def test_persona_roles_aggregate_their_building_blocks(persona: str) -> None:
    roles = _roles()
    role = roles[f"recops-{persona}"]
    (selector,) = role["aggregationRule"]["clusterRoleSelectors"]
    members = [r for r in roles.values()
               if selector["matchLabels"].items() <= (r["metadata"].get("labels") or {}).items()]
    rules = [rule for r in members for rule in r["rules"]]
    for kind in KINDS:
        for verb in ("get", "list", "watch"):
            assert _allowed(rules, "recops.dev", kind, verb), (persona, kind, verb)
        for verb in ("create", "update", "patch", "delete"):
            assert _allowed(rules, "recops.dev", kind, verb) is (kind in PERSONAS[persona]), (persona, kind, verb)
        assert not _allowed(rules, "recops.dev", f"{kind}/status", "patch"), "only the operator writes status"
    can_scale = _allowed(rules, "recops.dev", "recommenderdeployments/scale", "update")
    assert can_scale is (persona == "platform-engineer")


def test_recops_kinds_aggregate_into_builtin_view_edit_admin() -> None:
    roles = _roles()
    view = [r for r in roles.values() if (r["metadata"]["labels"]).get("rbac.authorization.k8s.io/aggregate-to-view")]
    edit = [r for r in roles.values() if (r["metadata"]["labels"]).get("rbac.authorization.k8s.io/aggregate-to-edit")]
    assert [r["metadata"]["name"] for r in view] == ["recops-read"]
    assert {k for r in edit for rule in r["rules"] for k in rule["resources"]} >= set(KINDS)
    assert all(r["metadata"]["labels"].get("rbac.authorization.k8s.io/aggregate-to-admin") for r in edit)


def test_persona_prefix_is_configurable() -> None:
    names = {d["metadata"]["name"] for d in render("rbac.personaPrefix=acme-recops-") if d["kind"] == "ClusterRole"}
    assert {"acme-recops-viewer", "acme-recops-data-engineer", "acme-recops-read"} <= names
    assert not {d["kind"] for d in render("rbac.personas=false", "rbac.create=false")} & {"ClusterRole",
                                                                                         "ClusterRoleBinding"}

"""Builders shared by the kinds: names, labels, owner references, pod security, job pods."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from recops.api import API_VERSION, GROUP
from recops.api.base import ResourceRequirements

MANAGED_BY = "recops-operator"


@dataclass(frozen=True)
class Owner:
    """The custom object that owns children: what builders need of its metadata."""

    kind: str
    name: str
    namespace: str
    uid: str
    generation: int = 1
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_body(cls, kind: str, body: Mapping[str, Any]) -> Owner:
        meta = body["metadata"]
        return cls(kind=kind, name=meta["name"], namespace=meta.get("namespace", "default"), uid=meta["uid"],
                   generation=int(meta.get("generation", 1)), labels=dict(meta.get("labels") or {}))


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": owner.kind, "name": owner.name, "uid": owner.uid,
            "controller": True, "blockOwnerDeletion": True}


def selector_labels(owner: Owner, component: str) -> dict[str, str]:
    """Labels that select a child's pods: stable across upgrades, never the chart or version."""
    return {"app.kubernetes.io/name": component, "app.kubernetes.io/instance": owner.name,
            f"{GROUP}/{owner.kind.lower()}": owner.name}


def child_labels(owner: Owner, component: str) -> dict[str, str]:
    return {**selector_labels(owner, component), "app.kubernetes.io/managed-by": MANAGED_BY,
            "app.kubernetes.io/part-of": "recops"}


def child_meta(owner: Owner, name: str, component: str, annotations: Mapping[str, str] | None = None
               ) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": owner.namespace,
                            "labels": child_labels(owner, component),
                            "ownerReferences": [owner_reference(owner)]}
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def dns_name(*parts: str, limit: int = 63) -> str:
    """A DNS label from parts; long names keep a hash suffix so they stay unique."""
    name = "-".join(p for p in parts if p).lower()
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-')}-{digest}"


def config_digest(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


# Pod Security "restricted": non-root, no privilege escalation, all capabilities dropped, RuntimeDefault seccomp.
POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def resources(spec: ResourceRequirements) -> dict[str, Any]:
    requests = {"cpu": spec.cpu_request, "memory": spec.memory_request}
    limits: dict[str, str] = {"memory": spec.memory_limit}
    if spec.cpu_limit:
        limits["cpu"] = spec.cpu_limit
    return {"requests": requests, "limits": limits}


@dataclass(frozen=True)
class SecretEnv:
    """An environment variable taken from a Secret key: how credentials reach a workload."""

    env: str
    secret: str
    key: str

    def as_env_var(self) -> dict[str, Any]:
        return {"name": self.env, "valueFrom": {"secretKeyRef": {"name": self.secret, "key": self.key}}}


CONFIG_MOUNT = "/etc/recops"
CONFIG_FILE = f"{CONFIG_MOUNT}/config.json"


def job_pod_spec(
    *,
    image: str,
    command: list[str],
    plain_env: Mapping[str, str],
    secret_env: list[SecretEnv],
    config_map: str,
    resource_spec: ResourceRequirements,
) -> dict[str, Any]:
    """A restricted pod running one job program with its config mounted read-only."""
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(plain_env.items())]
    env += [s.as_env_var() for s in secret_env]
    return {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": POD_SECURITY_CONTEXT,
        "containers": [{
            "name": "job",
            "image": image,
            "command": command,
            "env": env,
            "resources": resources(resource_spec),
            "securityContext": CONTAINER_SECURITY_CONTEXT,
            "terminationMessagePolicy": "File",
            "volumeMounts": [{"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
                             {"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 (an emptyDir)
        }],
        "volumes": [{"name": "config", "configMap": {"name": config_map}},
                    {"name": "tmp", "emptyDir": {"sizeLimit": "4Gi"}}],
    }


# Exit codes 2 (invalid input) and 3 (a gate refused the result) are final: retrying cannot change them.
POD_FAILURE_POLICY: dict[str, Any] = {"rules": [
    {"action": "FailJob", "onExitCodes": {"containerName": "job", "operator": "In", "values": [2, 3]}},
]}


def config_map(owner: Owner, name: str, component: str, config: Mapping[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": child_meta(owner, name, component),
            "data": {"config.json": json.dumps(config, indent=2, sort_keys=True)}}


def s3_env(endpoint_url: str | None, region: str) -> dict[str, str]:
    env = {"AWS_REGION": region, "AWS_DEFAULT_REGION": region}
    if endpoint_url:
        env["AWS_ENDPOINT_URL_S3"] = endpoint_url
    return env

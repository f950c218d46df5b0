"""The thin Kubernetes edge: apply, read and delete objects; read Secret keys. No decisions here."""

from __future__ import annotations

import base64
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ConflictError, NotFoundError, ResourceNotFoundError

from recops.faults import crash_point

FIELD_MANAGER = "recops-operator"
log = logging.getLogger("recops.kube")
_lock = threading.Lock()


@functools.cache
def api_client() -> client.ApiClient:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


@functools.cache
def dynamic() -> DynamicClient:
    with _lock:
        return DynamicClient(api_client())


def _resource(api_version: str, kind: str) -> Any:
    return dynamic().resources.get(api_version=api_version, kind=kind)


_kind_cache: dict[tuple[str, str], tuple[float, bool]] = {}


def has_kind(api_version: str, kind: str, ttl: float = 60.0) -> bool:
    """Whether the cluster serves this kind (e.g. prometheus-operator's ServiceMonitor); cached briefly."""
    key = (api_version, kind)
    cached = _kind_cache.get(key)
    if cached and time.monotonic() - cached[0] < ttl:
        return cached[1]
    try:
        _resource(api_version, kind)
        found = True
    except ResourceNotFoundError:
        # Re-discover next time: the CRD (e.g. prometheus-operator's) may be installed later.
        invalidate = getattr(dynamic().resources, "invalidate_cache", None)
        if invalidate is not None:
            invalidate()
        found = False
    _kind_cache[key] = (time.monotonic(), found)
    return found


def apply(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Server-side apply as the operator's field manager: creates, updates and restores edited fields."""
    resource = _resource(obj["apiVersion"], obj["kind"])
    meta = obj["metadata"]
    result = resource.server_side_apply(body=dict(obj), name=meta["name"], namespace=meta.get("namespace"),
                                        field_manager=FIELD_MANAGER, force_conflicts=True)
    crash_point("child-applied")
    return dict(result.to_dict())


def get(api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return dict(_resource(api_version, kind).get(name=name, namespace=namespace).to_dict())
    except NotFoundError:
        return None


def patch_status(api_version: str, kind: str, namespace: str, name: str, status: Mapping[str, Any]) -> None:
    """Merge-patch an object's status subresource (the resync's status write; kopf writes the handlers')."""
    _resource(api_version, kind).status.patch(name=name, namespace=namespace, body={"status": dict(status)},
                                              content_type="application/merge-patch+json")


def list_objects(api_version: str, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
    items = _resource(api_version, kind).get(namespace=namespace, label_selector=label_selector).items
    return [dict(i.to_dict()) for i in items]


def delete(api_version: str, kind: str, namespace: str, name: str) -> None:
    with contextlib.suppress(NotFoundError):
        _resource(api_version, kind).delete(name=name, namespace=namespace, body={"propagationPolicy": "Background"})


def secret_keys(namespace: str, name: str) -> frozenset[str] | None:
    """The keys of a Secret (never its values), or None when it does not exist."""
    try:
        secret = client.CoreV1Api(api_client()).read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return frozenset((secret.data or {}).keys())


def secret_value(namespace: str, name: str, key: str) -> str | None:
    """One Secret value, for the local backend's process environment only; never log it."""
    try:
        secret = client.CoreV1Api(api_client()).read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    raw = (secret.data or {}).get(key)
    return base64.b64decode(raw).decode() if raw is not None else None


def pod_termination_messages(namespace: str, label_selector: str) -> list[tuple[str, str, str]]:
    """(pod name, phase, termination message) of the pods matching a selector, newest first."""
    pods = client.CoreV1Api(api_client()).list_namespaced_pod(namespace, label_selector=label_selector).items
    pods.sort(key=lambda p: p.metadata.creation_timestamp, reverse=True)
    out = []
    for pod in pods:
        message = ""
        for cs in pod.status.container_statuses or []:
            term = cs.state.terminated if cs.state else None
            if term and term.message:
                message = term.message
        out.append((pod.metadata.name, pod.status.phase or "", message))
    return out


def patch_annotations(api_version: str, kind: str, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
    """Set annotations under recops.dev/ on an object (never its spec: GitOps-safe)."""
    _resource(api_version, kind).patch(name=name, namespace=namespace, body={"metadata": {"annotations":
                                       dict(annotations)}}, content_type="application/merge-patch+json")


def create_if_absent(obj: Mapping[str, Any]) -> bool:
    """Create an object; an existing one with the same name is left alone (idempotent)."""
    try:
        _resource(obj["apiVersion"], obj["kind"]).create(body=dict(obj), namespace=obj["metadata"]["namespace"])
        crash_point("object-created")
        return True
    except ConflictError:
        return False

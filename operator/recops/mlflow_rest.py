"""A thin read-only MLflow REST edge for the operator: reachability and alias -> version.

The operator does not import mlflow (heavy); the job programs and the server do.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class MLflowUnavailable(Exception):
    pass


def _get(base: str, path: str, params: dict[str, str], timeout: float, token: str | None = None) -> dict[str, Any]:
    url = f"{base.rstrip('/')}{path}?{urllib.parse.urlencode(params)}" if params else f"{base.rstrip('/')}{path}"
    request = urllib.request.Request(url)  # noqa: S310 (the spec's pattern allows http(s) only)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 (the spec's pattern allows http(s) only)
            body = resp.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return {}
        raise MLflowUnavailable(f"MLflow at {base} answered {exc.code} for {path}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise MLflowUnavailable(f"MLflow at {base} is unreachable: {getattr(exc, 'reason', exc)}") from exc
    return dict(json.loads(body or b"{}"))


def check(base: str, timeout: float) -> None:
    """Raise MLflowUnavailable unless the tracking server answers /health."""
    try:
        with urllib.request.urlopen(f"{base.rstrip('/')}/health", timeout=timeout):  # noqa: S310
            return
    except (urllib.error.URLError, OSError) as exc:
        raise MLflowUnavailable(f"MLflow at {base} is unreachable: {getattr(exc, 'reason', exc)}") from exc


def version_for_alias(base: str, name: str, alias: str, timeout: float, token: str | None = None) -> str | None:
    """The version an alias points to, or None when the model or alias does not exist (yet)."""
    body = _get(base, "/api/2.0/mlflow/registered-models/alias", {"name": name, "alias": alias}, timeout, token)
    version = (body.get("model_version") or {}).get("version")
    return str(version) if version else None


def version_exists(base: str, name: str, version: str, timeout: float, token: str | None = None) -> bool:
    body = _get(base, "/api/2.0/mlflow/model-versions/get", {"name": name, "version": version}, timeout, token)
    return bool(body.get("model_version"))

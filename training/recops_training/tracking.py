"""MLflow helpers: reachability, experiment, idempotent run/version lookup, promotion decision."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from .errors import DependencyUnavailable

RUN_KEY_TAG = "recops.runKey"
_CONN_HINTS = (
    "max retries exceeded",
    "connection refused",
    "failed to establish a new connection",
    "name or service not known",
    "temporary failure in name resolution",
    "read timed out",
    "connection aborted",
    "remote end closed connection",
    "api request to",
)


def tune_client_env() -> None:
    """Bound MLflow's own HTTP retries so an unreachable server fails in seconds, not minutes."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", "")


def check_reachable(uri: str | None = None, timeout: float = 5.0, attempts: int = 3) -> None:
    """GET ``<uri>/health`` (http/https URIs only); raise ``DependencyUnavailable`` when nothing answers."""
    uri = uri if uri is not None else tracking_uri()
    if not uri:
        raise DependencyUnavailable(
            "MLFLOW_TRACKING_URI is not set: the job needs an MLflow tracking server", reason="MlflowNotConfigured"
        )
    if not uri.startswith(("http://", "https://")):
        return
    req = urllib.request.Request(uri.rstrip("/") + "/health")  # noqa: S310 - http(s) only, checked above
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    last: Exception | None = None
    for i in range(attempts):
        try:
            with urllib.request.urlopen(req, timeout=timeout):  # noqa: S310 - http(s) only, checked above
                return
        except urllib.error.HTTPError:
            return  # something answered: reachable (auth or path problems surface later with a clear error)
        except (urllib.error.URLError, OSError) as exc:
            last = exc
            if i + 1 < attempts:
                time.sleep(1.0 * (i + 1))
    raise DependencyUnavailable(
        f"MLflow tracking server at {_redact(uri)} was unreachable ({last}); retry when it is up",
        reason="MlflowUnavailable",
    )


def _redact(uri: str) -> str:
    # never print credentials embedded in a URI
    if "@" in uri and "://" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return uri


def is_connection_error(exc: BaseException) -> bool:
    try:
        import requests

        if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
            return True
    except ImportError:  # pragma: no cover
        pass
    text = str(exc).lower()
    return any(h in text for h in _CONN_HINTS)


def ensure_experiment(client: Any, name: str) -> str:
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return str(exp.experiment_id)
    try:
        return str(client.create_experiment(name))
    except MlflowException:
        exp = client.get_experiment_by_name(name)  # created concurrently
        if exp is None:
            raise
        return str(exp.experiment_id)


def find_run(client: Any, experiment_id: str, run_key: str) -> Any | None:
    """The run carrying ``recops.runKey = run_key`` (the oldest one if a race created two)."""
    key = run_key.replace("'", "\\'")
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{RUN_KEY_TAG}` = '{key}'",
        order_by=["attributes.start_time ASC"],
        max_results=10,
    )
    return runs[0] if runs else None


def find_versions(client: Any, model_name: str, run_id: str) -> list[Any]:
    from mlflow.exceptions import MlflowException

    name = model_name.replace("'", "\\'")
    try:
        found = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")):
            return []
        raise
    return sorted(found, key=lambda v: int(v.version))


def champion_version(client: Any, model_name: str, alias: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        code = str(getattr(exc, "error_code", ""))
        if "RESOURCE_DOES_NOT_EXIST" in code or "INVALID_PARAMETER_VALUE" in code or "not found" in str(exc).lower():
            return None
        raise


def decide_promotion(
    *,
    policy: str,
    metric: str,
    value: float,
    baseline_value: float,
    champion: Mapping[str, Any] | None,
    margin: Decimal,
    relative: bool,
    this_version: str,
) -> tuple[bool, str, str]:
    """(promote, CamelCase reason, sentence). ``champion``: {version, value (float|None), snapshotVersion}."""
    if champion is not None and str(champion.get("version")) == str(this_version):
        return True, "AlreadyChampion", f"version {this_version} already holds the alias (rerun)"
    if policy == "never":
        return False, "PolicyNever", "promotion.policy is 'never': the version was registered, the alias was left alone"
    if policy == "always":
        return True, "PolicyAlways", "promotion.policy is 'always': the alias was moved without comparison"
    if not value > baseline_value:
        return (
            False,
            "WorseThanBaseline",
            f"{metric} {value:.4f} does not beat the popularity baseline {baseline_value:.4f}",
        )
    if champion is None:
        return (
            True,
            "NoChampion",
            f"{metric} {value:.4f} beats the popularity baseline {baseline_value:.4f} and there was no champion yet",
        )
    cv = champion.get("value")
    if cv is None:
        return (
            True,
            "ChampionNotComparable",
            f"champion version {champion.get('version')} has no metric {metric}; {metric} {value:.4f} "
            "beats the baseline "
            f"{baseline_value:.4f}",
        )
    cv = float(cv)
    need = Decimal(str(cv)) * (1 + margin / 100) if relative else Decimal(str(cv)) + margin
    margin_text = f"{margin}%" if relative else str(margin)
    if Decimal(str(value)) > Decimal(str(cv)) and Decimal(str(value)) >= need:
        return (
            True,
            "BeatChampion",
            f"{metric} {value:.4f} beats champion version {champion.get('version')} ({cv:.4f}) by at least margin "
            f"{margin_text} and the popularity baseline {baseline_value:.4f}",
        )
    return (
        False,
        "NotBetterThanChampion",
        f"{metric} {value:.4f} does not beat champion version {champion.get('version')} ({cv:.4f}) by margin "
        f"{margin_text} (needs {float(need):.4f})",
    )

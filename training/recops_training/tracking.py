"""MLflow helpers: reachability, experiment, idempotent run/version lookup, loading a registered version."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .errors import ChampionUnavailable, DependencyUnavailable

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
            "MLFLOW_TRACKING_URI is not set: the job needs an MLflow tracking server", reason="MLflowNotConfigured"
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
        reason="MLflowUnavailable",
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


def load_mlflow_model_dir(local: Path) -> Any:
    """The ``recops_model.RecModel`` inside a downloaded MLflow model directory, read as the model server
    reads it: the pyfunc artifact ``recops_model`` (path from MLmodel, kept inside ``local``) is verified
    against its manifest before anything is deserialised, and its digest must equal the one recorded in
    MLmodel at training. Raises ``ChampionUnavailable`` or ``recops_model.ModelRejected``."""
    from mlflow.models import Model
    from recops_model import MLFLOW_ARTIFACT_KEY, load_model

    try:
        mlmodel = Model.load(str(local))
        rel = mlmodel.flavors["python_function"]["artifacts"][MLFLOW_ARTIFACT_KEY]["path"]
    except Exception as exc:
        raise ChampionUnavailable(
            f"{local.name} is not a Recops model (MLmodel has no python_function artifact "
            f"{MLFLOW_ARTIFACT_KEY!r}): {str(exc)[:200]}",
            reason="NotARecopsModel",
        ) from exc
    target = (local / str(rel)).resolve()
    if not target.is_relative_to(local.resolve()):
        raise ChampionUnavailable(f"MLmodel artifact path {rel!r} points outside the model", reason="UnsafePath")
    model = load_model(target)
    recorded = (mlmodel.metadata or {}).get("recops_model_digest")
    if recorded and recorded != model.digest:
        raise ChampionUnavailable(
            f"manifest digest {model.digest} differs from the digest recorded at training ({recorded})",
            reason="DigestMismatch",
        )
    return model


def load_model_version(name: str, version: str, workdir: Path) -> Any:
    """Download registered model ``name`` version ``version`` into ``workdir`` and load it (see
    :func:`load_mlflow_model_dir`). A connection error propagates (the job retries later); anything else
    that keeps the version from being downloaded is ``ChampionUnavailable``."""
    import mlflow.artifacts

    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(workdir))
    except Exception as exc:
        if is_connection_error(exc):
            raise
        raise ChampionUnavailable(
            f"the artifacts of model {name} version {version} could not be downloaded: {str(exc)[:300]}",
            reason="ArtifactsUnavailable",
        ) from exc
    return load_mlflow_model_dir(Path(local))

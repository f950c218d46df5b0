"""Where the served model comes from, how a new version is verified and swapped in.

Sources:
- a local directory: a Recops model directory (``MANIFEST.json`` at its root) or an MLflow model
  directory holding one as its ``recops_model`` pyfunc artifact. Its version is its content digest,
  so replacing the directory (or repointing a symlink to it) is a new version.
- the MLflow registry: ``models:/<name>@<alias>`` (the alias is polled: moving it is a rollout) or
  ``models:/<name>/<version>`` (pinned). Artifacts are downloaded to a temporary directory, verified
  (``recops_model.load_model`` checks the manifest before it deserialises anything) and deleted.

A new version is swapped in atomically (one reference assignment) only after it loaded and verified.
A version that fails verification is refused for good (until the alias moves again) and the previous
version keeps serving; registry outages are retried at the next poll. MLflow is imported lazily, only
for ``models:/`` sources.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from recops_model import MANIFEST_FILE, MLFLOW_ARTIFACT_KEY, ModelRejected, RecModel, load_model, prepare

from .metrics import Metrics

log = logging.getLogger("recops_server.model")

_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>[0-9]+))/?$")


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A verified model ready to serve, with what responses and metrics report about it."""

    model: RecModel
    name: str
    version: str
    digest: str
    source: str
    loaded_at: float
    popularity_percentile: np.ndarray = field(repr=False)
    scoring: str = "float32"  # "int8+float32": the exact int8 first pass of recops_model (factors models)

    @classmethod
    def build(cls, model: RecModel, name: str, version: str, source: str) -> LoadedModel:
        scoring = prepare(model)  # before the swap: the first requests find every index built
        n = model.n_items
        pct = np.empty(n, dtype=np.float32)
        if n:
            pct[model.popularity_order] = 1.0 - np.arange(n, dtype=np.float32) / n
        return cls(model, name, version, model.digest or "", source, time.time(), pct, scoring)

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "digest": self.digest,
            "algorithm": self.model.algorithm,
            "kind": self.model.kind,
            "items": self.model.n_items,
            "users": self.model.n_users,
            "source": self.source,
            "scoring": self.scoring,
            "loadedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at)),
        }

    def ref(self) -> dict[str, str]:
        """The short model reference carried by every response."""
        return {"name": self.name, "version": self.version, "digest": self.digest}


class Source(Protocol):
    name: str
    uri: str

    def current_version(self) -> str: ...
    def fetch(self, version: str) -> LoadedModel: ...


def locate_model_dir(root: Path) -> Path:
    """The Recops model directory inside ``root``: ``root`` itself, or the ``recops_model`` artifact of the
    MLflow model at ``root`` (path read from its MLmodel file and kept inside ``root``)."""
    if (root / MANIFEST_FILE).is_file():
        return root
    mlmodel = root / "MLmodel"
    if mlmodel.is_file():
        import yaml

        try:
            conf = yaml.safe_load(mlmodel.read_text())
            rel = conf["flavors"]["python_function"]["artifacts"][MLFLOW_ARTIFACT_KEY]["path"]
        except (yaml.YAMLError, KeyError, TypeError) as exc:
            raise ModelRejected(
                "MissingFile", f"{mlmodel} has no python_function artifact {MLFLOW_ARTIFACT_KEY!r}: {exc}"
            ) from exc
        target = (root / str(rel)).resolve()
        if not target.is_relative_to(root.resolve()):
            raise ModelRejected("UnsafePath", f"MLmodel artifact path {rel!r} points outside the model directory")
        return target
    raise ModelRejected(
        "MissingFile",
        f"{root} is neither a Recops model directory ({MANIFEST_FILE}) nor an MLflow model (MLmodel)",
    )


def _mlmodel_digest(root: Path) -> str | None:
    """The digest training recorded in the MLflow model's metadata, if any."""
    mlmodel = root / "MLmodel"
    if not mlmodel.is_file():
        return None
    import yaml

    try:
        meta = (yaml.safe_load(mlmodel.read_text()) or {}).get("metadata") or {}
    except yaml.YAMLError:
        return None
    d = meta.get("recops_model_digest")
    return str(d) if d else None


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


class LocalSource:
    def __init__(self, path: str, name: str | None) -> None:
        self.uri = path
        self.path = Path(path)
        self.name = name or self.path.absolute().name or "model"

    def current_version(self) -> str:
        d = locate_model_dir(self.path)
        try:
            manifest = json.loads((d / MANIFEST_FILE).read_bytes())
            return _short(str(manifest["digest"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelRejected("InvalidManifest", f"{d / MANIFEST_FILE} has no readable 'digest': {exc}") from exc

    def fetch(self, version: str) -> LoadedModel:
        model = load_model(locate_model_dir(self.path))
        got = _short(model.digest or "")
        if got != version:  # replaced between the poll and the load: report what was really loaded
            version = got
        return LoadedModel.build(model, self.name, version, self.uri)


class RegistrySource:
    def __init__(self, uri: str, name: str | None, download_dir: str | None, pinned_version: str | None = None) -> None:
        m = _REGISTRY_URI.match(uri)
        if not m:
            raise ValueError(f"model_uri {uri!r} must be models:/<name>@<alias> or models:/<name>/<version>")
        self.uri = uri
        self.registered_name = m["name"]
        self.alias: str | None = m["alias"]
        self.pinned: str | None = pinned_version or m["version"]
        self.name = name or self.registered_name
        self.download_dir = download_dir

    def _client(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient()

    def current_version(self) -> str:
        if self.pinned is not None:
            return self.pinned
        mv = self._client().get_model_version_by_alias(self.registered_name, self.alias)
        return str(mv.version)

    def fetch(self, version: str) -> LoadedModel:
        import mlflow.artifacts

        tmp = Path(tempfile.mkdtemp(prefix="recops-dl-", dir=self.download_dir))
        try:
            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"models:/{self.registered_name}/{version}", dst_path=str(tmp)
                )
            )
            model = load_model(locate_model_dir(local))
            recorded = _mlmodel_digest(local)
            if recorded and recorded != model.digest:
                raise ModelRejected(
                    "DigestMismatch",
                    f"model version {version}: manifest digest {model.digest} differs from the digest "
                    f"recorded at training ({recorded})",
                )
            return LoadedModel.build(model, self.name, version, f"models:/{self.registered_name}/{version}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def make_source(
    uri: str, name: str | None = None, download_dir: str | None = None, version: str | None = None
) -> Source:
    """``version`` pins a registry version (overrides the alias of a models:/ URI)."""
    if not uri:
        raise ValueError("RECOPS_MODEL_URI is empty: set a model directory or models:/<name>@<alias>")
    if uri.startswith("models:/"):
        return RegistrySource(uri, name, download_dir, version)
    if "://" in uri and not uri.startswith("file://"):
        raise ValueError(f"model_uri {uri!r}: only local directories and models:/ URIs are supported")
    return LocalSource(uri.removeprefix("file://"), name)


@dataclass
class Attempt:
    """The outcome of the latest load attempt (shown by /readyz)."""

    result: str  # loaded | unchanged | refused | error
    version: str | None
    reason: str | None = None
    message: str | None = None
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "version": self.version,
            "reason": self.reason,
            "message": self.message,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at)),
        }


class ModelStore:
    """Holds the served model; ``refresh`` loads a new version when the source has one."""

    def __init__(self, source: Source, metrics: Metrics) -> None:
        self.source = source
        self.metrics = metrics
        self.current: LoadedModel | None = None
        self.last_attempt: Attempt | None = None
        self.refused: dict[str, Attempt] = {}
        self._lock = asyncio.Lock()

    def status(self) -> dict[str, Any]:
        return {
            "model": self.current.info() if self.current else None,
            "lastAttempt": self.last_attempt.to_dict() if self.last_attempt else None,
            "refusedVersions": [a.to_dict() for a in self.refused.values()],
        }

    async def refresh(self) -> Attempt:
        async with self._lock:
            attempt = await self._refresh()
            if attempt.result != "unchanged" or self.last_attempt is None:
                self.last_attempt = attempt
            return attempt

    async def _refresh(self) -> Attempt:
        name = self.source.name
        try:
            version = await asyncio.to_thread(self.source.current_version)
        except ModelRejected as exc:
            self.metrics.model_reloads.labels("refused").inc()
            log.warning("Refused model %s at %s: %s", name, self.source.uri, exc)
            return Attempt("refused", None, exc.reason, exc.message)
        except Exception as exc:
            self.metrics.model_reloads.labels("error").inc()
            log.warning("Could not resolve model %s at %s: %s", name, self.source.uri, exc)
            return Attempt("error", None, "SourceUnavailable", f"{type(exc).__name__}: {exc}"[:500])
        if self.current is not None and version == self.current.version:
            return Attempt("unchanged", version)
        if version in self.refused:
            return Attempt("unchanged", version, self.refused[version].reason, "this version was refused before")
        try:
            loaded = await asyncio.to_thread(self.source.fetch, version)
        except ModelRejected as exc:
            attempt = Attempt("refused", version, exc.reason, exc.message)
            self.refused[version] = attempt
            self.metrics.model_reloads.labels("refused").inc()
            self.metrics.model_refused.labels(name, version, exc.reason).set(1)
            log.error(
                "Refused model %s version %s (%s): %s; keeping the served version",
                name,
                version,
                exc.reason,
                exc.message,
            )
            return attempt
        except Exception as exc:
            self.metrics.model_reloads.labels("error").inc()
            log.warning("Could not load model %s version %s: %s", name, version, exc)
            return Attempt("error", version, "SourceUnavailable", f"{type(exc).__name__}: {exc}"[:500])
        old = self.current
        self.current = loaded  # the atomic swap: requests already running keep their reference
        if old is not None:
            with contextlib.suppress(KeyError):
                self.metrics.model_info.remove(old.name, old.version)
        self.metrics.model_info.labels(loaded.name, loaded.version).set(1)
        self.metrics.model_ready.set(1)
        self.metrics.model_loaded_timestamp.set(loaded.loaded_at)
        self.metrics.model_reloads.labels("loaded").inc()
        log.info(
            "Loaded model %s version %s (%s, %d items, %s scoring, digest %s)",
            loaded.name,
            loaded.version,
            loaded.model.algorithm,
            loaded.model.n_items,
            loaded.scoring,
            loaded.digest,
        )
        return Attempt("loaded", loaded.version)

    async def poll_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the poller die
                log.exception("Model poll failed")

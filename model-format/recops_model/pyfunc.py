"""The MLflow pyfunc face of a Recops model, defined with MLflow "models from code".

No class is pickled: MLflow stores *this file* as the model's code and runs it when the model is
loaded; the file ends with ``mlflow.models.set_model(RecopsPyfunc())``. The model's data is the
directory written by :func:`recops_model.save_model`, logged as the pyfunc artifact
``recops_model`` (``artifacts/<dir>/`` inside the MLflow model), and ``load_context`` reads it with
:func:`recops_model.load_model`, which verifies its manifest first. So ``mlflow models serve`` and
the Recops server serve the very same registered version.

Training logs a model with :func:`log_model` inside an active MLflow run::

    with mlflow.start_run():
        info = log_model(rec_model, "model", registered_model_name="recs")

Input of ``predict``: a DataFrame with a ``user_id`` column (params: ``k``, ``exclude_seen``,
``category``); output: a DataFrame with ``user_id``, ``item_ids``, ``scores``, ``fallback``.
"""

from __future__ import annotations

import inspect
import os
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import mlflow.models
import mlflow.pyfunc
from mlflow.pyfunc.model import PythonModel

from recops_model import (
    MLFLOW_ARTIFACT_KEY,
    RecModel,
    load_model,
    prepare,
    recommend_batch,
    save_model,
    verify_model_dir,
)

_THIS_FILE = Path(__file__).resolve()
_PACKAGE_DIR = _THIS_FILE.parent


class RecopsPyfunc(PythonModel):
    """Top-k recommendations from a verified Recops model directory."""

    def __init__(self) -> None:
        self._model: RecModel | None = None

    def load_context(self, context: Any) -> None:
        self._model = load_model(context.artifacts[MLFLOW_ARTIFACT_KEY])
        prepare(self._model)  # lookups and the int8 index now, not on the first request

    # No type hints on purpose: MLflow would try to derive a schema from them (the signature is explicit).
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        import pandas as pd

        if self._model is None:  # pragma: no cover - MLflow always calls load_context first
            self.load_context(context)
        assert self._model is not None
        params = params or {}
        k = int(params.get("k", 10))
        exclude_seen = bool(params.get("exclude_seen", True))
        category = params.get("category") or None
        if isinstance(model_input, pd.DataFrame):
            users = [None if u is None or u != u else str(u) for u in model_input["user_id"].tolist()]
        elif isinstance(model_input, dict):
            users = [str(u) for u in model_input["user_id"]]
        else:
            users = [str(u) for u in model_input]
        recs = recommend_batch(self._model, users, k, exclude_seen=exclude_seen, category=category)
        return pd.DataFrame(
            {
                "user_id": [r.user_id for r in recs],
                "item_ids": [r.item_ids for r in recs],
                "scores": [r.scores for r in recs],
                "fallback": [r.fallback for r in recs],
            }
        )


def _signature() -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", "user_id")]),
        params=ParamSchema(
            [
                ParamSpec("k", "long", 10),
                ParamSpec("exclude_seen", "boolean", True),
                ParamSpec("category", "string", ""),
            ]
        ),
    )


def _pyfunc_kwargs(
    model: RecModel, model_dir: Path, manifest: dict[str, Any], kwargs: dict[str, Any]
) -> dict[str, Any]:
    kwargs = dict(kwargs)
    kwargs.setdefault("pip_requirements", ["mlflow", "numpy", "scipy", "pandas"])
    kwargs.setdefault("signature", _signature())
    if "input_example" not in kwargs:
        import pandas as pd

        first = str(model.user_ids[0]) if model.n_users else "anonymous"
        kwargs["input_example"] = pd.DataFrame({"user_id": [first]})
    meta = dict(kwargs.pop("metadata", None) or {})
    # the server compares this with the downloaded manifest: a swapped artifact is refused
    meta["recops_model_digest"] = manifest["digest"]
    meta.setdefault("recops_algorithm", model.algorithm)
    meta.setdefault("recops_kind", model.kind)
    return {
        "python_model": str(_THIS_FILE),
        "artifacts": {MLFLOW_ARTIFACT_KEY: str(model_dir)},
        "code_paths": [str(_PACKAGE_DIR)],
        "metadata": meta,
        **kwargs,
    }


def log_model(
    model: RecModel,
    artifact_path: str = "model",
    *,
    registered_model_name: str | None = None,
    model_dir: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> Any:
    """Save ``model`` (or reuse an already saved ``model_dir``) and log it as a pyfunc model from code
    to the active MLflow run. Returns MLflow's ``ModelInfo`` (``.model_uri``,
    ``.registered_model_version``). Extra kwargs go to ``mlflow.pyfunc.log_model`` (e.g. ``metadata``,
    ``await_registration_for``). The MLflow model's metadata records ``recops_model_digest``."""
    with tempfile.TemporaryDirectory(prefix="recops-model-") as tmp:
        if model_dir is None:
            model_dir = Path(tmp) / "recops_model"
            manifest = save_model(model, model_dir)
        else:
            manifest = verify_model_dir(model_dir)
        params = inspect.signature(mlflow.pyfunc.log_model).parameters
        # MLflow 3 names the model with ``name=``; MLflow 2 with ``artifact_path=``.
        where = {"name": artifact_path} if "name" in params else {"artifact_path": artifact_path}
        return mlflow.pyfunc.log_model(
            registered_model_name=registered_model_name,
            **where,
            **_pyfunc_kwargs(model, Path(model_dir), manifest, kwargs),
        )


def save_pyfunc_model(model: RecModel, path: str | os.PathLike[str], **kwargs: Any) -> None:
    """Write ``model`` as a local MLflow pyfunc model directory (no tracking server needed), e.g. for
    ``mlflow models serve -m PATH --env-manager local``."""
    with tempfile.TemporaryDirectory(prefix="recops-model-") as tmp:
        model_dir = Path(tmp) / "recops_model"
        manifest = save_model(model, model_dir)
        mlflow.pyfunc.save_model(path=str(path), **_pyfunc_kwargs(model, model_dir, manifest, kwargs))


mlflow.models.set_model(RecopsPyfunc())

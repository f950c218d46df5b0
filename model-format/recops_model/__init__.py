"""recops_model: the shared, pickle-free model format and top-k scoring of Recops.

A model is a directory of plain ``.npy`` arrays (``allow_pickle=False``) and JSON, plus a
``MANIFEST.json`` holding the sha256 of every file. Training writes it with :func:`save_model`; the
model server reads it with :func:`load_model`, which verifies the manifest before it deserialises
anything. Only numpy and scipy are imported here (no MLflow, no Kubernetes); the MLflow pyfunc
wrapper lives in :mod:`recops_model.pyfunc`.

Public API::

    RecModel(algorithm, kind, user_ids, item_ids, seen, popularity, item_categories,
             user_factors=None, item_factors=None, similarity=None, meta={})
    save_model(model, path) -> manifest dict
    verify_model_dir(path) -> manifest dict        (raises ModelRejected(reason, message))
    load_model(path) -> RecModel
    recommend(model, user_id, k, *, exclude_seen=True, exclude_items=(), category=None) -> Recommendations
    recommend_batch(model, user_ids, k, *, ...) -> list[Recommendations]
    prepare(model) -> "int8+float32" | "float32"   (build lookups and the int8 index ahead of requests)
"""

from ._format import (
    FORMAT_VERSION,
    KINDS,
    MANIFEST_FILE,
    MLFLOW_ARTIFACT_KEY,
    MODEL_FILE,
    ModelRejected,
    RecModel,
    load_model,
    save_model,
    verify_model_dir,
)
from ._scoring import Recommendations, UnknownCategory, prepare, recommend, recommend_batch

__all__ = [
    "FORMAT_VERSION",
    "KINDS",
    "MANIFEST_FILE",
    "MLFLOW_ARTIFACT_KEY",
    "MODEL_FILE",
    "ModelRejected",
    "RecModel",
    "Recommendations",
    "UnknownCategory",
    "load_model",
    "prepare",
    "recommend",
    "recommend_batch",
    "save_model",
    "verify_model_dir",
]

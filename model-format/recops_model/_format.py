"""The on-disk model format: plain ``.npy`` arrays + ``model.json`` + ``MANIFEST.json``.

Layout of a model directory (flat, no sub-directories)::

    MANIFEST.json          written last; sha256 + size of every other file, format version
    model.json             algorithm, kind, shapes, meta
    user_ids.npy           <U  (n_users,)
    item_ids.npy           <U  (n_items,)
    item_categories.npy    <U  (n_items,)
    popularity.npy         f4  (n_items,)
    seen.data.npy          f4  CSR (n_users, n_items)
    seen.indices.npy       i4/i8
    seen.indptr.npy        i4/i8
    user_factors.npy       f4  (n_users, f)     kind "factors"
    item_factors.npy       f4  (n_items, f)     kind "factors"
    similarity.npy         f4  (n_items, n_items) kind "item_item", dense
    similarity.{data,indices,indptr}.npy        kind "item_item", CSR

Verification happens before anything is deserialised: the set of files must be exactly the set the
manifest lists and the set the kind requires, every digest must match, no entry may be a symlink or a
directory or name a path outside the model directory, and every ``.npy`` header (parsed with numpy's
literal-only header parser) must declare a plain numeric or unicode dtype (no object dtype, hence no
pickle). ``load_model`` then parses the very bytes it verified (no time-of-check/time-of-use gap) with
``np.load(allow_pickle=False)``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

FORMAT_NAME = "recops-model"
FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = frozenset({1})
KINDS = ("popularity", "factors", "item_item")
MANIFEST_FILE = "MANIFEST.json"
MODEL_FILE = "model.json"
# The pyfunc artifact key under which the model directory is logged to MLflow
# (the MLflow model holds it at ``artifacts/<dir name>``; its MLmodel file records the path).
MLFLOW_ARTIFACT_KEY = "recops_model"

# Refuse absurd JSON documents before parsing them (a model.json is a few KiB).
_MAX_JSON_BYTES = 16 * 1024 * 1024
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# numpy dtype kinds we accept: bool, signed/unsigned int, float, unicode string.
_ALLOWED_DTYPE_KINDS = frozenset("biufU")

_COMMON_FILES = (
    MODEL_FILE,
    "user_ids.npy",
    "item_ids.npy",
    "item_categories.npy",
    "popularity.npy",
    "seen.data.npy",
    "seen.indices.npy",
    "seen.indptr.npy",
)
_CSR_PARTS = ("data", "indices", "indptr")


class ModelRejected(Exception):
    """A model directory failed verification; nothing from it was deserialised.

    ``reason`` is a stable CamelCase code (for metrics, conditions and HTTP mapping); ``message`` a
    sentence that names the offending file or field.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


Kind = Literal["popularity", "factors", "item_item"]


@dataclass(frozen=True, eq=False)
class RecModel:
    """A trained recommender as plain arrays. See the module docstring of ``recops_model``."""

    algorithm: str
    kind: Kind
    user_ids: np.ndarray
    item_ids: np.ndarray
    seen: sp.csr_matrix
    popularity: np.ndarray
    item_categories: np.ndarray
    user_factors: np.ndarray | None = None
    item_factors: np.ndarray | None = None
    similarity: sp.csr_matrix | np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    # ---- derived, cached lookups (cached_property writes the instance __dict__ directly) ----
    @cached_property
    def user_index(self) -> dict[str, int]:
        return {str(u): i for i, u in enumerate(self.user_ids.tolist())}

    @cached_property
    def item_index(self) -> dict[str, int]:
        return {str(it): i for i, it in enumerate(self.item_ids.tolist())}

    @cached_property
    def categories(self) -> frozenset[str]:
        return frozenset(str(c) for c in np.unique(self.item_categories).tolist())

    @cached_property
    def popularity_order(self) -> np.ndarray:
        """Item indices by descending popularity (ties by index), for the fallback."""
        return np.argsort(-self.popularity.astype(np.float32, copy=False), kind="stable")

    @cached_property
    def _category_masks(self) -> dict[str, np.ndarray]:
        return {}

    def category_mask(self, category: str) -> np.ndarray:
        masks = self._category_masks
        mask = masks.get(category)
        if mask is None:
            mask = np.asarray(self.item_categories == category)
            masks[category] = mask
        return mask

    @property
    def n_users(self) -> int:
        return int(self.user_ids.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_ids.shape[0])

    @property
    def digest(self) -> str | None:
        """The content digest of the directory it was loaded from (``None`` if never saved)."""
        d = self.meta.get("modelDigest") if isinstance(self.meta, dict) else None
        return str(d) if d else None

    def validate(self) -> None:
        """Raise ``ModelRejected("InconsistentModel", ...)`` unless shapes, dtypes and kind agree."""
        _validate_model(self)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _reject(reason: str, message: str) -> ModelRejected:
    return ModelRejected(reason, message)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _expected_files(kind: str, similarity_format: str | None) -> set[str]:
    files = set(_COMMON_FILES)
    if kind == "factors":
        files |= {"user_factors.npy", "item_factors.npy"}
    elif kind == "item_item":
        if similarity_format == "dense":
            files.add("similarity.npy")
        elif similarity_format == "csr":
            files |= {f"similarity.{p}.npy" for p in _CSR_PARTS}
        else:
            raise _reject(
                "InvalidModelJson",
                f"model.json field 'similarity.format' must be 'dense' or 'csr', got {similarity_format!r}",
            )
    elif kind != "popularity":
        raise _reject("UnknownKind", f"model.json field 'kind' is {kind!r}; known kinds: {', '.join(KINDS)}")
    return files


def _str_array(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind != "U":
        arr = np.asarray([str(v) for v in np.asarray(values, dtype=object).ravel().tolist()])
        if arr.size == 0:
            arr = np.zeros((0,), dtype="<U1")
    if arr.ndim != 1:
        raise _reject("InconsistentModel", f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _validate_model(m: RecModel) -> None:
    def bad(msg: str) -> ModelRejected:
        return _reject("InconsistentModel", msg)

    if m.kind not in KINDS:
        raise _reject("UnknownKind", f"kind is {m.kind!r}; known kinds: {', '.join(KINDS)}")
    n_users, n_items = m.n_users, m.n_items
    for name in ("user_ids", "item_ids", "item_categories"):
        arr = getattr(m, name)
        if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype.kind != "U":
            raise bad(f"{name} must be a one-dimensional unicode string array")
    if m.item_categories.shape[0] != n_items:
        raise bad(f"item_categories has {m.item_categories.shape[0]} entries, item_ids has {n_items}")
    if len(set(m.item_ids.tolist())) != n_items:
        raise bad("item_ids contains duplicates")
    if len(set(m.user_ids.tolist())) != n_users:
        raise bad("user_ids contains duplicates")
    if not isinstance(m.popularity, np.ndarray) or m.popularity.shape != (n_items,):
        raise bad(f"popularity must have shape ({n_items},)")
    if not sp.issparse(m.seen) or m.seen.shape != (n_users, n_items):
        raise bad(f"seen must be a sparse matrix of shape ({n_users}, {n_items}), got {getattr(m.seen, 'shape', None)}")
    if m.kind == "factors":
        u, v = m.user_factors, m.item_factors
        if u is None or v is None:
            raise bad("kind 'factors' needs user_factors and item_factors")
        if u.ndim != 2 or v.ndim != 2 or u.shape[0] != n_users or v.shape[0] != n_items or u.shape[1] != v.shape[1]:
            raise bad(f"user_factors {u.shape} and item_factors {v.shape} must be ({n_users}, f) and ({n_items}, f)")
    elif m.kind == "item_item":
        s = m.similarity
        if s is None:
            raise bad("kind 'item_item' needs similarity")
        if s.shape != (n_items, n_items):
            raise bad(f"similarity must have shape ({n_items}, {n_items}), got {s.shape}")
    for name in ("popularity", "user_factors", "item_factors"):
        arr = getattr(m, name)
        if arr is not None and arr.dtype.kind != "f":
            raise bad(f"{name} must be a float array, got dtype {arr.dtype}")
        if arr is not None and not np.isfinite(arr).all():
            raise bad(f"{name} contains NaN or infinite values")
    for name in ("seen", "similarity"):
        arr = getattr(m, name)
        data = arr.data if sp.issparse(arr) else arr
        if data is not None and not np.isfinite(np.asarray(data)).all():
            raise bad(f"{name} contains NaN or infinite values")
    try:
        json.dumps(m.meta, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise bad(f"meta must be JSON-serialisable: {exc}") from exc


def _canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _content_digest(files: Mapping[str, Mapping[str, Any]]) -> str:
    """The model's version digest: sha256 over the sorted (name, sha256) list of its files."""
    return "sha256:" + _sha256(_canonical_json({n: files[n]["sha256"] for n in sorted(files)}))


# --------------------------------------------------------------------------------------------
# save
# --------------------------------------------------------------------------------------------


def _npy_bytes(arr: np.ndarray) -> bytes:
    if arr.dtype.hasobject or arr.dtype.kind not in _ALLOWED_DTYPE_KINDS:
        raise _reject("PickleRefused", f"refusing to save an array of dtype {arr.dtype} (only plain numeric/unicode)")
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def _csr_parts(m: sp.spmatrix | sp.sparray, dtype: Any = np.float32) -> dict[str, np.ndarray]:
    csr = sp.csr_matrix(m, dtype=dtype)
    csr.sort_indices()
    csr.sum_duplicates()
    return {"data": csr.data.astype(dtype, copy=False), "indices": csr.indices, "indptr": csr.indptr}


def save_model(model: RecModel, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Write ``model`` to the directory ``path`` (must not exist, or be empty) and return the manifest.

    Files are written into a temporary sibling directory and renamed into place, with MANIFEST.json
    written last, so a reader never sees a half-written model.
    """
    model = _normalise(model)
    _validate_model(model)
    dest = Path(path)
    if dest.exists():
        if not dest.is_dir() or any(dest.iterdir()):
            raise FileExistsError(f"model directory {dest} exists and is not empty")
        dest.rmdir()
    dest.parent.mkdir(parents=True, exist_ok=True)

    blobs: dict[str, bytes] = {}
    for name in ("user_ids", "item_ids", "item_categories"):
        blobs[f"{name}.npy"] = _npy_bytes(getattr(model, name))
    blobs["popularity.npy"] = _npy_bytes(model.popularity.astype(np.float32, copy=False))
    for part, arr in _csr_parts(model.seen).items():
        blobs[f"seen.{part}.npy"] = _npy_bytes(arr)
    model_json: dict[str, Any] = {
        "format": FORMAT_NAME,
        "formatVersion": FORMAT_VERSION,
        "algorithm": model.algorithm,
        "kind": model.kind,
        "nUsers": model.n_users,
        "nItems": model.n_items,
        "meta": {k: v for k, v in model.meta.items() if k != "modelDigest"},
    }
    if model.kind == "factors":
        assert model.user_factors is not None and model.item_factors is not None
        blobs["user_factors.npy"] = _npy_bytes(model.user_factors.astype(np.float32, copy=False))
        blobs["item_factors.npy"] = _npy_bytes(model.item_factors.astype(np.float32, copy=False))
        model_json["factors"] = int(model.item_factors.shape[1])
    elif model.kind == "item_item":
        s = model.similarity
        if sp.issparse(s):
            for part, arr in _csr_parts(s).items():
                blobs[f"similarity.{part}.npy"] = _npy_bytes(arr)
            model_json["similarity"] = {"format": "csr"}
        else:
            blobs["similarity.npy"] = _npy_bytes(np.asarray(s, dtype=np.float32))
            model_json["similarity"] = {"format": "dense"}
    blobs[MODEL_FILE] = json.dumps(model_json, indent=2, sort_keys=True, allow_nan=False).encode()

    files = {name: {"sha256": _sha256(data), "bytes": len(data)} for name, data in sorted(blobs.items())}
    manifest: dict[str, Any] = {
        "format": FORMAT_NAME,
        "formatVersion": FORMAT_VERSION,
        "kind": model.kind,
        "algorithm": model.algorithm,
        "digest": _content_digest(files),
        "files": files,
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        for name, data in blobs.items():
            (tmp / name).write_bytes(data)
        (tmp / MANIFEST_FILE).write_bytes(json.dumps(manifest, indent=2, sort_keys=True).encode())
        os.chmod(tmp, 0o755)  # noqa: S103 - mkdtemp's 0700 would hide a published model from readers
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _normalise(m: RecModel) -> RecModel:
    """Coerce array types (str arrays, float32, CSR) so that save/score see one representation."""
    sim = m.similarity
    if sim is not None:
        sim = sp.csr_matrix(sim, dtype=np.float32) if sp.issparse(sim) else np.asarray(sim, dtype=np.float32)
    return RecModel(
        algorithm=str(m.algorithm),
        kind=m.kind,
        user_ids=_str_array(m.user_ids, "user_ids"),
        item_ids=_str_array(m.item_ids, "item_ids"),
        seen=sp.csr_matrix(m.seen, dtype=np.float32),
        popularity=np.asarray(m.popularity, dtype=np.float32).ravel(),
        item_categories=_str_array(m.item_categories, "item_categories"),
        user_factors=None if m.user_factors is None else np.ascontiguousarray(m.user_factors, dtype=np.float32),
        item_factors=None if m.item_factors is None else np.ascontiguousarray(m.item_factors, dtype=np.float32),
        similarity=sim,
        meta=dict(m.meta or {}),
    )


# --------------------------------------------------------------------------------------------
# verify + load
# --------------------------------------------------------------------------------------------


def _read_json(name: str, data: bytes) -> Any:
    if len(data) > _MAX_JSON_BYTES:
        raise _reject("InvalidManifest" if name == MANIFEST_FILE else "InvalidModelJson", f"{name} is too large")
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = "InvalidManifest" if name == MANIFEST_FILE else "InvalidModelJson"
        raise _reject(reason, f"{name} is not valid JSON: {exc}") from exc


def _check_npy_header(name: str, data: bytes) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Parse the .npy header only (numpy's literal parser) and refuse object/pickle dtypes."""
    f = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise _reject("InvalidArray", f"{name}: unsupported .npy version {version}")
    except ModelRejected:
        raise
    except Exception as exc:
        raise _reject("InvalidArray", f"{name} is not a valid .npy file: {exc}") from exc
    if dtype.hasobject:
        raise _reject("PickleRefused", f"{name} holds dtype {dtype} (object arrays need pickle); refused")
    if dtype.kind not in _ALLOWED_DTYPE_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise _reject("InvalidArray", f"{name} holds dtype {dtype}; only plain numeric or unicode arrays are allowed")
    if fortran:
        raise _reject("InvalidArray", f"{name} is Fortran-ordered; only C-ordered arrays are written by save_model")
    expected = f.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if expected != len(data):
        raise _reject("InvalidArray", f"{name}: header declares {expected} bytes, file has {len(data)}")
    return tuple(shape), dtype


@dataclass
class _Verified:
    manifest: dict[str, Any]
    model_json: dict[str, Any]
    blobs: dict[str, bytes]


def _verify(path: str | os.PathLike[str]) -> _Verified:
    root = Path(path)
    try:
        st = os.stat(root)  # the root itself may be reached through a symlink (e.g. a mount)
    except OSError as exc:
        raise _reject("MissingFile", f"model directory {root} does not exist: {exc}") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise _reject("InvalidModelDir", f"{root} is not a directory")

    on_disk: dict[str, os.DirEntry[str]] = {}
    with os.scandir(root) as it:
        for entry in it:
            if entry.is_symlink():
                raise _reject("UnsafePath", f"{entry.name} is a symlink; model directories may not contain links")
            if not entry.is_file(follow_symlinks=False):
                raise _reject("UnexpectedFile", f"{entry.name} is not a regular file; model directories are flat")
            on_disk[entry.name] = entry
    if MANIFEST_FILE not in on_disk:
        raise _reject("MissingFile", f"{MANIFEST_FILE} is missing from {root}")

    def read(name: str) -> bytes:
        # O_NOFOLLOW: a file swapped for a symlink after the scan is still refused.
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(root / name, flags)
        except OSError as exc:
            raise _reject("UnsafePath", f"{name} could not be opened without following links: {exc}") from exc
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise _reject("UnexpectedFile", f"{name} is not a regular file")
            return fh.read()

    manifest = _read_json(MANIFEST_FILE, read(MANIFEST_FILE))
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise _reject("InvalidManifest", f"{MANIFEST_FILE} field 'format' must be {FORMAT_NAME!r}")
    version = manifest.get("formatVersion")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise _reject(
            "UnsupportedFormatVersion",
            f"{MANIFEST_FILE} field 'formatVersion' is {version!r}; this reader supports "
            f"{sorted(SUPPORTED_FORMAT_VERSIONS)}",
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise _reject("InvalidManifest", f"{MANIFEST_FILE} field 'files' must be a non-empty object")
    for name, entry in files.items():
        if (
            not isinstance(name, str)
            or not _SAFE_NAME.match(name)
            or name in (".", "..")
            or os.path.isabs(name)
            or "/" in name
            or "\\" in name
        ):
            raise _reject("UnsafePath", f"{MANIFEST_FILE} lists {name!r}, a path outside the model directory")
        if name == MANIFEST_FILE:
            raise _reject("InvalidManifest", f"{MANIFEST_FILE} may not list itself")
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise _reject("InvalidManifest", f"{MANIFEST_FILE} entry for {name} needs a 'sha256' string")
    listed = set(files)
    present = set(on_disk) - {MANIFEST_FILE}
    if missing := sorted(listed - present):
        raise _reject("MissingFile", f"files listed in {MANIFEST_FILE} are missing: {', '.join(missing)}")
    if extra := sorted(present - listed):
        raise _reject("UnexpectedFile", f"files not listed in {MANIFEST_FILE}: {', '.join(extra)}")

    blobs: dict[str, bytes] = {}
    for name in sorted(listed):
        data = read(name)
        if _sha256(data) != files[name]["sha256"]:
            raise _reject("DigestMismatch", f"{name}: sha256 does not match {MANIFEST_FILE}")
        size = files[name].get("bytes")
        if size is not None and size != len(data):
            raise _reject("DigestMismatch", f"{name}: size {len(data)} does not match {MANIFEST_FILE} ({size})")
        blobs[name] = data
    if "digest" in manifest and manifest["digest"] != _content_digest(files):
        raise _reject("DigestMismatch", f"{MANIFEST_FILE} field 'digest' does not match its file list")

    if MODEL_FILE not in blobs:
        raise _reject("MissingFile", f"{MODEL_FILE} is missing")
    model_json = _read_json(MODEL_FILE, blobs[MODEL_FILE])
    if not isinstance(model_json, dict):
        raise _reject("InvalidModelJson", f"{MODEL_FILE} must be a JSON object")
    if model_json.get("formatVersion") not in SUPPORTED_FORMAT_VERSIONS:
        raise _reject(
            "UnsupportedFormatVersion",
            f"{MODEL_FILE} field 'formatVersion' is {model_json.get('formatVersion')!r}",
        )
    kind = model_json.get("kind")
    if kind not in KINDS:
        raise _reject("UnknownKind", f"{MODEL_FILE} field 'kind' is {kind!r}; known kinds: {', '.join(KINDS)}")
    sim = model_json.get("similarity")
    sim_format = sim.get("format") if isinstance(sim, dict) else None
    expected = _expected_files(str(kind), sim_format)
    if missing := sorted(expected - listed):
        raise _reject("MissingFile", f"kind {kind!r} needs files that are absent: {', '.join(missing)}")
    if extra := sorted(listed - expected):
        raise _reject("UnexpectedFile", f"files unknown to kind {kind!r}: {', '.join(extra)}")
    for name, data in blobs.items():
        if name.endswith(".npy"):
            _check_npy_header(name, data)
    return _Verified(manifest=manifest, model_json=model_json, blobs=blobs)


def verify_model_dir(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Verify a model directory without deserialising any array; return its manifest.

    Raises ``ModelRejected(reason, message)`` with reason one of: MissingFile, UnexpectedFile,
    UnsafePath, InvalidManifest, InvalidModelJson, UnsupportedFormatVersion, UnknownKind,
    DigestMismatch, PickleRefused, InvalidArray, InvalidModelDir.
    """
    return _verify(path).manifest


def load_model(path: str | os.PathLike[str]) -> RecModel:
    """Verify ``path`` and then load the verified bytes with ``np.load(allow_pickle=False)``."""
    v = _verify(path)

    def arr(name: str) -> np.ndarray:
        try:
            out = np.load(io.BytesIO(v.blobs[name]), allow_pickle=False)
        except ValueError as exc:  # allow_pickle=False refuses object arrays
            raise _reject("PickleRefused", f"{name}: {exc}") from exc
        assert isinstance(out, np.ndarray)
        return out

    mj = v.model_json
    n_users, n_items = int(mj.get("nUsers", -1)), int(mj.get("nItems", -1))

    def csr(prefix: str, shape: tuple[int, int]) -> sp.csr_matrix:
        try:
            m = sp.csr_matrix(
                (arr(f"{prefix}.data.npy"), arr(f"{prefix}.indices.npy"), arr(f"{prefix}.indptr.npy")),
                shape=shape,
            )
            m.check_format(full_check=True)
        except ModelRejected:
            raise
        except Exception as exc:
            raise _reject("InconsistentModel", f"{prefix}.*.npy do not form a valid CSR matrix {shape}: {exc}") from exc
        return m

    kind = mj["kind"]
    similarity: sp.csr_matrix | np.ndarray | None = None
    if kind == "item_item":
        similarity = (
            arr("similarity.npy") if mj["similarity"]["format"] == "dense" else csr("similarity", (n_items, n_items))
        )
    meta = dict(mj.get("meta") or {})
    meta["modelDigest"] = v.manifest.get("digest") or _content_digest(v.manifest["files"])
    model = RecModel(
        algorithm=str(mj.get("algorithm", "")),
        kind=kind,
        user_ids=arr("user_ids.npy"),
        item_ids=arr("item_ids.npy"),
        seen=csr("seen", (n_users, n_items)),
        popularity=arr("popularity.npy"),
        item_categories=arr("item_categories.npy"),
        user_factors=arr("user_factors.npy") if kind == "factors" else None,
        # row-major item factors: a micro-batch's ``V @ U.T`` (the server under load) runs 2x faster than
        # with column-major ones (100k items, 16 users: 180 vs 353 us per user); a lone user is scored by
        # ``np.vecdot`` (``_scoring._score_block``)
        item_factors=np.ascontiguousarray(arr("item_factors.npy")) if kind == "factors" else None,
        similarity=similarity,
        meta=meta,
    )
    _validate_model(model)
    return model

"""Feature snapshots: canonical content digest (= version), column statistics, atomic publication.

A snapshot is ``<output>/<version>/`` holding ``<table>.parquet`` files and ``manifest.json``.
The manifest is written last; a snapshot exists for readers iff its manifest exists. Local
outputs are staged in a hidden temp directory and renamed into place; S3 outputs write data
objects first and the manifest last (each S3 PUT is atomic). ``<output>/latest.json`` points to
the newest snapshot and only ever moves forward (by window end) after a complete publish.

The version is the sha256 of the canonical content: table names, each column's name, type,
null mask and values (independent of Parquet encoding or library versions), and the window.
Equal inputs therefore give the same version, and republishing it is a no-op.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recops_features.logs import log
from recops_features.storage import (
    LocalStore,
    Location,
    S3Store,
    store_for,
    sweep_stale_temp_dirs,
    temp_dir_name,
)

FORMAT = "recops.features/v1"
MANIFEST = "manifest.json"
LATEST = "latest.json"
_HIST_BINS = 10
_TOP_CATEGORIES = 50


# ----------------------------------------------------------------------------- canonical digest (pure)


def _hash_column(h: Any, name: str, column: pa.ChunkedArray) -> None:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    kind = arr.type
    is_text = pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
    label = "string" if is_text else str(kind)
    h.update(f"\x1ecol\x1f{name}\x1f{label}\x1f{len(arr)}\x1f{arr.null_count}".encode())
    if arr.null_count:
        h.update(np.packbits(arr.is_valid().to_numpy(zero_copy_only=False)).tobytes())
    if (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    ):
        filled = arr.cast(pa.large_binary()).fill_null(b"")
        offsets = np.frombuffer(filled.buffers()[1], dtype=np.int64)[filled.offset : filled.offset + len(filled) + 1]
        h.update(np.diff(offsets).tobytes())
        data = filled.buffers()[2]
        if data is not None:
            h.update(memoryview(data)[int(offsets[0]) : int(offsets[-1])])
    elif pa.types.is_boolean(kind):
        h.update(arr.fill_null(False).to_numpy(zero_copy_only=False).astype(np.uint8).tobytes())
    elif pa.types.is_temporal(kind):
        width = pa.int64() if kind.bit_width == 64 else pa.int32()
        h.update(arr.view(width).fill_null(0).to_numpy().tobytes())
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
        values = arr.fill_null(0).to_numpy()
        if values.dtype.kind == "f":
            values = np.where(np.isnan(values), np.nan, values)  # one NaN bit pattern
            values = values + 0.0  # -0.0 -> 0.0
        h.update(np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<")).tobytes())
    elif pa.types.is_null(kind):
        pass
    else:
        h.update(json.dumps(arr.to_pylist(), default=str, sort_keys=True).encode())


def table_digest(table: pa.Table) -> str:
    """sha256 of a table's canonical content (column order matters, Parquet encoding does not)."""
    h = hashlib.sha256()
    h.update(f"rows\x1f{table.num_rows}".encode())
    for name in table.column_names:
        _hash_column(h, name, table.column(name))
    return h.hexdigest()


def snapshot_version(table_digests: dict[str, str], window: dict[str, str]) -> str:
    """The version: sha256 over the format, the window and every table's digest."""
    canonical = json.dumps(
        {"format": FORMAT, "window": window, "tables": table_digests}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


# ----------------------------------------------------------------------------- statistics (pure)


def _type_family(series: pd.Series) -> str:
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "timestamp"
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        sample = series.dropna()
        if len(sample):
            first = sample.iloc[0]
            if hasattr(first, "isoformat") and not isinstance(first, str):
                return "date"
        return "string"
    return str(dtype)


def schema_of(frame: pd.DataFrame) -> list[dict[str, str]]:
    """``[{name, type}]`` with type families (int, float, string, category, bool, timestamp, date)."""
    return [{"name": str(c), "type": _type_family(frame[c])} for c in frame.columns]


def _round(value: float) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return float(f"{value:.6g}")


def column_stats(series: pd.Series, is_key: bool = False) -> dict[str, Any]:
    """Reference statistics for drift: numeric quantile bins + histogram, categorical frequencies."""
    family = _type_family(series)
    n = len(series)
    nulls = int(series.isna().sum())
    out: dict[str, Any] = {
        "type": family,
        "count": n - nulls,
        "nulls": nulls,
        "nullFraction": _round(nulls / n) if n else 0.0,
    }
    if is_key:
        out["kind"] = "key"
        out["distinct"] = int(series.nunique(dropna=True))
        return out
    if family in ("int", "float"):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        values = values[np.isfinite(values)]
        out["kind"] = "numeric"
        if len(values):
            probs = np.linspace(0, 1, _HIST_BINS + 1)
            named = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
            qs = np.quantile(values, np.concatenate([probs, named]))  # one sort for all quantiles
            edges = np.unique(qs[: len(probs)])
            if len(edges) < 2:
                edges = np.array([edges[0], edges[0]])
            counts = np.bincount(
                np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2), minlength=len(edges) - 1
            )
            out.update(
                {
                    "min": _round(values.min()),
                    "max": _round(values.max()),
                    "mean": _round(values.mean()),
                    "std": _round(values.std()),
                    "quantiles": {
                        f"p{round(q * 100)}": _round(v) for q, v in zip(named, qs[len(probs) :], strict=True)
                    },
                    "histogram": {"edges": [_round(e) for e in edges], "counts": [int(c) for c in counts]},
                }
            )
        return out
    if family in ("timestamp", "date"):
        out["kind"] = "time"
        valid = series.dropna()
        if len(valid):
            out["min"] = pd.Timestamp(valid.min()).isoformat()
            out["max"] = pd.Timestamp(valid.max()).isoformat()
        return out
    out["kind"] = "categorical"
    counts = series.astype("string").value_counts(dropna=True)
    counts = counts.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
    total = max(int(counts.sum()), 1)
    top = counts.iloc[:_TOP_CATEGORIES]
    out["distinct"] = len(counts)
    out["frequencies"] = {str(k): _round(int(v) / total) for k, v in top.items()}
    if len(counts) > _TOP_CATEGORIES:
        out["otherFraction"] = _round(int(counts.iloc[_TOP_CATEGORIES:].sum()) / total)
    return out


# ----------------------------------------------------------------------------- building a snapshot


@dataclass
class SnapshotFile:
    name: str
    data: bytes
    sha256: str


@dataclass
class Snapshot:
    """Everything to publish, built in memory before anything is written."""

    version: str
    manifest: dict[str, Any]
    files: list[SnapshotFile] = field(default_factory=list)

    def manifest_bytes(self) -> bytes:
        return (json.dumps(self.manifest, indent=2, sort_keys=True) + "\n").encode()


def frame_to_arrow(frame: pd.DataFrame) -> pa.Table:
    """The exact Arrow table that is written and hashed (no index; tz-aware times as timestamp[us, tz])."""
    arrays = []
    for name in frame.columns:
        series = frame[name]
        dtype = series.dtype
        if isinstance(dtype, pd.DatetimeTZDtype):
            naive = series.dt.tz_convert(None).to_numpy().astype("datetime64[us]")
            arrays.append(pa.array(naive, type=pa.timestamp("us")).cast(pa.timestamp("us", tz=str(dtype.tz))))
        else:
            arrays.append(pa.Array.from_pandas(series))
    return pa.Table.from_arrays(arrays, names=[str(c) for c in frame.columns])


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", row_group_size=1_000_000)
    return sink.getvalue()


def build_snapshot(
    tables: dict[str, pd.DataFrame],
    keys: dict[str, list[str]],
    window: dict[str, str],
    extra: dict[str, Any],
) -> Snapshot:
    """Digest, serialise and describe ``tables``; ``extra`` goes into the manifest (no secrets)."""
    arrow = {name: frame_to_arrow(frame) for name, frame in sorted(tables.items())}
    digests = {name: table_digest(t) for name, t in arrow.items()}
    version = snapshot_version(digests, window)
    files: list[SnapshotFile] = []
    described: dict[str, Any] = {}
    for name, table in arrow.items():
        data = parquet_bytes(table)
        digest = hashlib.sha256(data).hexdigest()
        files.append(SnapshotFile(f"{name}.parquet", data, digest))
        frame = tables[name]
        table_keys = keys.get(name, [])
        described[name] = {
            "file": f"{name}.parquet",
            "rows": int(table.num_rows),
            "bytes": len(data),
            "sha256": digest,
            "contentDigest": digests[name],
            "keys": table_keys,
            "schema": schema_of(frame),
            "stats": {str(c): column_stats(frame[c], is_key=c in table_keys) for c in frame.columns},
        }
    manifest = {
        "format": FORMAT,
        "version": version,
        "window": window,
        "tables": described,
        **extra,
    }
    return Snapshot(version=version, manifest=manifest, files=files)


# ----------------------------------------------------------------------------- publishing (IO)


@dataclass
class Published:
    version: str
    uri: str
    already_published: bool
    is_latest: bool
    """``latest.json`` names this snapshot after the publish."""


def _window_end(pointer: dict[str, Any]) -> str:
    return str(pointer.get("window", {}).get("end", ""))


def _latest_pointer(snapshot: Snapshot, uri: str) -> dict[str, Any]:
    man = snapshot.manifest
    return {
        "format": FORMAT,
        "version": snapshot.version,
        "uri": uri,
        "manifest": f"{uri}/{MANIFEST}",
        "window": man.get("window"),
        "counts": man.get("counts"),
        "publishedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _should_move_latest(current: bytes | None, version: str, window: dict[str, str]) -> bool:
    """Move the pointer forward only: not to an older window, not to the snapshot it already names."""
    if current is None:
        return True
    try:
        pointer = json.loads(current)
    except ValueError:
        return True
    if pointer.get("version") == version:
        return False
    return _window_end(pointer) <= str(window.get("end", ""))


def publish(snapshot: Snapshot, output: Location, update_latest: bool = True, client: Any | None = None) -> Published:
    """Publish ``snapshot`` under ``output`` atomically and idempotently (see module docstring)."""
    store = store_for(output, what=f"the snapshot output {output.uri}", field="output.uri", client=client)
    target = output.child(snapshot.version)
    if isinstance(store, LocalStore):
        already = _publish_local(snapshot, Path(output.path), Path(target.path))
    else:
        already = _publish_s3(snapshot, store, target)
    _fault("before-latest")
    is_latest = False
    if update_latest:
        latest = output.child(LATEST)
        window = snapshot.manifest.get("window", {})
        current = store.read_optional(latest)
        if _should_move_latest(current, snapshot.version, window):
            pointer = json.dumps(_latest_pointer(snapshot, target.uri), indent=2, sort_keys=True).encode()
            store.write(latest, pointer)
            is_latest = True
        elif current is not None and json.loads(current).get("version") == snapshot.version:
            is_latest = True
        else:
            log("Kept latest pointer: it names a newer window", output=output.uri, version=snapshot.version)
    return Published(snapshot.version, target.uri, already, is_latest)


def _fault(point: str) -> None:
    """Fault injection for tests: ``RECOPS_FEATURES_FAULT=<point>`` SIGKILLs the job right here."""
    if os.environ.get("RECOPS_FEATURES_FAULT") == point:
        os.kill(os.getpid(), signal.SIGKILL)


def _publish_local(snapshot: Snapshot, root: Path, target: Path) -> bool:
    root.mkdir(parents=True, exist_ok=True)
    swept = sweep_stale_temp_dirs(root)
    if swept:
        log("Removed staging directories of interrupted runs", output=str(root), count=len(swept))
    if (target / MANIFEST).exists():
        log("Found snapshot already published", uri=str(target), version=snapshot.version)
        return True
    staging = root / temp_dir_name(snapshot.version)
    staging.mkdir()
    try:
        for f in snapshot.files:
            _write_synced(staging / f.name, f.data)
            _fault("after-data-file")
        _write_synced(staging / MANIFEST, snapshot.manifest_bytes())
        _fsync_dir(staging)
        try:
            os.rename(staging, target)
        except OSError:
            if (target / MANIFEST).exists():
                log("Found snapshot published by a concurrent run", uri=str(target), version=snapshot.version)
                return True
            # A directory without manifest is debris (not ours to keep): replace it.
            shutil.rmtree(target, ignore_errors=True)
            os.rename(staging, target)
        _fsync_dir(root)
        log("Published snapshot", uri=str(target), version=snapshot.version, files=len(snapshot.files))
        return False
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish_s3(snapshot: Snapshot, store: S3Store, target: Location) -> bool:
    manifest_loc = target.child(MANIFEST)
    if store.exists(manifest_loc):
        log("Found snapshot already published", uri=target.uri, version=snapshot.version)
        return True
    for f in snapshot.files:
        store.write(target.child(f.name), f.data)
        _fault("after-data-file")
    # Conditional create: if a concurrent run won, keep its manifest (same content, earlier createdAt).
    from botocore.exceptions import ClientError

    with store._translated():
        try:
            store.client.put_object(
                Bucket=target.bucket,
                Key=manifest_loc.path,
                Body=snapshot.manifest_bytes(),
                ContentType="application/json",
                IfNoneMatch="*",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                log("Found snapshot published by a concurrent run", uri=target.uri, version=snapshot.version)
                return True
            raise
    log("Published snapshot", uri=target.uri, version=snapshot.version, files=len(snapshot.files))
    return False


def read_latest(output: str, client: Any | None = None) -> dict[str, Any] | None:
    """The ``latest.json`` pointer under ``output`` (``None`` when nothing was published)."""
    from recops_features.storage import parse_location

    loc = parse_location(output)
    data = store_for(loc, client=client).read_optional(loc.child(LATEST))
    return json.loads(data) if data else None


class SnapshotCorrupt(Exception):
    """A snapshot file is missing or does not match the sha256 in its manifest."""


def load_snapshot(
    uri: str, client: Any | None = None, tables: list[str] | None = None
) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """Read a published snapshot for consumers (training, drift): ``(manifest, {table: frame})``.

    ``uri`` is a snapshot (``<output>/<version>``) or an output root, in which case ``latest.json``
    is followed. Every file is checked against the manifest's sha256 before it is parsed.
    """
    from recops_features.storage import parse_location

    loc = parse_location(uri)
    store = store_for(loc, what=f"the snapshot {loc.uri}", field="snapshot", client=client)
    raw = store.read_optional(loc.child(MANIFEST))
    if raw is None:
        pointer = store.read_optional(loc.child(LATEST))
        if pointer is None:
            raise SnapshotCorrupt(f"{loc.uri} has neither {MANIFEST} nor {LATEST}")
        loc = parse_location(json.loads(pointer)["uri"])
        raw = store.read_optional(loc.child(MANIFEST))
        if raw is None:
            raise SnapshotCorrupt(f"{loc.uri} (named by {LATEST}) has no {MANIFEST}")
    manifest: dict[str, Any] = json.loads(raw)
    frames: dict[str, pd.DataFrame] = {}
    for name, described in manifest["tables"].items():
        if tables is not None and name not in tables:
            continue
        data = store.read_optional(loc.child(described["file"]))
        if data is None or hashlib.sha256(data).hexdigest() != described["sha256"]:
            raise SnapshotCorrupt(f"{loc.uri}/{described['file']} is missing or does not match its sha256")
        frames[name] = pq.read_table(io.BytesIO(data)).to_pandas()
    return manifest, frames

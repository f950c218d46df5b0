"""I/O of the drift check: local files, S3, MLflow, payload logs and feature snapshots.

Credentials come only from the environment (boto3 reads ``AWS_*`` including ``AWS_ENDPOINT_URL_S3``;
MLflow reads ``MLFLOW_TRACKING_URI`` / ``MLFLOW_TRACKING_TOKEN``); nothing here logs them.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from . import stats as S
from .errors import DependencyUnavailable, InvalidInput
from .logs import log

# ------------------------------------------------------------------------------------------- S3 / local


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise InvalidInput(f"{uri!r} is not an s3://bucket/key URI", reason="InvalidUri")
    return bucket, key


_s3_client: Any = None


def s3() -> Any:
    global _s3_client
    if _s3_client is None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:  # pragma: no cover - dependency of the drift extra
            raise DependencyUnavailable("boto3 is not installed; install recops[drift] for s3:// URIs") from exc
        _s3_client = boto3.client(
            "s3",
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30),
        )
    return _s3_client


def _s3_error(exc: Exception, what: str) -> Exception:
    try:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
    except ImportError:  # pragma: no cover
        return exc
    if isinstance(exc, NoCredentialsError):
        return InvalidInput(
            f"no S3 credentials for {what}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            reason="S3CredentialsMissing",
        )
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in ("NoSuchKey", "404", "NoSuchBucket") or status == 404:
            return InvalidInput(f"{what} does not exist in S3 ({code or status}); check the URI", reason="NotFound")
        if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"):
            return DependencyUnavailable(
                f"S3 answered {code or status} for {what}; retry later", reason="S3Unavailable"
            )
        return InvalidInput(
            f"S3 answered {code or status} for {what}; check the URI and permissions",
            reason="S3RequestFailed",
        )
    if isinstance(exc, BotoCoreError):
        return DependencyUnavailable(
            f"S3 is unreachable for {what} ({type(exc).__name__}); retry later", reason="S3Unavailable"
        )
    return exc


def read_bytes(uri: str, *, what: str = "file") -> bytes:
    """A local file or an S3 object."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            body: bytes = s3().get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            raise _s3_error(exc, f"{what} {uri}") from exc
        return body
    path = Path(uri.removeprefix("file://"))
    if not path.is_file():
        raise InvalidInput(f"{what} {uri} does not exist; check the path", reason="NotFound")
    return path.read_bytes()


def exists(uri: str) -> bool:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            s3().head_object(Bucket=bucket, Key=key)
            return True
        except Exception as exc:
            err = _s3_error(exc, uri)
            if isinstance(err, InvalidInput) and err.reason == "NotFound":
                return False
            raise err from exc
    return Path(uri.removeprefix("file://")).is_file()


def list_uris(prefix: str) -> list[str]:
    """Files under a local directory or S3 prefix (recursive), sorted."""
    if is_s3(prefix):
        bucket, key = split_s3(prefix)
        key = key.rstrip("/") + "/" if key else ""
        out: list[str] = []
        try:
            for page in s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
                out.extend(f"s3://{bucket}/{obj['Key']}" for obj in page.get("Contents", []))
        except Exception as exc:
            raise _s3_error(exc, f"listing {prefix}") from exc
        return sorted(out)
    root = Path(prefix.removeprefix("file://"))
    if not root.is_dir():
        return []
    return sorted(str(p) for p in root.rglob("*") if p.is_file())


def write_bytes(uri: str, body: bytes, *, content_type: str = "application/octet-stream") -> str:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            s3().put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
        except Exception as exc:
            raise _s3_error(exc, f"writing {uri}") from exc
        return uri
    path = Path(uri.removeprefix("file://"))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(body)
    tmp.replace(path)  # readers never see a half-written report
    return str(path)


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


# ---------------------------------------------------------------------------------------------- MLflow


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError as exc:  # pragma: no cover
        raise DependencyUnavailable("mlflow is not installed; install recops[drift]", reason="MlflowMissing") from exc
    return mlflow


def _mlflow_error(exc: Exception, what: str) -> Exception:
    text = str(exc)
    code = getattr(exc, "error_code", "") or ""
    if "RESOURCE_DOES_NOT_EXIST" in code or "RESOURCE_DOES_NOT_EXIST" in text or "not found" in text.lower():
        return InvalidInput(
            f"{what} does not exist in MLflow; check the model name, version/alias or run id",
            reason="ReferenceNotFound",
        )
    if "INVALID_PARAMETER_VALUE" in code:
        return InvalidInput(f"MLflow refused {what}: {text[:200]}", reason="ReferenceNotFound")
    return DependencyUnavailable(
        f"MLflow is unavailable for {what} ({type(exc).__name__}); retry later", reason="MLflowUnavailable"
    )


@dataclass
class MlflowRef:
    run_id: str
    model_version: str | None


def resolve_mlflow_run(
    run_id: str | None, model_name: str | None, model_version: str | None, model_alias: str | None
) -> MlflowRef:
    """The run that logged the model version (or the given run)."""
    if run_id:
        return MlflowRef(run_id=run_id, model_version=model_version)
    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    which = f"version {model_version}" if model_version else f"alias {model_alias}"
    what = f"model {model_name} {which}"
    try:
        if model_version:
            mv = client.get_model_version(model_name, model_version)
        else:
            mv = client.get_model_version_by_alias(model_name, model_alias)
    except Exception as exc:
        raise _mlflow_error(exc, what) from exc
    if not mv.run_id:
        raise InvalidInput(
            f"{what} has no MLflow run; the reference profile is logged with the training run",
            reason="ReferenceNotFound",
        )
    return MlflowRef(run_id=str(mv.run_id), model_version=str(mv.version))


def download_run_artifact(run_id: str, artifact_path: str) -> bytes:
    mlflow = _mlflow()
    with tempfile.TemporaryDirectory(prefix="recops-drift-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, dst_path=tmp)
        except Exception as exc:
            raise _mlflow_error(exc, f"artifact {artifact_path} of run {run_id}") from exc
        return Path(local).read_bytes()


def log_run_artifact(run_id: str, local_path: Path, artifact_dir: str) -> str:
    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    try:
        client.log_artifact(run_id, str(local_path), artifact_dir)
        run = client.get_run(run_id)
    except Exception as exc:
        raise _mlflow_error(exc, f"logging the report to run {run_id}") from exc
    return f"{run.info.artifact_uri.rstrip('/')}/{artifact_dir}/{local_path.name}"


def monitoring_run(experiment: str, name: str, tags: dict[str, str]) -> str:
    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    try:
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
        run = client.create_run(experiment_id, run_name=name, tags=tags)
    except Exception as exc:
        raise _mlflow_error(exc, f"creating a monitoring run in experiment {experiment}") from exc
    return str(run.info.run_id)


def finish_run(run_id: str, metrics: dict[str, float]) -> None:
    client = _mlflow().MlflowClient()
    try:
        for key, value in metrics.items():
            client.log_metric(run_id, key, value)
        client.set_terminated(run_id)
    except Exception as exc:
        raise _mlflow_error(exc, f"finishing monitoring run {run_id}") from exc


# -------------------------------------------------------------------------------------------- snapshots


def _json(uri: str, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(read_bytes(uri, what=what))
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{what} {uri} is not valid JSON: {exc}", reason="InvalidSnapshot") from exc
    if not isinstance(doc, dict):
        raise InvalidInput(f"{what} {uri} must be a JSON object", reason="InvalidSnapshot")
    return doc


def resolve_snapshot(uri: str) -> tuple[str, dict[str, Any]]:
    """``uri`` is a snapshot (manifest.json) or an output root whose latest.json names one."""
    if exists(join(uri, "manifest.json")):
        return uri, _json(join(uri, "manifest.json"), "snapshot manifest")
    if exists(join(uri, "latest.json")):
        latest = _json(join(uri, "latest.json"), "latest.json")
        ref = str(latest.get("uri") or latest.get("path") or latest.get("version") or "")
        if not ref:
            raise InvalidInput(
                f"{join(uri, 'latest.json')} names no snapshot (uri/path/version)", reason="InvalidSnapshot"
            )
        target = ref if (is_s3(ref) or ref.startswith("/")) else join(uri, ref)
        if not exists(join(target, "manifest.json")):
            target = join(uri, "snapshots", ref) if exists(join(uri, "snapshots", ref, "manifest.json")) else target
        return target, _json(join(target, "manifest.json"), "snapshot manifest")
    raise InvalidInput(
        f"snapshot uri {uri} has neither manifest.json nor latest.json; point it at a snapshot or "
        "a FeaturePipeline output root",
        reason="InvalidSnapshot",
    )


def _table_files(snapshot: str, manifest: dict[str, Any], table: str) -> list[str]:
    tables = manifest.get("tables")
    entry: Any = None
    if isinstance(tables, dict):
        entry = tables.get(table)
    elif isinstance(tables, list):
        entry = next((t for t in tables if isinstance(t, dict) and t.get("name") == table), None)
    if isinstance(entry, dict):
        single = entry.get("file") or entry.get("path")
        files = entry.get("files") or ([single] if single else [])
        names = [f["path"] if isinstance(f, dict) else str(f) for f in files]
        if names:
            return [n if (is_s3(n) or n.startswith("/")) else join(snapshot, n) for n in names]
    single = join(snapshot, f"{table}.parquet")
    if exists(single):
        return [single]
    return [u for u in list_uris(join(snapshot, table)) if u.endswith(".parquet")]


def read_snapshot_columns(
    uri: str, wanted: Iterable[str], tables: list[str] | None = None
) -> tuple[dict[str, Any], int, str]:
    """Columns ``<table>.<column>`` of the newest snapshot -> (columns, rows, snapshot version)."""
    import pyarrow.parquet as pq

    snapshot, manifest = resolve_snapshot(uri)
    by_table: dict[str, list[str]] = {}
    for name in wanted:
        table, _, column = name.partition(".")
        if column and (tables is None or table in tables) and table != "output":
            by_table.setdefault(table, []).append(column)
    columns: dict[str, Any] = {}
    rows = 0
    for table, cols in by_table.items():
        files = _table_files(snapshot, manifest, table)
        if not files:
            continue
        parts = []
        for f in files:
            pf = pq.ParquetFile(io.BytesIO(read_bytes(f, what=f"snapshot table {table}")))
            present = [c for c in cols if c in pf.schema_arrow.names]
            parts.append(pf.read(columns=present))
        import pyarrow as pa

        data = pa.concat_tables(parts, promote_options="default") if len(parts) > 1 else parts[0]
        rows = max(rows, data.num_rows)
        for col in data.column_names:
            arr = data.column(col)
            if pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type) or pa.types.is_boolean(arr.type):
                columns[f"{table}.{col}"] = arr.to_numpy(zero_copy_only=False).astype(np.float32)
            else:
                columns[f"{table}.{col}"] = arr.to_pylist()
    version = str(manifest.get("version") or manifest.get("digest") or "")
    log("Read the feature snapshot", snapshot=snapshot, version=version[:24], tables=len(by_table), rows=rows)
    return columns, rows, version


def read_snapshot_frames(uri: str, tables: list[str] | None = None) -> tuple[dict[str, Any], str]:
    """Whole tables of a snapshot as pandas frames (for building a reference profile)."""
    import pyarrow.parquet as pq

    snapshot, manifest = resolve_snapshot(uri)
    listed = manifest.get("tables")
    names = tables or (
        list(listed)
        if isinstance(listed, dict)
        else [str(t.get("name")) for t in listed or [] if isinstance(t, dict) and t.get("name")]
    )
    frames: dict[str, Any] = {}
    for table in names:
        files = _table_files(snapshot, manifest, table)
        if not files:
            raise InvalidInput(f"snapshot {snapshot} has no table {table!r}", reason="InvalidSnapshot")
        parts = [pq.read_table(io.BytesIO(read_bytes(f, what=f"snapshot table {table}"))) for f in files]
        import pyarrow as pa

        data = pa.concat_tables(parts, promote_options="default") if len(parts) > 1 else parts[0]
        frames[table] = data.to_pandas()
    return frames, str(manifest.get("version") or "")


# ---------------------------------------------------------------------------------------- payload logs


@dataclass
class PayloadWindow:
    records: list[dict[str, Any]] = field(default_factory=list)
    files: int = 0
    bad_lines: int = 0
    other_versions: int = 0


def _parse_ts(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).astimezone(UTC)


def _partition_dates(start: datetime, end: datetime) -> set[str]:
    day, out = start.date(), set()
    while day <= end.date():
        out.add(day.isoformat())
        day += timedelta(days=1)
    return out


def _iter_lines(body: bytes, name: str) -> Iterator[bytes]:
    if name.endswith(".gz"):
        import gzip

        body = gzip.decompress(body)
    yield from body.splitlines()


def read_payload_window(
    uri: str,
    start: datetime,
    end: datetime,
    *,
    model_version: str | None = None,
    max_records: int = 2_000_000,
) -> PayloadWindow:
    """Records with ``start <= ts < end`` from ``<uri>/date=YYYY-MM-DD/*.jsonl[.gz]`` (newest files first)."""
    window = PayloadWindow()
    dates = _partition_dates(start, end)
    files = [u for u in list_uris(uri) if u.endswith((".jsonl", ".jsonl.gz", ".json"))]
    chosen = [u for u in files if any(f"date={d}/" in u for d in dates)] or [u for u in files if "date=" not in u]
    for file_uri in sorted(chosen, reverse=True):
        if len(window.records) >= max_records:
            break
        window.files += 1
        for line in _iter_lines(read_bytes(file_uri, what="payload log"), file_uri):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                window.bad_lines += 1
                continue
            if not isinstance(rec, dict):
                window.bad_lines += 1
                continue
            ts = _parse_ts(rec.get("ts"))
            if ts is None or not (start <= ts < end):
                continue
            if model_version is not None and str(rec.get("modelVersion")) != str(model_version):
                window.other_versions += 1
                continue
            window.records.append(rec)
            if len(window.records) >= max_records:
                break
    return window


def payload_columns(records: list[dict[str, Any]], lookup: S.ItemLookup | None) -> dict[str, Any]:
    """Payload records -> current columns: ``output.popularity`` / ``output.category`` (one value per
    recommended item) when an item lookup is known, and request fields as ``request.*``."""
    columns: dict[str, Any] = {}
    items = [str(i) for rec in records for i in (rec.get("itemIds") or [])]
    if lookup is not None:
        columns.update(S.output_features(items, lookup))
    columns["request.k"] = np.asarray([float(rec.get("k", np.nan) or np.nan) for rec in records], dtype=np.float32)
    columns["request.knownUser"] = [str(rec.get("knownUser")).lower() for rec in records]
    columns["request.fallback"] = [str(rec.get("fallback")).lower() for rec in records]
    columns["request.category"] = [
        str(rec.get("category")) if rec.get("category") is not None else "none" for rec in records
    ]
    return columns


# ------------------------------------------------------------------------------------------ item lookup


def item_lookup_from_model_dir(uri: str) -> S.ItemLookup:
    """item_ids / item_categories / popularity of a recops model directory, each checked against the
    sha256 in MANIFEST.json before it is parsed (``allow_pickle=False``)."""
    manifest = _json(join(uri, "MANIFEST.json"), "model manifest")
    files = manifest.get("files")
    digests: dict[str, str] = {}
    if isinstance(files, dict):
        digests = {k: str(v.get("sha256") if isinstance(v, dict) else v) for k, v in files.items()}
    elif isinstance(files, list):
        digests = {str(f.get("path") or f.get("name")): str(f.get("sha256")) for f in files if isinstance(f, dict)}
    arrays: dict[str, np.ndarray] = {}
    for name in ("item_ids.npy", "item_categories.npy", "popularity.npy"):
        body = read_bytes(join(uri, name), what="model file")
        expected = digests.get(name)
        if expected is None or hashlib.sha256(body).hexdigest() != expected:
            raise InvalidInput(
                f"model file {name} under {uri} does not match MANIFEST.json; refusing it",
                reason="ModelRejected",
            )
        arrays[name] = np.load(io.BytesIO(body), allow_pickle=False)
    return S.ItemLookup(
        tuple(str(i) for i in arrays["item_ids.npy"].tolist()),
        arrays["popularity.npy"].astype(np.float32),
        tuple(str(c) for c in arrays["item_categories.npy"].tolist()),
    )


MODEL_FILES = ("MANIFEST.json", "item_ids.npy", "item_categories.npy", "popularity.npy")


def item_lookup_from_mlflow_model(model_name: str, model_version: str) -> S.ItemLookup:
    """The item lookup of a registered recops model (MLflow pyfunc with the model directory logged as
    artifact ``recops_model``): only the manifest and three small arrays are downloaded."""
    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    try:
        base = str(client.get_model_version_download_uri(model_name, model_version)).rstrip("/")
    except Exception as exc:
        raise _mlflow_error(exc, f"model {model_name} version {model_version}") from exc
    with tempfile.TemporaryDirectory(prefix="recops-drift-model-") as tmp:
        for name in MODEL_FILES:
            try:
                mlflow.artifacts.download_artifacts(artifact_uri=f"{base}/artifacts/recops_model/{name}", dst_path=tmp)
            except Exception as exc:
                raise _mlflow_error(exc, f"{name} of model {model_name} version {model_version}") from exc
        return item_lookup_from_model_dir(tmp)

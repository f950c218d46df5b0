"""Object storage: one small interface over S3 (any S3-compatible endpoint) and local directories.

Keys are ``/``-separated and relative to the store's root. S3 errors are translated into
:class:`~recops_features.errors.InvalidInput` (exit 2: wrong bucket, credentials) or
:class:`~recops_features.errors.DependencyUnavailable` (exit 4: endpoint unreachable, throttled).
The endpoint and credentials come only from the environment (``AWS_ENDPOINT_URL_S3``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``) and are never logged.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from recops_features.errors import DependencyUnavailable, InvalidInput

S3_SCHEME = "s3://"


@dataclass(frozen=True)
class Location:
    """A parsed URI: ``s3://bucket/prefix`` or a local path."""

    scheme: str  # "s3" or "file"
    bucket: str  # "" for local
    path: str  # S3 key prefix (no leading/trailing slash) or absolute local path

    @property
    def uri(self) -> str:
        if self.scheme == "s3":
            return f"s3://{self.bucket}/{self.path}".rstrip("/")
        return self.path

    def child(self, *parts: str) -> Location:
        """The location of ``parts`` below this one."""
        joined = "/".join(p.strip("/") for p in parts if p.strip("/"))
        if self.scheme == "s3":
            return Location("s3", self.bucket, f"{self.path}/{joined}".strip("/"))
        return Location("file", "", str(Path(self.path, joined)))


def parse_location(uri: str) -> Location:
    """Parse ``s3://bucket/prefix``, ``file:///dir`` or a plain path."""
    if uri.startswith(S3_SCHEME):
        rest = uri[len(S3_SCHEME) :]
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise InvalidInput("InvalidUri", f"{uri!r} names no bucket; use s3://BUCKET/PREFIX")
        return Location("s3", bucket, key.strip("/"))
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    if "://" in uri:
        raise InvalidInput("InvalidUri", f"{uri!r} is neither s3://BUCKET/PREFIX nor a local path")
    return Location("file", "", str(Path(uri).resolve()))


class Store(Protocol):
    """What the job needs from a storage backend."""

    def keys(self, loc: Location) -> list[str]:
        """Full keys/paths of all objects at or below ``loc``, sorted."""

    def read(self, loc: Location, key: str) -> bytes:
        """Bytes of one object given by its full key/path as returned by :meth:`keys`."""

    def read_optional(self, loc: Location) -> bytes | None:
        """Bytes of the object at ``loc`` or ``None`` when it does not exist."""

    def write(self, loc: Location, data: bytes) -> None:
        """Write one object (atomically: readers see the old or the new bytes)."""


def s3_client() -> Any:
    """A boto3 S3 client from the environment (endpoint from ``AWS_ENDPOINT_URL_S3``), with short timeouts."""
    import boto3
    from botocore.config import Config

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    config = Config(
        connect_timeout=float(os.environ.get("RECOPS_S3_CONNECT_TIMEOUT", "5")),
        read_timeout=60,
        retries={"max_attempts": int(os.environ.get("RECOPS_S3_MAX_ATTEMPTS", "3")), "mode": "standard"},
        s3={"addressing_style": "path"},
    )
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    return boto3.client("s3", region_name=region, endpoint_url=endpoint, config=config)


def _s3_error(exc: Exception, what: str, field: str) -> Exception:
    """Translate a botocore exception into a JobError naming the input and the fix."""
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError)):
        return DependencyUnavailable(
            "S3Unavailable",
            f"Could not reach the S3 endpoint while reading {what} ({field}): {type(exc).__name__}; "
            "check AWS_ENDPOINT_URL_S3 and that the object store is up, then retry.",
        )
    if isinstance(exc, NoCredentialsError):
        return InvalidInput(
            "S3CredentialsMissing",
            f"No S3 credentials to access {what} ({field}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(from the pipeline's credentials Secret).",
        )
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code == "NoSuchBucket":
            return InvalidInput(
                "BucketNotFound", f"The bucket of {what} does not exist ({field}); create it or fix the URI."
            )
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
            return InvalidInput(
                "S3AccessDenied",
                f"S3 refused access to {what} ({field}, {code}); check the credentials Secret and bucket policy.",
            )
        if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"):
            return DependencyUnavailable(
                "S3Unavailable", f"S3 answered {code or status} for {what} ({field}); retry later."
            )
        return InvalidInput("S3RequestFailed", f"S3 answered {code or status} for {what} ({field}); check the URI.")
    return exc


class S3Store:
    """S3 or any S3-compatible endpoint (moto, MinIO, Ceph)."""

    def __init__(self, client: Any | None = None, what: str = "an object", field: str = "uri") -> None:
        self._client = client
        self.what = what
        self.field = field

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = s3_client()
        return self._client

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            translated = _s3_error(exc, self.what, self.field)
            if translated is exc:
                raise
            raise translated from exc

    def keys(self, loc: Location) -> list[str]:
        keys: list[str] = []
        prefix = loc.path + "/" if loc.path else ""
        with self._translated():
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=loc.bucket, Prefix=prefix):
                keys.extend(obj["Key"] for obj in page.get("Contents", []))
            if not keys and loc.path:
                # loc may name a single object rather than a prefix.
                with contextlib.suppress(Exception):
                    self.client.head_object(Bucket=loc.bucket, Key=loc.path)
                    keys.append(loc.path)
        return sorted(keys)

    def list_prefixes(self, loc: Location) -> list[str]:
        """Immediate "sub-directories" of ``loc`` (names only)."""
        names: list[str] = []
        prefix = loc.path + "/" if loc.path else ""
        with self._translated():
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=loc.bucket, Prefix=prefix, Delimiter="/"):
                names.extend(p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", []))
        return sorted(names)

    def read(self, loc: Location, key: str) -> bytes:
        with self._translated():
            body: bytes = self.client.get_object(Bucket=loc.bucket, Key=key)["Body"].read()
        return body

    def read_optional(self, loc: Location) -> bytes | None:
        from botocore.exceptions import ClientError

        with self._translated():
            try:
                body: bytes = self.client.get_object(Bucket=loc.bucket, Key=loc.path)["Body"].read()
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    return None
                raise
        return body

    def write(self, loc: Location, data: bytes, content_type: str = "application/octet-stream") -> None:
        with self._translated():
            self.client.put_object(Bucket=loc.bucket, Key=loc.path, Body=data, ContentType=content_type)

    def exists(self, loc: Location) -> bool:
        from botocore.exceptions import ClientError

        with self._translated():
            try:
                self.client.head_object(Bucket=loc.bucket, Key=loc.path)
                return True
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                    return False
                raise

    def check_bucket(self, loc: Location) -> None:
        """Raise a clear error when the bucket is missing or unreachable."""
        from botocore.exceptions import ClientError

        with self._translated():
            try:
                self.client.head_bucket(Bucket=loc.bucket)
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchBucket", "NotFound"):
                    raise InvalidInput(
                        "BucketNotFound",
                        f"The bucket {loc.bucket} of {self.what} does not exist "
                        f"({self.field}); create it or fix the URI.",
                    ) from exc
                raise


class LocalStore:
    """A local directory standing in for a bucket (tests, the local backend, NFS/PVC mounts)."""

    def __init__(self, what: str = "a file", field: str = "uri") -> None:
        self.what = what
        self.field = field

    def keys(self, loc: Location) -> list[str]:
        root = Path(loc.path)
        if root.is_file():
            return [str(root)]
        if not root.is_dir():
            raise InvalidInput("InputNotFound", f"{self.what} {loc.uri} does not exist ({self.field}); fix the path.")
        return sorted(
            str(p)
            for p in root.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
        )

    def list_prefixes(self, loc: Location) -> list[str]:
        root = Path(loc.path)
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if p.is_dir())

    def read(self, loc: Location, key: str) -> bytes:
        return Path(key).read_bytes()

    def read_optional(self, loc: Location) -> bytes | None:
        try:
            return Path(loc.path).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, loc: Location, data: bytes, content_type: str = "") -> None:
        atomic_write_file(Path(loc.path), data)

    def exists(self, loc: Location) -> bool:
        return Path(loc.path).exists()


def store_for(
    loc: Location, what: str = "an object", field: str = "uri", client: Any | None = None
) -> S3Store | LocalStore:
    """The store serving ``loc``."""
    if loc.scheme == "s3":
        return S3Store(client=client, what=what, field=field)
    return LocalStore(what=what, field=field)


def atomic_write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def temp_dir_name(version: str) -> str:
    """Name of a staging directory: hidden, and naming its owner so stale ones can be swept."""
    return f".tmp-{version[:16]}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def sweep_stale_temp_dirs(root: Path, older_than_seconds: float = 3600.0) -> list[str]:
    """Remove staging dirs left by killed runs: our host's dead pids at once, others after an hour."""
    removed: list[str] = []
    if not root.is_dir():
        return removed
    host = socket.gethostname()
    now = time.time()
    for entry in root.iterdir():
        if not (entry.is_dir() and entry.name.startswith(".tmp-")):
            continue
        parts = entry.name.split("-")
        stale = False
        try:
            pid = int(parts[-2])
            same_host = "-".join(parts[2:-2]) == host
        except (ValueError, IndexError):
            pid, same_host = -1, False
        if same_host and pid > 0 and pid != os.getpid():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                stale = True
            except PermissionError:
                stale = False
        if not stale:
            with contextlib.suppress(FileNotFoundError):
                stale = now - entry.stat().st_mtime > older_than_seconds
        if stale:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed

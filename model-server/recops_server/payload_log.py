"""Sampled payload logging for drift monitoring, off the request path.

The request path only does ``random() < rate`` and appends a dict (with the clock reading) to a bounded
deque (dropping and counting when full). A background task stamps and serialises the records and writes
them in batches as JSON lines files, to a local directory or an S3 prefix, one file per flush::

    <dir or s3://bucket/prefix>/date=YYYY-MM-DD/payloads-<unix ms>-<random>.jsonl

One record per recommended list::

    {"ts": "2026-01-01T00:00:00.123Z", "model": "recs", "modelVersion": "3", "route": "single",
     "userId": "u1", "k": 10, "category": null, "excludeSeen": true, "excludeCount": 0,
     "knownUser": true, "fallback": false, "itemIds": ["i1", ...], "scores": [0.91, ...]}
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

import orjson

from .metrics import Metrics

log = logging.getLogger("recops_server.payloads")


class PayloadLogger:
    def __init__(
        self,
        metrics: Metrics,
        *,
        sample_rate: float,
        local_dir: str | None = None,
        s3_uri: str | None = None,
        flush_seconds: float = 5.0,
        max_records_per_file: int = 5000,
        queue_size: int = 20000,
    ) -> None:
        self.metrics = metrics
        self.enabled = sample_rate > 0 and bool(local_dir or s3_uri)
        self.sample_rate = sample_rate
        self.local_dir = Path(local_dir) if local_dir else None
        self.s3_uri = s3_uri
        self.flush_seconds = flush_seconds
        self.max_records = max_records_per_file
        self._queue: deque[tuple[float, dict[str, Any]]] = deque()
        self._queue_size = queue_size
        self._rand = random.random
        self._s3: Any = None
        self.files_written = 0

    def sampled(self) -> bool:
        return self.enabled and self._rand() < self.sample_rate

    def offer(self, record: dict[str, Any]) -> None:
        """Called on the request path for a sampled request: O(1), never blocks, never raises."""
        if len(self._queue) >= self._queue_size:
            self.metrics.payload_records.labels("dropped").inc()
            return
        self._queue.append((time.time(), record))  # "ts" is formatted by the writer, off the request path

    def _take(self) -> list[tuple[float, dict[str, Any]]]:
        out: list[tuple[float, dict[str, Any]]] = []
        q = self._queue
        while q and len(out) < self.max_records:
            out.append(q.popleft())
        return out

    def _write(self, records: list[tuple[float, dict[str, Any]]]) -> None:
        parts: list[bytes] = []
        for start in range(0, len(records), _YIELD_EVERY):
            parts.extend([json_line(_stamped(t, r)) for t, r in records[start : start + _YIELD_EVERY]])
            time.sleep(_YIELD_SECONDS)  # hand the GIL (and the core) back to the event loop
        body = b"".join(parts)
        now = time.time()
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        rel = f"date={day}/payloads-{int(now * 1000)}-{uuid.uuid4().hex[:8]}.jsonl"
        if self.local_dir is not None:
            path = self.local_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".jsonl.tmp")
            tmp.write_bytes(body)
            tmp.replace(path)  # readers never see a half-written file
        if self.s3_uri:
            if self._s3 is None:
                import boto3

                self._s3 = boto3.client("s3")
            bucket, _, prefix = self.s3_uri.removeprefix("s3://").partition("/")
            key = f"{prefix.rstrip('/')}/{rel}" if prefix else rel
            self._s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/x-ndjson")
        self.files_written += 1

    async def flush(self) -> int:
        written = 0
        while self._queue:
            batch = self._take()
            try:
                await asyncio.to_thread(self._write, batch)
            except Exception as exc:
                self.metrics.payload_records.labels("dropped").inc(len(batch))
                log.warning("Could not write %d payload records: %s", len(batch), exc)
                return written
            self.metrics.payload_records.labels("written").inc(len(batch))
            written += len(batch)
        return written

    async def run(self) -> None:
        """Flush every ``flush_seconds`` (the lifespan cancels this task and flushes once more)."""
        while True:
            await asyncio.sleep(self.flush_seconds)
            await self.flush()


# Records serialised between two hand-offs of the GIL to the event loop. Without them a flush (thousands of
# records every 5 s at 10k+ requests/s) held the GIL for 5 ms switch intervals at a time: bench_server at
# 10k items, 10% sampled, p99 5.1-9.9 ms without, 2.8-4.5 ms with a 0.5 ms sleep, 3.3-4.9 ms with sleep(0).
_YIELD_EVERY = 64
_YIELD_SECONDS = 0.0005


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def _stamped(t: float, record: dict[str, Any]) -> dict[str, Any]:
    """The record with its "ts" (when it was offered), unless it brought one: ``setdefault``, last key."""
    if "ts" not in record:
        record["ts"] = _iso(t)
    return record


_MIN_PLAIN = 1e-4  # from here up, orjson and repr() spell every float alike
_MAX_FLOAT = sys.float_info.max


_SCALARS = frozenset({str, int, bool, type(None)})
_NUMBERS = frozenset({float, int, bool})


def _plain(value: Any) -> bool:
    """Whether orjson writes ``value`` exactly as json.dumps does: str, int, bool, None, finite floats
    of magnitude 1e-4 and up (orjson spells smaller ones another way), and flat lists of strings or of
    such numbers (the strings are checked on the output: see ``json_line``)."""
    t = type(value)
    if t in _SCALARS:
        return True
    if t is float:
        return bool(_MIN_PLAIN <= abs(value) <= _MAX_FLOAT)
    if t is list:
        types = set(map(type, value))
        if types <= {str}:
            return True
        if types <= _NUMBERS:  # finite (else the sum is not) and none too small
            return bool(abs(sum(map(abs, value))) <= _MAX_FLOAT and min(map(abs, value)) >= _MIN_PLAIN)
    return False


def json_line(record: dict[str, Any]) -> bytes:
    """``json.dumps(record, separators=(",", ":"), allow_nan=False) + "\\n"`` as bytes, byte for byte, by
    orjson where the two agree: every value plain (``_plain``) and no string that json.dumps escapes
    (orjson's output then holds no backslash, no byte outside ASCII, no DEL)."""
    if all(map(_plain, record.values())) and set(map(type, record)) <= {str}:
        try:
            out = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        except (TypeError, ValueError):
            pass
        else:
            if out.isascii() and b"\\" not in out and b"\x7f" not in out:
                return out
    return (json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n").encode()

"""Sampled payload logging for drift monitoring, off the request path.

The request path only does ``random() < rate`` and appends a dict to a bounded deque (dropping and
counting when full). A background task writes the records in batches as JSON lines files, to a local
directory or an S3 prefix, one file per flush::

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
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

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
        self._queue: deque[dict[str, Any]] = deque()
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
        record.setdefault("ts", _now_iso())
        self._queue.append(record)

    def _take(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        q = self._queue
        while q and len(out) < self.max_records:
            out.append(q.popleft())
        return out

    def _write(self, records: list[dict[str, Any]]) -> None:
        body = "".join(json.dumps(r, separators=(",", ":"), allow_nan=False) + "\n" for r in records).encode()
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


def _now_iso() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"

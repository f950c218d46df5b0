"""Structured log lines on stderr: one JSON object per line, capitalised past-tense messages, no secrets."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

_stream: TextIO | None = None


def set_stream(stream: TextIO | None) -> None:
    """Redirect log lines (tests); ``None`` means ``sys.stderr``."""
    global _stream
    _stream = stream


def log(message: str, level: str = "info", **fields: Any) -> None:
    """Write one structured line, e.g. ``log("Read payload logs", files=3, records=1000)``."""
    record: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "level": level,
        "logger": "recops-drift",
        "msg": message,
    }
    record.update(fields)
    stream = _stream or sys.stderr
    stream.write(json.dumps(record, default=str, separators=(",", ":")) + "\n")
    stream.flush()

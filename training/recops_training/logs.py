"""Structured log lines on stderr (one JSON object per line; capitalised, past-tense messages)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

_SECRET_HINTS = ("token", "secret", "password", "dsn", "key_id", "access_key")


def log(msg: str, level: str = "info", **fields: Any) -> None:
    rec: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "level": level,
        "component": "recops-train",
        "msg": msg,
    }
    for k, v in fields.items():
        if any(h in k.lower() for h in _SECRET_HINTS):
            continue
        rec[k] = v
    print(json.dumps(rec, default=str, separators=(",", ":")), file=sys.stderr, flush=True)

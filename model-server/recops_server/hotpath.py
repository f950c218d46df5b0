"""The hot route ``GET /v1/recommendations/{user_id}`` without the framework in the way.

``parse_one`` reads the path and query string of the common, valid requests itself (pure function).
Whatever it does not fully accept (a bad or repeated parameter, an unknown category, no model yet,
HEAD, a root path) returns ``None`` and goes to the FastAPI route, which also stays for the OpenAPI
schema: error answers are FastAPI's, unchanged. ``render_*`` build the response JSON (orjson, or
json.dumps where the two would differ): byte for byte what ``JSONResponse`` would send.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
from recops_model import Recommendations

from .model_store import LoadedModel

PREFIX = "/v1/recommendations/"
MAX_K = 1000
MAX_ID_LENGTH = 256
MAX_EXCLUDE = 1000
# spellings pydantic certainly reads as booleans; any other goes to FastAPI (which decides as before)
_BOOLS = {"true": True, "false": False, "1": True, "0": False}
_MIN_PLAIN = 1e-4  # from here up, orjson and repr() spell every float alike
_MAX_FLOAT = sys.float_info.max


@dataclass(frozen=True, slots=True)
class OneQuery:
    user_id: str
    k: int
    exclude: tuple[str, ...]
    category: str | None
    exclude_seen: bool


def parse_one(
    path: str, query_string: bytes, *, default_k: int, max_k: int, categories: frozenset[str]
) -> OneQuery | None:
    """The request's parameters if the fast path can answer it exactly as the FastAPI route would."""
    user_id = path[len(PREFIX) :]
    if not path.startswith(PREFIX) or not 0 < len(user_id) <= MAX_ID_LENGTH or "/" in user_id:
        return None
    k = default_k
    exclude: list[str] = []
    category: str | None = None
    exclude_seen = True
    if query_string:
        digits = query_string[2:]
        if query_string[:2] == b"k=" and 0 < len(digits) <= 4 and digits.isdigit() and not digits.startswith(b"0"):
            k = int(digits)  # the common request, "k=<1 to 4 digits>" alone: the checks of the loop below
            return None if k > max_k or k > MAX_K else OneQuery(user_id, k, (), None, True)
        seen_k = seen_cat = seen_es = False
        for key, value in _pairs(query_string.decode("latin-1")):
            if key == "k":
                if seen_k or not (value.isascii() and value.isdigit()) or len(value) > 4 or value[0] == "0":
                    return None
                k, seen_k = int(value), True
                if k > max_k or k > MAX_K:
                    return None
            elif key == "exclude":
                if not value or len(value) > MAX_ID_LENGTH or len(exclude) >= MAX_EXCLUDE:
                    return None
                exclude.append(value)
            elif key == "category":
                if seen_cat or value not in categories or len(value) > MAX_ID_LENGTH:
                    return None
                category, seen_cat = value, True
            elif key == "excludeSeen":
                b = _BOOLS.get(value)
                if seen_es or b is None:
                    return None
                exclude_seen, seen_es = b, True
            # other parameters are ignored, as FastAPI ignores them
    return OneQuery(user_id, k, tuple(exclude), category, exclude_seen)


def _pairs(qs: str) -> list[tuple[str, str]]:
    """``parse_qsl(qs, keep_blank_values=True)`` as Starlette calls it; without escapes a plain split."""
    if "%" in qs or "+" in qs:
        return parse_qsl(qs, keep_blank_values=True)
    out = []
    for field in qs.split("&"):
        if field:
            key, _, value = field.partition("=")
            out.append((key, value))
    return out


def _user(rec: Recommendations) -> dict[str, Any]:
    return {
        "userId": rec.user_id,
        "items": [{"itemId": i, "score": s} for i, s in zip(rec.item_ids, rec.scores, strict=True)],
        "fallback": rec.fallback,
        "fallbackReason": rec.fallback_reason,
    }


def _dumps(obj: dict[str, Any], scores: Iterable[float]) -> bytes:
    """The bytes JSONResponse sends. orjson writes floats with the same shortest round-trip digits as
    ``repr`` but spells magnitudes from 1e-9 to 1e-4 differently (``0.00001`` for ``1e-05``): answers
    with such a score (or a non-finite one, which JSONResponse refuses) go through ``json.dumps``."""
    if all(_MIN_PLAIN <= abs(s) <= _MAX_FLOAT for s in scores):
        return orjson.dumps(obj)
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def render_one(loaded: LoadedModel, rec: Recommendations) -> bytes:
    """The body of GET /v1/recommendations/{user_id}."""
    body = _user(rec)
    body["model"] = loaded.ref()
    return _dumps(body, rec.scores)


def one_headers(loaded: LoadedModel, body: bytes) -> list[tuple[bytes, bytes]]:
    """The headers of a 200 answer of GET /v1/recommendations/{user_id}: what
    ``Response(body, media_type="application/json", headers={"X-Model-Version": ...})`` sends."""
    return [
        (b"x-model-version", loaded.version.encode("latin-1")),
        (b"content-length", str(len(body)).encode()),
        (b"content-type", b"application/json"),
    ]


def render_batch(loaded: LoadedModel, recs: list[Recommendations]) -> bytes:
    """The body of POST /v1/recommendations."""
    body = {"model": loaded.ref(), "results": [_user(r) for r in recs]}
    return _dumps(body, (s for r in recs for s in r.scores))

"""Domain errors and the one place that maps them (and request validation errors) to HTTP."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from recops_model import ModelRejected, UnknownCategory
from starlette.exceptions import HTTPException as StarletteHTTPException


class ServerError(Exception):
    """Base of the errors this server raises on purpose."""

    status = 500
    reason = "InternalError"

    def __init__(self, message: str, *, field: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.retry_after = retry_after


class InvalidInput(ServerError):
    status = 400
    reason = "InvalidInput"


class OutOfRange(InvalidInput):
    status = 422


class UnknownCategoryInput(InvalidInput):
    reason = "UnknownCategory"


class MalformedJson(InvalidInput):
    reason = "MalformedJson"


class UnsupportedMediaType(ServerError):
    status = 415
    reason = "UnsupportedMediaType"


class ModelNotReady(ServerError):
    status = 503
    reason = "ModelNotReady"


class Overloaded(ServerError):
    status = 503
    reason = "Overloaded"


def error_body(status: int, reason: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    err: dict[str, Any] = {"status": status, "reason": reason, "message": message}
    if field is not None:
        err["field"] = field
    err.update(extra)
    return {"error": err}


def error_response(
    status: int,
    reason: str,
    message: str,
    field: str | None = None,
    retry_after: int | None = None,
    **extra: Any,
) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse(error_body(status, reason, message, field, **extra), status_code=status, headers=headers)


def _loc_to_field(loc: tuple[Any, ...] | list[Any]) -> str:
    """('query', 'k') -> 'k'; ('body', 'requests', 3, 'category') -> 'requests[3].category'."""
    parts = list(loc)
    if parts and parts[0] in ("query", "path", "body", "header"):
        parts = parts[1:]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "body"


def map_exception(exc: Exception) -> JSONResponse:
    """Domain error -> HTTP response. Everything the API can answer with besides 200 goes through here."""
    if isinstance(exc, ServerError):
        return error_response(exc.status, exc.reason, exc.message, exc.field, exc.retry_after)
    if isinstance(exc, UnknownCategory):
        return error_response(400, "UnknownCategory", str(exc), "category")
    if isinstance(exc, ModelRejected):  # never reaches a request path, but keep one mapping
        return error_response(503, exc.reason, exc.message, retry_after=1)
    return error_response(500, "InternalError", "the server failed to answer; see its logs")


def install_error_handlers(app: FastAPI) -> None:
    async def on_domain(_: Request, exc: Exception) -> JSONResponse:
        return map_exception(exc)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        for e in errors:
            if e.get("type") == "json_invalid":
                ctx = e.get("ctx") or {}
                return error_response(
                    400,
                    "MalformedJson",
                    f"request body is not valid JSON: {ctx.get('error', 'parse error')}",
                    "body",
                )
        details = [{"field": _loc_to_field(e.get("loc", ())), "message": str(e.get("msg", ""))} for e in errors]
        first = details[0] if details else {"field": "body", "message": "invalid request"}
        message = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
        return error_response(422, "InvalidInput", message, first["field"], details=json.loads(json.dumps(details)))

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        reason = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
        return error_response(exc.status_code, reason, str(exc.detail))

    app.add_exception_handler(ServerError, on_domain)
    app.add_exception_handler(UnknownCategory, on_domain)
    app.add_exception_handler(ModelRejected, on_domain)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)

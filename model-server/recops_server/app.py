"""The FastAPI application: routes, the observability/concurrency middleware and the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError
from recops_model import Recommendations, UnknownCategory, recommend_batch
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .batcher import MicroBatcher
from .errors import (
    InvalidInput,
    MalformedJson,
    ModelNotReady,
    OutOfRange,
    UnknownCategoryInput,
    UnsupportedMediaType,
    error_body,
    install_error_handlers,
)
from .hotpath import (
    MAX_EXCLUDE,
    MAX_ID_LENGTH,
    MAX_K,
    PREFIX,
    OneQuery,
    one_headers,
    parse_one,
    render_batch,
    render_one,
)
from .metrics import Metrics
from .model_store import LoadedModel, ModelStore, Source, make_source
from .payload_log import PayloadLogger
from .settings import ServerSettings

log = logging.getLogger("recops_server")
T = TypeVar("T")

ROUTE_ONE = "/v1/recommendations/{user_id}"
ROUTE_BATCH = "/v1/recommendations"
ROUTE_PING = "/ping"  # SageMaker hosting: the health check
ROUTE_INVOCATIONS = "/invocations"  # SageMaker hosting: the inference path


# ------------------------------------------------------------------ API schema (OpenAPI) -----------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelRef(BaseModel):
    name: str
    version: str
    digest: str


class Item(BaseModel):
    itemId: str
    score: float


class UserRecommendations(BaseModel):
    userId: str | None
    items: list[Item]
    fallback: bool = Field(description="True when the popularity fallback answered (unknown or absent user).")
    fallbackReason: str | None = Field(default=None, description="UnknownUser or NoUser when fallback is true.")


class RecommendationResponse(UserRecommendations):
    model: ModelRef


class BatchItem(_Strict):
    userId: str | None = Field(default=None, max_length=MAX_ID_LENGTH, description="null: popularity fallback")
    k: int | None = Field(default=None, ge=1, le=MAX_K, description="default: the server's default k (10)")
    exclude: list[Annotated[str, Field(max_length=MAX_ID_LENGTH)]] = Field(default_factory=list, max_length=MAX_EXCLUDE)
    category: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    excludeSeen: bool = True


class BatchRequest(_Strict):
    requests: list[BatchItem] = Field(min_length=1)


class SingleInvocation(_Strict):
    """POST /invocations for one user: the parameters of GET /v1/recommendations/{user_id} as a JSON object."""

    user_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, validation_alias=AliasChoices("user_id", "userId"))
    k: int | None = Field(default=None, ge=1, le=MAX_K, description="default: the server's default k (10)")
    exclude: list[Annotated[str, Field(max_length=MAX_ID_LENGTH)]] = Field(default_factory=list, max_length=MAX_EXCLUDE)
    category: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    exclude_seen: bool = Field(default=True, validation_alias=AliasChoices("exclude_seen", "excludeSeen"))


class BatchResponse(BaseModel):
    model: ModelRef
    results: list[UserRecommendations]


class ErrorDetail(BaseModel):
    status: int
    reason: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid input (unknown category, malformed JSON)."},
    422: {"model": ErrorResponse, "description": "A parameter is out of range or of the wrong type."},
    503: {"model": ErrorResponse, "description": "No model loaded yet, or overloaded (see Retry-After)."},
}


INVOCATIONS_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        SingleInvocation.model_json_schema(ref_template="#/components/schemas/{model}"),
                        {"$ref": "#/components/schemas/BatchRequest"},
                    ]
                }
            }
        },
    }
}


def is_json_media_type(content_type: str | None) -> bool:
    """application/json or application/<something>+json (parameters such as charset allowed)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def parse_invocation(content_type: str | None, raw: bytes) -> SingleInvocation | BatchRequest:
    """The body of POST /invocations: a JSON object with ``requests`` is a batch (the POST /v1/recommendations
    body), any other is one user's request. Bad input raises the error the client gets (415, 400, 422)."""
    if not is_json_media_type(content_type):
        got = f"Content-Type {content_type[:100]!r}" if content_type else "no Content-Type"
        raise UnsupportedMediaType(
            f"{ROUTE_INVOCATIONS} accepts application/json only, got {got}: send a JSON object with "
            "Content-Type: application/json",
            field="Content-Type",
        )
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise MalformedJson(f"request body is not valid JSON: {exc}", field="body") from None
    model: type[SingleInvocation] | type[BatchRequest] = (
        BatchRequest if isinstance(body, dict) and "requests" in body else SingleInvocation
    )
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


# ------------------------------------------------------------------ runtime state -----------------


class ServerState:
    def __init__(self, settings: ServerSettings, metrics: Metrics, store: ModelStore | None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.store = store
        self.draining = False
        self.in_flight = 0
        local_dir, s3_uri = settings.payload_targets()
        self.payloads = PayloadLogger(
            metrics,
            sample_rate=settings.payload_rate(),
            local_dir=local_dir,
            s3_uri=s3_uri,
            flush_seconds=settings.payload_log_flush_seconds,
            max_records_per_file=settings.payload_log_max_records_per_file,
            queue_size=settings.payload_log_queue_size,
        )
        self.batcher = MicroBatcher(
            in_threadpool=settings.scoring_in_threadpool, observe=self.observe, batch_size=metrics.scoring_batch_size
        )
        metrics.in_flight.set_function(lambda: self.in_flight)

    def model(self) -> LoadedModel:
        current = self.store.current if self.store else None
        if current is None:
            raise ModelNotReady(
                "no verified model is loaded yet; retry shortly",
                retry_after=self.settings.retry_after_seconds,
            )
        return current

    def check_k(self, k: int | None, field: str) -> int:
        if k is None:
            return self.settings.default_k
        if k > self.settings.max_k:
            raise OutOfRange(f"{field}: must be at most {self.settings.max_k} on this server", field=field)
        return k

    async def run(self, fn: Callable[[], T]) -> T:
        if self.settings.scoring_in_threadpool:
            return await run_in_threadpool(fn)
        return fn()

    def observe(self, loaded: LoadedModel, recs: list[Recommendations]) -> None:
        m = self.metrics
        m.recommendations.inc(len(recs))
        idx: list[int] = []
        for r in recs:
            if r.fallback:
                reason = r.fallback_reason or "UnknownUser"
                child = m.fallback_children.get(reason)
                (child or m.fallbacks.labels(reason)).inc()
            if not r.item_ids:
                m.empty_results.inc()
            idx.extend(r.item_indices)
        if idx:
            self.metrics.item_popularity.observe_many(loaded.popularity_percentile[np.asarray(idx, dtype=np.int64)])

    def hot_query(
        self, method: str, path: str, query_string: bytes, root_path: str | None
    ) -> tuple[LoadedModel, OneQuery] | None:
        """The model and the parameters of a GET /v1/recommendations/{user_id} the fast path answers
        (see hotpath.py); None: the FastAPI route answers it."""
        loaded = self.store.current if self.store is not None else None
        if loaded is None or method != "GET" or not path.startswith(PREFIX) or root_path:
            return None
        s = self.settings
        q = parse_one(path, query_string, default_k=s.default_k, max_k=s.max_k, categories=loaded.model.categories)
        return None if q is None else (loaded, q)

    async def one(self, loaded: LoadedModel, q: OneQuery) -> bytes:
        """The body of GET /v1/recommendations/{user_id} (scored in a micro-batch)."""
        rec = await self.batcher.submit(
            loaded, q.user_id, q.k, exclude_seen=q.exclude_seen, exclude=q.exclude, category=q.category
        )
        return self.one_body(loaded, q, rec)

    def one_body(self, loaded: LoadedModel, q: OneQuery, rec: Recommendations) -> bytes:
        """A scored GET /v1/recommendations/{user_id}: its payload record (when sampled) and its body."""
        if self.payloads.sampled():
            self.payloads.offer(self._record(loaded, "single", rec, q.k, q.category, q.exclude_seen, len(q.exclude)))
        return render_one(loaded, rec)

    def log_payloads(self, loaded: LoadedModel, recs: list[Recommendations], req: BatchRequest, ks: list[int]) -> None:
        p = self.payloads
        for r, k, item in zip(recs, ks, req.requests, strict=True):
            if p.sampled():
                p.offer(self._record(loaded, "batch", r, k, item.category, item.excludeSeen, len(item.exclude)))

    def _record(
        self,
        loaded: LoadedModel,
        route: str,
        r: Recommendations,
        k: int,
        category: str | None,
        exclude_seen: bool,
        exclude_count: int,
    ) -> dict[str, Any]:
        """One payload log record (see payload_log.py)."""
        return {
            "deployment": self.settings.deployment,
            "model": loaded.name,
            "modelVersion": loaded.version,
            "route": route,
            "userId": r.user_id,
            "k": k,
            "category": category,
            "excludeSeen": exclude_seen,
            "excludeCount": exclude_count,
            "knownUser": r.user_id is not None and r.user_id in loaded.model.user_index,
            "fallback": r.fallback,
            "itemIds": r.item_ids,
            "scores": r.scores,
        }


# ------------------------------------------------------------------ middleware --------------------


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path:
        return str(path)
    p = scope.get("path", "")
    if p.startswith("/v1/recommendations/"):
        return ROUTE_ONE
    known = (ROUTE_BATCH, ROUTE_INVOCATIONS, ROUTE_PING, "/healthz", "/readyz", "/metrics", "/v1/model")
    return p if p in known else "unmatched"


class ObservabilityMiddleware:
    """Latency/status metrics for every request; the concurrency limit (503 + Retry-After) for /v1 and
    /invocations;
    the fast path of GET /v1/recommendations/{user_id} (see hotpath.py). Under ``recops-serve`` most hot
    requests never get here: uvicorn's protocol answers them (rawpath.py) with the same checks and metrics.

    Pure ASGI (no BaseHTTPMiddleware overhead). Probes and /metrics are never limited.
    """

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        st = self.state
        m = st.metrics
        start = time.perf_counter()
        method = scope["method"]
        path = scope["path"]
        limited = path.startswith("/v1/") or path == ROUTE_INVOCATIONS
        if limited and st.in_flight >= st.settings.max_concurrency:
            m.overload_rejections.inc()
            retry = st.settings.retry_after_seconds
            body = error_body(
                503, "Overloaded",
                f"the server is at its concurrency limit ({st.settings.max_concurrency} requests); "
                f"retry after {retry}s",
            )  # fmt: skip
            await JSONResponse(body, status_code=503, headers={"Retry-After": str(retry)})(scope, receive, send)
            m.observe_request(_route_of(scope), method, 503, time.perf_counter() - start)
            return
        status = 500
        route: str | None = None
        if limited:
            st.in_flight += 1
        try:
            hot = st.hot_query(method, path, scope["query_string"], scope.get("root_path"))
            if hot is not None:
                loaded, query = hot
                route = ROUTE_ONE
                answer = await st.one(loaded, query)
                headers = one_headers(loaded, answer)
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": answer})
                status = 200
            else:

                async def send_wrapper(message: Message) -> None:
                    nonlocal status
                    if message["type"] == "http.response.start":
                        status = message["status"]
                    await send(message)

                await self.app(scope, receive, send_wrapper)
        finally:
            if limited:
                st.in_flight -= 1
            m.observe_request(route or _route_of(scope), method, status, time.perf_counter() - start)


# ------------------------------------------------------------------ the app ----------------------


class RecopsAPI(FastAPI):
    """FastAPI with ``ObservabilityMiddleware`` in front of it rather than inside its middleware stack:
    the fast path of the hot route then skips the framework's per-request layers. Unexpected errors
    inside FastAPI still go through its ServerErrorMiddleware (500); on the fast path uvicorn answers
    them with the same plain 500."""

    edge: ObservabilityMiddleware | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.edge is not None and scope["type"] == "http":
            await self.edge(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(settings: ServerSettings | None = None, *, source: Source | None = None) -> FastAPI:
    """Build the app. Nothing is loaded here: the model is loaded in the lifespan (startup)."""
    settings = settings or ServerSettings()
    metrics = Metrics()
    state = ServerState(settings, metrics, None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        src = source or make_source(
            settings.model_uri, settings.model_name, settings.download_dir, settings.model_version
        )
        state.store = ModelStore(src, metrics)
        attempt = await state.store.refresh()
        if attempt.result != "loaded":
            log.error(
                "Started without a model (%s: %s); readyz stays 503 until one loads",
                attempt.reason,
                attempt.message,
            )
        tasks: list[asyncio.Task[None]] = []
        if settings.reload_interval_seconds > 0:
            tasks.append(asyncio.create_task(state.store.poll_forever(settings.reload_interval_seconds)))
        if state.payloads.enabled:
            tasks.append(asyncio.create_task(state.payloads.run()))
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            if state.payloads.enabled:
                await state.payloads.flush()

    app = RecopsAPI(
        title="Recops model server",
        version="1",
        description="Top-k recommendations from a verified Recops model version, with seen-item filtering "
        "and a popularity fallback for unknown users.",
        lifespan=lifespan,
    )
    app.state.recops = state
    install_error_handlers(app)
    app.edge = ObservabilityMiddleware(functools.partial(FastAPI.__call__, app), state)

    @app.get(
        ROUTE_ONE,
        response_model=RecommendationResponse,
        responses=ERROR_RESPONSES,
        summary="Top-k recommendations for one user",
        tags=["recommendations"],
    )
    async def recommendations_for_user(
        user_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)],
        k: Annotated[int | None, Query(ge=1, le=MAX_K, description="How many items (1..max k, default 10).")] = None,
        exclude: Annotated[
            list[Annotated[str, Field(max_length=MAX_ID_LENGTH)]],
            Query(max_length=MAX_EXCLUDE, description="Item ids never to return (repeatable)."),
        ] = [],  # noqa: B006 - FastAPI copies defaults
        category: Annotated[str | None, Query(max_length=MAX_ID_LENGTH, description="Only this category.")] = None,
        exclude_seen: Annotated[bool, Query(alias="excludeSeen", description="Drop items the user saw.")] = True,
    ) -> Response:
        return await answer_one(user_id, k, exclude, category, exclude_seen)

    @app.post(
        ROUTE_BATCH,
        response_model=BatchResponse,
        responses=ERROR_RESPONSES,
        summary="Top-k recommendations for many users (one model version for all)",
        tags=["recommendations"],
    )
    async def recommendations_batch(req: BatchRequest) -> Response:
        return await answer_batch(req)

    @app.post(
        ROUTE_INVOCATIONS,
        response_model=RecommendationResponse | BatchResponse,
        responses={
            **ERROR_RESPONSES,
            415: {"model": ErrorResponse, "description": "The Content-Type is not application/json."},
        },
        summary="SageMaker hosting inference: one user's request or a batch (the body of POST /v1/recommendations)",
        description='`{"user_id": "u1", "k": 10, "exclude": [], "category": null}` answers as '
        'GET /v1/recommendations/{user_id}; `{"requests": [...]}` answers as POST /v1/recommendations.',
        tags=["sagemaker"],
        openapi_extra=INVOCATIONS_BODY,
    )
    async def invocations(request: Request) -> Response:
        req = parse_invocation(request.headers.get("content-type"), await request.body())
        if isinstance(req, BatchRequest):
            return await answer_batch(req)
        return await answer_one(req.user_id, req.k, req.exclude, req.category, req.exclude_seen)

    async def answer_one(
        user_id: str, k: int | None, exclude: Sequence[str], category: str | None, exclude_seen: bool
    ) -> Response:
        """GET /v1/recommendations/{user_id} (when the fast path did not answer) and one-user /invocations."""
        k = state.check_k(k, "k")
        loaded = state.model()
        if category is not None and category not in loaded.model.categories:
            raise UnknownCategory(category, loaded.model.categories)
        body = await state.one(loaded, OneQuery(user_id, k, tuple(exclude), category, exclude_seen))
        return Response(body, media_type="application/json", headers={"X-Model-Version": loaded.version})

    async def answer_batch(req: BatchRequest) -> Response:
        """POST /v1/recommendations and batch /invocations."""
        if len(req.requests) > settings.max_batch_requests:
            raise InvalidInput(
                f"requests: at most {settings.max_batch_requests} entries per batch, got {len(req.requests)}",
                field="requests",
            )
        ks = [state.check_k(r.k, f"requests[{i}].k") for i, r in enumerate(req.requests)]
        loaded = state.model()
        model = loaded.model
        for i, r in enumerate(req.requests):
            if r.category is not None and r.category not in model.categories:
                exc = UnknownCategory(r.category, model.categories)
                raise UnknownCategoryInput(f"requests[{i}].{exc}", field=f"requests[{i}].category")
        groups: dict[tuple[bool, tuple[str, ...], str | None], list[int]] = defaultdict(list)
        for i, r in enumerate(req.requests):
            groups[(r.excludeSeen, tuple(r.exclude), r.category)].append(i)

        def score() -> list[Recommendations]:
            out: list[Recommendations | None] = [None] * len(req.requests)
            for (seen, excl, cat), positions in groups.items():
                kmax = max(ks[i] for i in positions)
                recs = recommend_batch(
                    model, [req.requests[i].userId for i in positions], kmax,
                    exclude_seen=seen, exclude_items=excl, category=cat,
                )  # fmt: skip
                for i, r in zip(positions, recs, strict=True):
                    k = ks[i]
                    if k < kmax:
                        r = Recommendations(
                            r.user_id,
                            r.item_ids[:k],
                            r.scores[:k],
                            r.fallback,
                            r.fallback_reason,
                            r.item_indices[:k],
                        )
                    out[i] = r
            return [r for r in out if r is not None]

        recs = await state.run(score)
        state.observe(loaded, recs)
        state.log_payloads(loaded, recs, req, ks)
        return Response(
            render_batch(loaded, recs), media_type="application/json", headers={"X-Model-Version": loaded.version}
        )

    @app.get("/v1/model", summary="The served model version and the latest load attempts", tags=["model"])
    async def model_info() -> dict[str, Any]:
        loaded = state.model()
        return {**loaded.info(), "categories": sorted(loaded.model.categories)[:1000], **_status(state)}

    @app.get("/healthz", summary="Liveness: the process answers", tags=["probes"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    def readiness() -> JSONResponse:
        store = state.store
        ready = bool(store and store.current) and not state.draining
        body: dict[str, Any] = {
            "ready": ready,
            "modelVersion": store.current.version if store and store.current else None,
            "deployment": settings.deployment,
            **_status(state),
        }
        if not ready:
            body["reason"] = "Draining" if state.draining else "NoModel"
        return JSONResponse(body, status_code=200 if ready else 503)

    not_ready: dict[int | str, dict[str, Any]] = {
        503: {"description": "No verified model loaded, or draining after SIGTERM."}
    }

    @app.get(
        "/readyz",
        summary="Readiness: a verified model is loaded (and the server is not draining)",
        tags=["probes"],
        responses=not_ready,
    )
    async def readyz() -> Response:
        return readiness()

    @app.get(
        ROUTE_PING,
        summary="SageMaker hosting health check: the same answer as /readyz",
        tags=["sagemaker"],
        responses=not_ready,
    )
    async def ping() -> Response:
        return readiness()

    @app.get("/metrics", summary="Prometheus metrics", tags=["probes"], response_class=Response)
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _status(state: ServerState) -> dict[str, Any]:
    return state.store.status() if state.store else {"model": None, "lastAttempt": None, "refusedVersions": []}

"""The hot route's fast path (parser, renderer) and the micro-batcher: same answers as the FastAPI route
and as ``recommend()`` one user at a time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import numpy as np
import pytest
import recops_server.batcher as server_batcher
import scipy.sparse as sp
from fastapi.testclient import TestClient
from recops_model import RecModel, Recommendations, recommend
from recops_server.batcher import MicroBatcher
from recops_server.hotpath import OneQuery, parse_one, render_batch, render_one
from recops_server.metrics import Metrics
from recops_server.model_store import LoadedModel
from server_testlib import tiny_model

CATS = frozenset({"x", "y"})


def parse(path: str, qs: bytes, max_k: int = 1000) -> OneQuery | None:
    return parse_one(path, qs, default_k=10, max_k=max_k, categories=CATS)


@pytest.mark.parametrize(
    ("path", "qs", "expected"),
    [
        ("/v1/recommendations/u1", b"", OneQuery("u1", 10, (), None, True)),
        ("/v1/recommendations/u1", b"k=3", OneQuery("u1", 3, (), None, True)),
        ("/v1/recommendations/u 1", b"k=3&exclude=a&exclude=b%20c&category=y&excludeSeen=false&other=1",
         OneQuery("u 1", 3, ("a", "b c"), "y", False)),
        ("/v1/recommendations/u1", b"exclude=a+b&&k=1000", OneQuery("u1", 1000, ("a b",), None, True)),
        ("/v1/recommendations/\u00e9t\u00e9", b"excludeSeen=1", OneQuery("\u00e9t\u00e9", 10, (), None, True)),
    ],
)  # fmt: skip
def test_parse_accepts_the_common_valid_requests(path: str, qs: bytes, expected: OneQuery) -> None:
    assert parse(path, qs) == expected


@pytest.mark.parametrize(
    ("path", "qs"),
    [
        ("/v1/recommendations/", b""),  # no user id
        ("/v1/recommendations/a/b", b""),  # not this route
        ("/v1/recommendations/" + "u" * 257, b""),  # too long: FastAPI's 422
        ("/v1/recommendations/u1", b"k=0"),
        ("/v1/recommendations/u1", b"k=1001"),
        ("/v1/recommendations/u1", b"k=010"),
        ("/v1/recommendations/u1", b"k=ten"),
        ("/v1/recommendations/u1", b"k=%EF%BC%93"),  # a full-width digit
        ("/v1/recommendations/u1", b"k="),
        ("/v1/recommendations/u1", b"k=2&k=3"),  # repeated scalar: FastAPI decides
        ("/v1/recommendations/u1", b"excludeSeen=maybe"),
        ("/v1/recommendations/u1", b"excludeSeen=yes"),  # valid for pydantic, left to it
        ("/v1/recommendations/u1", b"category=shoes"),  # unknown category: FastAPI's 400
        ("/v1/recommendations/u1", b"category=x&category=y"),
        ("/v1/recommendations/u1", b"exclude="),
        ("/v1/recommendations/u1", b"exclude=" + b"a" * 257),
    ],
)
def test_parse_leaves_everything_else_to_fastapi(path: str, qs: bytes) -> None:
    assert parse(path, qs) is None


def test_parse_respects_the_servers_max_k() -> None:
    assert parse("/v1/recommendations/u1", b"k=4", max_k=3) is None
    assert parse("/v1/recommendations/u1", b"k=3", max_k=3) == OneQuery("u1", 3, (), None, True)


def _json_response_bytes(obj: object) -> bytes:
    """What Starlette's JSONResponse renders."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


def test_render_is_byte_for_byte_json_response() -> None:
    model = tiny_model()
    loaded = LoadedModel.build(model, 'm"\u00e9', "7", "src")
    recs = [
        Recommendations("u1", ["d", "b"], [2.0, 0.5], False, None, [3, 1]),
        Recommendations('\u00e9"\\\n', ["a"], [1e-05], True, "UnknownUser", [0]),
        Recommendations(None, [], [], True, "NoUser", []),
        Recommendations("u2", ["c", "a"], [0.1 + 0.2, 1.2345678e20], False, None, [2, 0]),
    ]
    for r in recs:
        expected = {**r.to_dict(), "model": loaded.ref()}
        assert render_one(loaded, r) == _json_response_bytes(expected)
    assert render_batch(loaded, recs) == _json_response_bytes(
        {"model": loaded.ref(), "results": [r.to_dict() for r in recs]}
    )
    assert render_batch(loaded, []) == _json_response_bytes({"model": loaded.ref(), "results": []})
    # scores of every magnitude (orjson and repr() spell some exponents differently)
    rng = np.random.default_rng(0)
    scores = (rng.standard_normal(3000) * 10.0 ** rng.integers(-12, 25, 3000)).astype(np.float32).tolist()
    for i in range(0, 3000, 10):
        r = Recommendations("u", [f"i{j}" for j in range(10)], scores[i : i + 10], False, None, list(range(10)))
        assert render_one(loaded, r) == _json_response_bytes({**r.to_dict(), "model": loaded.ref()})


@pytest.mark.parametrize(
    ("fast", "slow"),
    [
        ("k=3", "k=3&excludeSeen=yes"),
        ("k=3&exclude=d", "k=3&exclude=d&excludeSeen=on"),
        ("category=y", "category=y&excludeSeen=True"),
        ("k=2&excludeSeen=false", "k=2&excludeSeen=no"),
    ],
)
def test_fast_path_answers_exactly_as_the_fastapi_route(client: TestClient, fast: str, slow: str) -> None:
    # the same request spelled so that the fast parser takes one and leaves the other to FastAPI
    assert parse("/v1/recommendations/u1", fast.encode()) is not None
    assert parse("/v1/recommendations/u1", slow.encode()) is None
    a, b = client.get(f"/v1/recommendations/u1?{fast}"), client.get(f"/v1/recommendations/u1?{slow}")
    assert a.status_code == b.status_code == 200
    assert a.content == b.content
    for h in ("content-type", "x-model-version", "content-length"):
        assert a.headers[h] == b.headers[h], h


def _model(n_users: int = 50, n_items: int = 300, f: int = 8) -> RecModel:
    rng = np.random.default_rng(3)
    return RecModel(
        algorithm="puresvd",
        kind="factors",
        user_ids=np.array([f"u{i}" for i in range(n_users)]),
        item_ids=np.array([f"i{i}" for i in range(n_items)]),
        seen=sp.random(n_users, n_items, density=0.05, random_state=3, format="csr", dtype=np.float32),
        popularity=rng.random(n_items).astype(np.float32),
        item_categories=np.array([f"c{i % 3}" for i in range(n_items)]),
        user_factors=rng.standard_normal((n_users, f)).astype(np.float32),
        item_factors=rng.standard_normal((n_items, f)).astype(np.float32),
    )


QUERIES = [
    ("u1", 5, True, (), None),
    ("u2", 5, True, (), None),
    ("nobody", 5, True, (), None),
    (None, 3, True, (), "c1"),
    ("u3", 7, False, ("i1", "i2"), "c2"),
    ("u4", 5, True, (), None),
    ("u3", 1, True, (), None),
]


def _run_batch(batcher: MicroBatcher, loaded: LoadedModel) -> list[Recommendations]:
    async def go() -> list[Recommendations]:
        futs = [
            batcher.submit(loaded, u, k, exclude_seen=es, exclude=ex, category=cat) for u, k, es, ex, cat in QUERIES
        ]
        return list(await asyncio.gather(*futs))

    return asyncio.run(go())


@pytest.mark.parametrize("inline_scores", [server_batcher.INLINE_SCORES, 0])
def test_micro_batch_equals_one_user_at_a_time(monkeypatch: pytest.MonkeyPatch, inline_scores: int) -> None:
    monkeypatch.setattr(server_batcher, "INLINE_SCORES", inline_scores)  # 0: every batch in the thread pool
    model = _model()
    loaded = LoadedModel.build(model, "m", "1", "src")
    metrics = Metrics()
    observed: list[int] = []
    batcher = MicroBatcher(
        in_threadpool=True, observe=lambda _, recs: observed.append(len(recs)), batch_size=metrics.scoring_batch_size
    )
    got = _run_batch(batcher, loaded)
    for (u, k, es, ex, cat), rec in zip(QUERIES, got, strict=True):
        alone = recommend(model, u, k, exclude_seen=es, exclude_items=ex, category=cat)
        # a batch is one matrix product, a lone user a matrix-vector product: BLAS sums in another
        # order, so a score may differ in float32's last bit (the ranking here does not)
        assert (rec.user_id, rec.item_ids, rec.fallback, rec.fallback_reason) == (
            alone.user_id,
            alone.item_ids,
            alone.fallback,
            alone.fallback_reason,
        )
        assert rec.scores == pytest.approx(alone.scores, rel=1e-6)
        assert rec.item_indices == [loaded.model.item_index[i] for i in rec.item_ids]
    # submitted in one loop iteration: one batch, scored per (k, filters) group
    assert metrics.registry.get_sample_value("recops_scoring_batch_size_count") == 1
    assert metrics.registry.get_sample_value("recops_scoring_batch_size_sum") == len(QUERIES)
    assert sorted(observed) == [1, 1, 1, 4]  # u1, u2, nobody, u4 share k=5 and no filters


def test_micro_batch_scoring_error_reaches_every_request(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> list[Recommendations]:
        raise RuntimeError("scoring failed")

    monkeypatch.setattr(server_batcher, "recommend_batch", broken)
    batcher = MicroBatcher(in_threadpool=False, observe=lambda *_: None)
    with pytest.raises(RuntimeError, match="scoring failed"):
        _run_batch(batcher, LoadedModel.build(_model(), "m", "1", "src"))


def test_concurrent_requests_are_scored_together(make_client: Callable[..., TestClient]) -> None:
    """Through the app: requests that arrive in one loop iteration share one matrix product."""
    c = make_client()
    app = c.app

    async def many() -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []

        async def one(user: str) -> None:
            sent: dict[str, object] = {}

            async def receive() -> dict[str, object]:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: dict[str, object]) -> None:
                sent.update(message)

            scope = {
                "type": "http", "method": "GET", "path": f"/v1/recommendations/{user}", "root_path": "",
                "query_string": b"k=2", "headers": [], "http_version": "1.1", "scheme": "http",
                "asgi": {"version": "3.0"},
            }  # fmt: skip
            await app(scope, receive, send)  # type: ignore[arg-type]
            out.append((int(sent.get("status", 0) or 200), bytes(sent["body"])))  # type: ignore[arg-type]

        await asyncio.gather(*(one(u) for u in ("u1", "u2", "u3", "u1")))
        return out

    before = c.app.state.recops.metrics.registry.get_sample_value("recops_scoring_batch_size_count") or 0  # type: ignore[attr-defined]
    answers = c.portal.call(many)  # type: ignore[union-attr]
    registry = c.app.state.recops.metrics.registry  # type: ignore[attr-defined]
    assert registry.get_sample_value("recops_scoring_batch_size_count") == before + 1
    assert len(answers) == 4
    single = {u: c.get(f"/v1/recommendations/{u}?k=2").content for u in ("u1", "u2", "u3")}
    assert sorted(body for _, body in answers) == sorted([single["u1"], single["u2"], single["u3"], single["u1"]])

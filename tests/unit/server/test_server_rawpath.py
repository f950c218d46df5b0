"""The hot route answered from uvicorn's httptools protocol (rawpath.py), over a real socket: a real uvicorn
server (uvloop + httptools, the configuration ``recops-serve`` runs) in a thread of the test process.

The answers are compared byte for byte (Date aside) with the same request answered through the ASGI app."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import recops_server.batcher as server_batcher
from recops_server import ServerSettings, create_app
from recops_server.cli import uvicorn_config
from recops_server.rawpath import protocol_class

pytest.importorskip("httptools")


@contextlib.contextmanager
def running(model_dir: Path, **overrides: object) -> Iterator[tuple[int, object]]:
    """A uvicorn server on a free port configured as `recops-serve` configures it; yields (port, app)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    settings = ServerSettings(
        **{"model_uri": str(model_dir), "reload_interval_seconds": 0, "host": "127.0.0.1", "port": port, **overrides}  # type: ignore[arg-type]
    )
    app = create_app(settings)
    config = uvicorn_config(app, settings)
    assert isinstance(config.http, type) and config.http.__name__ == "RecopsHttpToolsProtocol"
    import uvicorn

    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield port, app
    finally:
        server.should_exit = True
        thread.join(30)


def exchange(port: int, raw: bytes, answers: int = 1) -> list[bytes]:
    """Send ``raw`` (one or more pipelined requests) on one connection; read ``answers`` responses."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw)
        data = b""
        out: list[bytes] = []
        while len(out) < answers:
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                assert chunk, f"connection closed after {out} + {data!r}"
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            fields = dict(h.split(b": ", 1) for h in head.split(b"\r\n")[1:])
            length = int(fields[b"content-length"])
            while len(rest) < length:
                chunk = s.recv(65536)
                assert chunk
                rest += chunk
            out.append(head + b"\r\n\r\n" + rest[:length])
            data = rest[length:]
        if b"connection: close" in out[-1].split(b"\r\n\r\n")[0]:
            assert s.recv(65536) == b""  # the server closed the connection
        return out


def without_date(response: bytes) -> bytes:
    return b"\r\n".join(line for line in response.split(b"\r\n") if not line.startswith(b"date: "))


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode()


@pytest.mark.parametrize("inline_scores", [server_batcher.INLINE_SCORES, 0])  # 0: scored in the thread pool
def test_raw_path_answers_byte_for_byte_as_the_asgi_route(
    model_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, inline_scores: int
) -> None:
    monkeypatch.setattr(server_batcher, "INLINE_SCORES", inline_scores)
    with running(model_dirs["current"]) as (port, app):
        calls = []
        real = app.state.recops.one  # type: ignore[attr-defined]

        async def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(args)
            return await real(*args, **kwargs)

        app.state.recops.one = spy  # type: ignore[attr-defined]  # the ASGI fast path (middleware) calls it
        for path, same_via_asgi in [
            ("u1?k=3", "u1?k=3&k=3"),  # a repeated k: FastAPI answers
            ("stranger?k=2&category=y", "stranger?k=2&category=y&k=2"),
            ("u2?exclude=a&excludeSeen=0", "u2?exclude=a&excludeSeen=0&k=1&k=10"),
        ]:  # fmt: skip
            (fast,) = exchange(port, get(f"/v1/recommendations/{path}"))
            assert not calls, "the hot route went through the ASGI app"
            (slow,) = exchange(port, get(f"/v1/recommendations/{same_via_asgi}"))
            assert len(calls) == 1, "the repeated parameter should have gone to the FastAPI route"
            calls.clear()
            assert fast.startswith(b"HTTP/1.1 200 OK\r\ndate: ")
            assert b"x-model-version: " in fast and b"\r\ncontent-type: application/json\r\n" in fast
            assert without_date(fast) == without_date(slow)
        # the ASGI app still answers everything else (and errors the FastAPI way)
        (bad,) = exchange(port, get("/v1/recommendations/u1?k=0"))
        assert bad.startswith(b"HTTP/1.1 422 ")


def test_raw_path_keeps_alive_pipelines_in_order_and_closes_on_request(model_dirs: dict[str, Path]) -> None:
    with running(model_dirs["current"]) as (port, _):
        raw = get("/v1/recommendations/u1?k=1") + get("/healthz") + get("/v1/recommendations/u2?k=2")
        first, health, third = exchange(port, raw, answers=3)
        assert b'"userId":"u1"' in first and b'{"status":"ok"}' in health and b'"userId":"u2"' in third
        (closing,) = exchange(port, get("/v1/recommendations/u1?k=1", "Connection: close\r\n"))  # closed: see exchange
        assert closing.split(b"\r\n\r\n")[0].endswith(b"\r\nconnection: close")
        (via_asgi,) = exchange(port, get("/v1/recommendations/u1?k=1&k=1", "Connection: close\r\n"))
        assert without_date(closing) == without_date(via_asgi)


def test_raw_path_counts_metrics_and_logs_payloads(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    with running(model_dirs["current"], payload_log_dir=str(tmp_path / "p"), payload_sample_percent=100) as (port, app):
        for _ in range(3):
            exchange(port, get("/v1/recommendations/u1?k=2"))
        (metrics,) = exchange(port, get("/metrics"))
        line = b'recops_requests_total{method="GET",route="/v1/recommendations/{user_id}",status="200"} 3.0'
        assert line in metrics
        assert app.state.recops.in_flight == 0  # type: ignore[attr-defined]
        assert len(app.state.recops.payloads._queue) == 3  # type: ignore[attr-defined]


def test_raw_path_scoring_error_is_uvicorns_500(model_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("scoring broke")

    with running(model_dirs["current"]) as (port, app):
        monkeypatch.setattr(server_batcher, "recommend_batch", broken)
        (answer,) = exchange(port, get("/v1/recommendations/u1?k=2"))
        assert answer.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
        assert answer.endswith(
            b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 21\r\nconnection: close\r\n\r\n"
            b"Internal Server Error"
        )
        (metrics,) = exchange(port, get("/metrics"))
        assert b'recops_requests_total{method="GET",route="/v1/recommendations/{user_id}",status="500"} 1.0' in metrics
        assert app.state.recops.in_flight == 0  # type: ignore[attr-defined]


def test_protocol_leaves_the_concurrency_limit_to_the_middleware(model_dirs: dict[str, Path]) -> None:
    with running(model_dirs["current"], max_concurrency=1) as (port, app):
        app.state.recops.in_flight = 1  # type: ignore[attr-defined]  # as if one request were being served
        (answer,) = exchange(port, get("/v1/recommendations/u1?k=2"))
        assert answer.startswith(b"HTTP/1.1 503 ") and b"\r\nretry-after: 1\r\n" in answer
        app.state.recops.in_flight = 0  # type: ignore[attr-defined]
        (answer,) = exchange(port, get("/v1/recommendations/u1?k=2"))
        assert answer.startswith(b"HTTP/1.1 200 ")
    assert protocol_class  # the class under test (imported so a rename fails here)

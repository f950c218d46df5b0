"""The hot route ``GET /v1/recommendations/{user_id}`` straight from uvicorn's httptools protocol.

uvicorn starts an ASGI task per request and writes a response in two socket writes (headers, then body).
``protocol_class`` subclasses its ``HttpToolsProtocol`` so that a request the fast path accepts (the
checks of ``ServerState.hot_query``, as in ``ObservabilityMiddleware``) skips the task: it joins the
micro-batch from the protocol callback, and when the batch is scored, ``Reply`` writes the answer --
status line, headers, body -- in one write, with the bytes uvicorn would write for the same ASGI
messages. Metrics, the concurrency limit and payload sampling are the middleware's, unchanged.

Everything else (other routes and methods, bad or unusual input, no model yet, at the concurrency
limit, access log on, uvicorn's own limits) takes the ASGI path as before. The request keeps uvicorn's
``RequestResponseCycle``: keep-alive, pipelining, graceful shutdown (``connection: close`` on the
answer) and disconnects work as for an ASGI request. Unlike an ASGI response, the answer is not held
back while the client is not reading (its few hundred bytes wait in the transport's buffer).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from recops_model import Recommendations
from uvicorn.protocols.http.httptools_impl import (
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from .hotpath import OneQuery, one_headers
from .model_store import LoadedModel

log = logging.getLogger("uvicorn.error")
ERROR_500 = b"Internal Server Error"
ERROR_500_HEADERS = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21")]


def write_response(cycle: RequestResponseCycle, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """``cycle.send`` of ``http.response.start`` (``headers``: lower-case names, valid values) and one
    ``http.response.body``, as a single transport write."""
    if cycle.disconnected:
        return
    content = [STATUS_LINE[status]]
    for name, value in cycle.default_headers:
        content.extend([name.lower(), b": ", value, b"\r\n"])
    for name, value in headers:
        content.extend([name, b": ", value, b"\r\n"])
    if not cycle.keep_alive:
        content.append(b"connection: close\r\n")
    content.extend([b"\r\n", body])
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    cycle.transport.write(b"".join(content))
    cycle.response_complete = True
    cycle.message_event.set()
    if not cycle.keep_alive:
        cycle.transport.close()
    cycle.on_response()


class Reply:
    """The waiter of one fast-path request in the micro-batcher: answers as soon as its batch is scored."""

    __slots__ = ("cycle", "finished", "loaded", "query", "start", "state")

    def __init__(self, cycle: RequestResponseCycle, state: Any, loaded: LoadedModel, query: OneQuery) -> None:
        self.cycle = cycle
        self.state = state  # app.ServerState
        self.loaded = loaded
        self.query = query
        self.start = time.perf_counter()
        self.finished = False

    def done(self) -> bool:
        return self.finished

    def set_result(self, rec: Recommendations) -> None:
        try:
            body = self.state.one_body(self.loaded, self.query, rec)
            headers = one_headers(self.loaded, body)
            if HEADER_VALUE_RE.search(headers[0][1]):  # as uvicorn's send refuses it
                raise RuntimeError("Invalid HTTP header value.")
        except Exception as exc:
            self.set_exception(exc)
            return
        self._answer(200, headers, body)

    def set_exception(self, exc: BaseException) -> None:
        """uvicorn's answer to an ASGI app that raised before responding: log, plain 500, close."""
        log.error("Exception in ASGI application\n", exc_info=exc)
        self.cycle.keep_alive = False
        self._answer(500, ERROR_500_HEADERS, ERROR_500)

    def _answer(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        if self.finished:
            return
        self.finished = True
        st = self.state
        try:
            write_response(self.cycle, status, headers, body)
        finally:
            st.in_flight -= 1
            st.metrics.observe_request("/v1/recommendations/{user_id}", "GET", status, time.perf_counter() - self.start)


def protocol_class(state: Any) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with the fast path of ``state`` (an ``app.ServerState``)."""

    class RecopsHttpToolsProtocol(HttpToolsProtocol):
        def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
            scope = cycle.scope
            hot = None
            if app is self.app and not cycle.access_log and state.in_flight < state.settings.max_concurrency:
                hot = state.hot_query(scope["method"], scope["path"], scope["query_string"], scope["root_path"])
            if hot is None:
                super()._start_asgi_task(cycle, app)
                return
            loaded, q = hot
            state.in_flight += 1
            reply = Reply(cycle, state, loaded, q)
            try:
                state.batcher.add(loaded, q.user_id, q.k, q.exclude_seen, q.exclude, q.category, reply)
            except BaseException as exc:
                reply.set_exception(exc)
                raise

    return RecopsHttpToolsProtocol

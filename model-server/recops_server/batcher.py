"""Micro-batching: concurrent single-user requests scored with one matrix product.

A request hands its query to ``submit`` and awaits the result. The first one schedules a flush for
the next event-loop iteration (no timer: a lone request waits for nothing); every request that
arrives before the flush runs -- or while a batch is being scored in the thread pool -- joins the next
batch. A flush that sees the batch still growing steps back behind the requests queued after it (at
most ``MAX_DEFERRALS`` loop iterations), so requests that became ready together are scored together.

Small batches are scored on the event loop, large ones in the thread pool (``INLINE_SCORES``).
A batch is scored by ``recommend_batch`` once per (model version, k, filters) group: for a factors
model that is one ``users x factors @ factors x items`` product instead of one matrix-vector product
per request (the item matrix is read once per batch). BLAS sums a matrix product in another order than
a matrix-vector product, so a score may differ in float32's last bit from the same request scored
alone (as between POST /v1/recommendations and the single route before); items whose scores tie within
that rounding may swap places.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import Histogram
from recops_model import Recommendations, recommend_batch
from starlette.concurrency import run_in_threadpool

from .model_store import LoadedModel


class Waiter(Protocol):
    """Who gets a request's result: an ``asyncio.Future``, or a callback object (``rawpath.Reply``) that
    answers the request as soon as the batch is scored, without another event-loop step."""

    def done(self) -> bool: ...
    def set_result(self, result: Recommendations, /) -> None: ...
    def set_exception(self, exception: BaseException, /) -> None: ...


# (model version, k, exclude_seen, exclude, category)
GroupKey = tuple[LoadedModel, int, bool, tuple[str, ...], str | None]
Job = tuple[GroupKey, str | None, Waiter]
MAX_DEFERRALS = 4
# A batch whose dense scores (users x items) stay under this is scored on the event loop (a few ms at
# most: thread hand-offs would cost more than they save); a larger one in the thread pool when
# ``scoring_in_threadpool`` is set, so that probes and /metrics keep answering meanwhile.
INLINE_SCORES = 2_000_000
Observe = Callable[[LoadedModel, list[Recommendations]], None]


def score_groups(jobs: list[Job]) -> list[tuple[list[Job], list[Recommendations] | BaseException]]:
    """Score queued jobs: one ``recommend_batch`` call per group, in arrival order within a group."""
    groups: dict[GroupKey, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job[0], []).append(job)
    out: list[tuple[list[Job], list[Recommendations] | BaseException]] = []
    for (loaded, k, exclude_seen, exclude, category), members in groups.items():
        try:
            recs = recommend_batch(
                loaded.model, [j[1] for j in members], k,
                exclude_seen=exclude_seen, exclude_items=exclude, category=category,
            )  # fmt: skip
        except Exception as exc:  # reaches the awaiting requests (500), never the loop
            out.append((members, exc))
        else:
            out.append((members, recs))
    return out


class MicroBatcher:
    def __init__(self, *, in_threadpool: bool, observe: Observe, batch_size: Histogram | None = None) -> None:
        self.in_threadpool = in_threadpool
        self.observe = observe
        self.batch_size = batch_size
        self._pending: list[Job] = []
        self._scheduled = False  # a flush is queued, or a batch is being scored in the thread pool
        self._task: asyncio.Task[None] | None = None

    def submit(
        self,
        loaded: LoadedModel,
        user_id: str | None,
        k: int,
        *,
        exclude_seen: bool,
        exclude: tuple[str, ...],
        category: str | None,
    ) -> asyncio.Future[Recommendations]:
        fut: asyncio.Future[Recommendations] = asyncio.get_running_loop().create_future()
        self.add(loaded, user_id, k, exclude_seen, exclude, category, fut)
        return fut

    def add(
        self,
        loaded: LoadedModel,
        user_id: str | None,
        k: int,
        exclude_seen: bool,
        exclude: tuple[str, ...],
        category: str | None,
        waiter: Waiter,
    ) -> None:
        """Queue a request; ``waiter`` gets its result (or the scoring error) when its batch is scored."""
        self._pending.append(((loaded, k, exclude_seen, exclude, category), user_id, waiter))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush, 0, 0)

    def _flush(self, seen: int, deferrals: int) -> None:
        n = len(self._pending)
        if n > seen and deferrals < MAX_DEFERRALS:  # still growing: step back behind the queued requests
            asyncio.get_running_loop().call_soon(self._flush, n, deferrals + 1)
            return
        jobs, self._pending = self._pending, []
        if self.batch_size is not None:
            self.batch_size.observe(len(jobs))
        if self.in_threadpool and sum(j[0][0].model.n_items for j in jobs) > INLINE_SCORES:
            self._task = asyncio.get_running_loop().create_task(self._score_in_thread(jobs))
            return
        self._scheduled = False
        self._deliver(score_groups(jobs))

    async def _score_in_thread(self, jobs: list[Job]) -> None:
        """Score a large batch in the thread pool; requests arriving meanwhile form the next batch."""
        try:
            scored = await run_in_threadpool(score_groups, jobs)
        except BaseException as exc:  # cancelled at shutdown: fail the waiters, never hang them
            for _, _, fut in jobs:
                if not fut.done():
                    fut.set_exception(exc if isinstance(exc, Exception) else RuntimeError("scoring was cancelled"))
            raise
        finally:
            self._scheduled = False
            if self._pending:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._flush, 0, 0)
        self._deliver(scored)

    def _deliver(self, scored: list[tuple[list[Job], Any]]) -> None:
        for members, result in scored:
            if isinstance(result, BaseException):
                for _, _, fut in members:
                    if not fut.done():
                        fut.set_exception(result)
                continue
            for (_, _, fut), rec in zip(members, result, strict=True):
                if not fut.done():  # a cancelled request (client gone at shutdown) just drops its result
                    fut.set_result(rec)
            self.observe(members[0][0][0], result)  # after the results: metrics never hold an answer back

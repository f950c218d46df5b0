"""Settings for many objects, measured with the scale benchmark (bench/scale; figures in bench/results/scale.md).

`main.configure` calls `apply(settings, CONFIG)` last; `main._register` takes the resync timer's options from
`resync_timer(CONFIG)` and runs resyncs with `run_resync`. RECOPS_TUNING=off keeps kopf's defaults plus what
`main.configure` sets (the benchmark's baseline). Each knob below says what it costs or saves; the environment
variables are read here until config.py takes them over:

  RECOPS_TUNING                 `on` (default) or `off`
  RECOPS_WORKERS                threads that run create/update/resume/delete reconciles (default 16)
  RECOPS_RESYNC_WORKERS         threads that run resync reconciles, apart from the ones above (default 4)
  RECOPS_RESYNC_JITTER_PERCENT  the first resync of an object comes after a random 100-J..100 % of the interval
                                (default 50)
  RECOPS_EVENT_POSTERS          Kubernetes Events posted at the same time (default 8)
  RECOPS_LIST_CHUNK             objects per page when the operator lists a kind at start (default 500)
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger("recops")
_kopf: dict[str, Any] = {}  # kopf's own thread pool, for resyncs when the tuning is off


def _int(name: str, default: int, low: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a whole number, e.g. {name}={default}") from None
    if value < low:
        raise ValueError(f"{name}={value}: must be at least {low} (default {default})")
    return value


def enabled() -> bool:
    raw = os.environ.get("RECOPS_TUNING", "on").strip().lower() or "on"
    if raw not in ("on", "off"):
        raise ValueError(f"RECOPS_TUNING={raw!r}: expected `on` or `off`")
    return raw == "on"


def workers() -> int:
    return _int("RECOPS_WORKERS", 16)


def apply(settings: Any, config: Any) -> None:
    """Apply the operator's tuning to kopf's ``settings`` (nothing when RECOPS_TUNING=off)."""
    _kopf["executor"] = settings.execution.executor
    if not enabled():
        return
    # Change handlers run reconciles in kopf's thread pool. A reconcile mostly waits for the API server
    # (server-side applies), so more threads than cores pay off until the API server is the limit.
    settings.execution.max_workers = workers()
    # kopf's HTTP connector has no connection limit: a burst of objects would post as many Events at once,
    # each on a new TLS connection. A few posters keep the connections reused; Events only wait a little.
    settings.posting.worker_limit = _int("RECOPS_EVENT_POSTERS", 8)
    # List each kind in pages at start: a restart with thousands of objects does not hold one huge response
    # (and its parsed copy) in memory; the API server serves pages from its watch cache.
    settings.watching.chunk_size = _int("RECOPS_LIST_CHUNK", 500)
    # The Kubernetes client keeps cpu_count * 5 connections: with more threads than that, every extra
    # request opens (and drops) a TLS connection. Keep one per thread that may use it.
    _client_pool(workers() + resync_workers())
    log.info("Tuned for scale: %d reconcile threads, %d resync threads, %d Event posters.",
             workers(), resync_workers(), settings.posting.worker_limit)


def _client_pool(size: int) -> None:
    from recops import kube

    pools = kube.api_client().rest_client.pool_manager
    pools.connection_pool_kw["maxsize"] = max(size, int(pools.connection_pool_kw.get("maxsize") or 1))


def resync_workers() -> int:
    return _int("RECOPS_RESYNC_WORKERS", 4)


def _first_resync(interval: float, jitter: float) -> Callable[..., float]:
    def delay(**_: Any) -> float:
        return interval * (1.0 - jitter * random.random())  # noqa: S311 (spreading load, not security)

    return delay


def resync_timer(config: Any) -> dict[str, Any]:
    """Options of kopf.timer for the per-object resync.

    kopf starts a timer's first run as soon as it sees the object, at the same moment as the create (or, after
    a restart, the resume) handler: every object was reconciled twice at once. The first resync now waits
    most of an interval (the handler has just reconciled), and the random part spreads the resyncs of objects
    created or resumed together, instead of all of them firing in the same second every interval.
    """
    interval = float(config.resync_seconds)
    options: dict[str, Any] = {"interval": interval, "sharp": False, "idle": None}
    if enabled():
        jitter = _int("RECOPS_RESYNC_JITTER_PERCENT", 50, low=0) / 100
        if jitter > 1:
            raise ValueError("RECOPS_RESYNC_JITTER_PERCENT: at most 100")
        options["initial_delay"] = _first_resync(interval, jitter)
    return options


@functools.cache
def _resync_pool(size: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=size, thread_name_prefix="recops-resync")


async def run_resync(fn: Callable[..., None], *args: Any, stopped: Any = None) -> None:
    """Run a resync reconcile on its own few threads, so resyncs never queue ahead of reactions to changes.

    When the resync threads are busy, resyncs simply come later (the timer counts its interval from the end of
    the last run). kopf's context is copied into the thread, as kopf does for sync handlers (kopf.event needs
    it). With RECOPS_TUNING=off it runs on kopf's own thread pool, like the change handlers. `stopped` is the
    timer's stop flag (kopf's `stopped` kwarg): a resync still waiting for a thread when its object is being
    deleted (or the operator stops) is skipped, so the deletion does not wait for it.
    """

    started = threading.Event()

    def run() -> None:
        started.set()
        if stopped is not None and stopped.is_set():
            return
        fn(*args)

    loop = asyncio.get_running_loop()
    pool = _resync_pool(resync_workers()) if enabled() else _kopf.get("executor")
    context = contextvars.copy_context()
    future = loop.run_in_executor(pool, functools.partial(context.run, run))
    try:
        while not future.done():
            # A deleted object's finalizer stays until its timer has stopped, and kopf checks a busy timer
            # again only a minute later: a resync still queued when its object is deleted returns at once
            # (its thread will skip it). One that has started is waited for: its patch is then dropped.
            await asyncio.wait([future], timeout=1.0)
            if not future.done() and stopped is not None and stopped.is_set() and not started.is_set():
                return
        future.result()
    except asyncio.CancelledError:
        await future  # never orphan a running reconcile: let it finish, then give up on its patch
        raise

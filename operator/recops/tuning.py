"""Settings for many objects, measured with the scale benchmark (bench/scale; figures in bench/results/scale.md).

`main.configure` calls `apply(settings, CONFIG)` last. With the tuning on, `main` schedules every object's resync
with one `Resyncs` (no kopf timer per object); with RECOPS_TUNING=off it registers a kopf timer per object with
the options of `resync_timer(CONFIG)`, run by `run_resync`, and keeps kopf's defaults plus what `main.configure`
sets (the benchmark's baseline). Each knob below says what it costs or saves; the environment variables are read
here until config.py takes them over:

  RECOPS_TUNING                 `on` (default) or `off`
  RECOPS_WORKERS                threads that run create/update/resume/delete reconciles (default 16)
  RECOPS_RESYNC_WORKERS         threads that run resync reconciles, apart from the ones above (default 4)
  RECOPS_RESYNC_JITTER_PERCENT  the first resync of an object comes after a random 100-J..100 % of the interval
                                (default 50)
  RECOPS_EVENT_POSTERS          Kubernetes Events posted at the same time (default 8)
  RECOPS_LIST_CHUNK             objects per page when the operator lists a kind at start (default 500)
  RECOPS_OBJECT_WORKERS         kopf's per-object workers at the same time (default 256; 0: no limit)
  RECOPS_WORKER_IDLE_SECONDS    how long a per-object worker waits for its object's next event (default 1; kopf: 5)
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import heapq
import logging
import os
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
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
    # kopf starts one worker task per object with pending events, all at once: a burst of thousands of new
    # objects held thousands of workers (each with its body, loggers and handler state) waiting for a thread.
    # A limit keeps the others as queued events until a worker is free (0: no limit, kopf's default). A worker
    # stays `idle_timeout` after its object's last event (kopf: 5 s) holding its slot, so the limit is well above
    # the thread count, and the idle time short: with 5 s, 256 slots capped a burst at ~50 objects/s per kind
    # (1,000 converged in 60-63 s instead of 52 s without a limit).
    settings.queueing.worker_limit = _int("RECOPS_OBJECT_WORKERS", 256, low=0) or None
    settings.queueing.idle_timeout = float(_int("RECOPS_WORKER_IDLE_SECONDS", 1, low=0))
    # The Kubernetes client keeps cpu_count * 5 connections: with more threads than that, every extra
    # request opens (and drops) a TLS connection. Keep one per thread that may use it.
    _client_pool(workers() + resync_workers())
    _slim_watch_events()
    log.info("Tuned for scale: %d reconcile threads, %d resync threads, %d Event posters.",
             workers(), resync_workers(), settings.posting.worker_limit)


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """At most `arenas` glibc malloc arenas, as MALLOC_ARENA_MAX=2 would (that variable, when set, wins).

    glibc gives threads their own arenas (up to 8 per core), each keeping freed memory of its own: at 1,000 objects
    two arenas lowered the peak from 233 to 217 MB (bench/results/scale.md). Called before kopf starts any
    thread; a C library without mallopt (musl) is left alone. True when applied.
    """
    if os.environ.get("MALLOC_ARENA_MAX") or not enabled():
        return False
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").mallopt(-8, arenas))  # -8: M_ARENA_MAX in glibc's malloc.h
    except (OSError, AttributeError):
        return False


def _client_pool(size: int) -> None:
    from recops import kube

    pools = kube.api_client().rest_client.pool_manager
    pools.connection_pool_kw["maxsize"] = max(size, int(pools.connection_pool_kw.get("maxsize") or 1))


async def without_managed_fields(events: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """The events of a kopf watch stream, each object without metadata.managedFields."""
    async for event in events:
        obj = event.get("object") if isinstance(event, dict) else None
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        if isinstance(meta, dict):
            meta.pop("managedFields", None)
        yield event


def _slim_watch_events() -> None:
    """Drop metadata.managedFields from every object kopf lists or watches, before kopf keeps it.

    An object waiting for its reconcile waits as its last watch event (thousands of them in a burst of new
    objects), and a kopf timer keeps its object's last body. managedFields (one entry per writer: the creator,
    kopf's annotations and finalizer, our status) was half of such bodies (5.9 of 11.8 MB for 6,000), and neither
    kopf nor the reconcile reads it. kopf has no public hook before its per-object memory, so this wraps its
    watch stream, a module attribute kopf looks up at every (re)watch.
    """
    from kopf._cogs.clients import watching

    original = watching.infinite_watch
    if getattr(original, "recops_slim", False):
        return

    def infinite_watch(**kwargs: Any) -> AsyncIterator[Any]:
        return without_managed_fields(original(**kwargs))

    infinite_watch.recops_slim = True  # type: ignore[attr-defined]
    watching.infinite_watch = infinite_watch


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
        options["initial_delay"] = _first_resync(interval, resync_jitter())
    return options


class Resyncs:
    """One scheduler for every object's resync, instead of a kopf timer per object (RECOPS_TUNING=on).

    A kopf timer is an asyncio task per object that also keeps the object's last body: at 6,000 objects the
    timers and kopf's per-object workers held over 600 MB (bench/results/scale-5000-in-tree.md). Here an object
    is a row (uid -> kind, namespace, name, next due time), registered by the change handlers (create, update,
    resume) and forgotten by the delete handler. One loop hands due objects to the resync threads;
    `fn(plural, namespace, name, uid)` reads the object fresh and reconciles it. As with the timer, the first
    resync comes a random 100-J..100 % of an interval after the registration, the next one an interval after
    the end of the last run.
    """

    def __init__(self) -> None:
        self._rows: dict[str, tuple[str, str, str]] = {}
        self._due: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rows)

    def register(self, uid: str, plural: str, namespace: str, name: str, interval: float, jitter: float) -> None:
        with self._lock:
            if uid in self._rows:
                return
            self._rows[uid] = (plural, namespace, name)
            first = interval * (1.0 - jitter * random.random())  # noqa: S311 (spreading load, not security)
            heapq.heappush(self._due, (time.monotonic() + first, uid))

    def forget(self, uid: str) -> None:
        with self._lock:
            self._rows.pop(uid, None)  # its heap entry is skipped when it comes due

    def due(self, now: float) -> tuple[list[tuple[str, str, str, str]], float | None]:
        """The rows due at `now` (each leaves the heap until it ran) and when the next one is due."""
        out = []
        with self._lock:
            while self._due and self._due[0][0] <= now:
                _, uid = heapq.heappop(self._due)
                if (row := self._rows.get(uid)) is not None:
                    out.append((*row, uid))
            return out, (self._due[0][0] if self._due else None)

    def again(self, uid: str, after: float) -> None:
        with self._lock:
            if uid in self._rows:
                heapq.heappush(self._due, (time.monotonic() + after, uid))

    async def run(self, fn: Callable[[str, str, str, str], None], interval: float, context: Any) -> None:
        """Forever: hand due objects to the resync threads, at most one per free thread."""
        loop = asyncio.get_running_loop()
        size = resync_workers()
        pool, free = _resync_pool(size), asyncio.Semaphore(size)

        def done(uid: str, future: asyncio.Future[None]) -> None:
            free.release()
            if not future.cancelled() and (exc := future.exception()) is not None:
                log.error("The resync of %s failed (next try in %ss): %r", uid, interval, exc)
            self.again(uid, interval)

        while True:
            rows, next_due = self.due(time.monotonic())
            for row in rows:
                await free.acquire()
                future = loop.run_in_executor(pool, functools.partial(context().run, fn, *row))
                future.add_done_callback(functools.partial(done, row[3]))
            wait = 1.0 if next_due is None else min(1.0, max(0.05, next_due - time.monotonic()))
            await asyncio.sleep(wait)


def resync_jitter() -> float:
    jitter = _int("RECOPS_RESYNC_JITTER_PERCENT", 50, low=0) / 100
    if jitter > 1:
        raise ValueError("RECOPS_RESYNC_JITTER_PERCENT: at most 100")
    return jitter


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

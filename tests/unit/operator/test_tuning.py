"""recops.tuning: which kopf settings it sets, the resync timer's options, and where resyncs run."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf
import pytest
from recops import kube, tuning

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: not-a-secret}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
"""


@dataclass
class FakeConfig:
    resync_seconds: int = 30


@pytest.fixture(autouse=True)
def _kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A kubeconfig that loads (no server behind it) and a fresh client per test."""
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    monkeypatch.setattr("kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    for name in ("RECOPS_TUNING", "RECOPS_WORKERS", "RECOPS_RESYNC_WORKERS", "RECOPS_EVENT_POSTERS",
                 "RECOPS_LIST_CHUNK", "RECOPS_RESYNC_JITTER_PERCENT", "RECOPS_OBJECT_WORKERS"):
        monkeypatch.delenv(name, raising=False)
    kube.api_client.cache_clear()
    yield
    kube.api_client.cache_clear()


def test_off_keeps_kopfs_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOPS_TUNING", "off")
    settings, defaults = kopf.OperatorSettings(), kopf.OperatorSettings()
    tuning.apply(settings, FakeConfig())
    assert settings.execution.max_workers == defaults.execution.max_workers
    assert settings.posting.worker_limit == defaults.posting.worker_limit
    assert settings.watching.chunk_size == defaults.watching.chunk_size
    assert settings.queueing.worker_limit == defaults.queueing.worker_limit
    assert settings.queueing.idle_timeout == defaults.queueing.idle_timeout
    assert tuning.resync_timer(FakeConfig()) == {"interval": 30.0, "sharp": False, "idle": None}


def test_on_by_default_sets_the_measured_values() -> None:
    settings = kopf.OperatorSettings()
    tuning.apply(settings, FakeConfig())
    assert settings.execution.max_workers == 16
    assert settings.posting.worker_limit == 8
    assert settings.watching.chunk_size == 500
    assert settings.queueing.worker_limit == 256
    assert settings.queueing.idle_timeout == 1.0
    # one client connection per thread that may use it (reconcile + resync threads)
    assert kube.api_client().rest_client.pool_manager.connection_pool_kw["maxsize"] >= 20


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOPS_WORKERS", "24")
    monkeypatch.setenv("RECOPS_EVENT_POSTERS", "3")
    monkeypatch.setenv("RECOPS_LIST_CHUNK", "100")
    monkeypatch.setenv("RECOPS_OBJECT_WORKERS", "0")
    monkeypatch.setenv("RECOPS_WORKER_IDLE_SECONDS", "5")
    settings = kopf.OperatorSettings()
    tuning.apply(settings, FakeConfig())
    assert (settings.execution.max_workers, settings.posting.worker_limit, settings.watching.chunk_size,
            settings.queueing.worker_limit, settings.queueing.idle_timeout) == (24, 3, 100, None, 5.0)


@pytest.mark.parametrize(("name", "value", "needle"), [
    ("RECOPS_WORKERS", "many", "expected a whole number"),
    ("RECOPS_WORKERS", "0", "must be at least 1"),
    ("RECOPS_TUNING", "maybe", "expected `on` or `off`"),
])
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str, needle: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=needle) as err:
        tuning.apply(kopf.OperatorSettings(), FakeConfig())
    assert name in str(err.value)


def test_first_resync_waits_most_of_an_interval_and_is_spread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOPS_RESYNC_JITTER_PERCENT", "50")
    options = tuning.resync_timer(FakeConfig(resync_seconds=30))
    assert (options["interval"], options["sharp"], options["idle"]) == (30.0, False, None)
    delays = [options["initial_delay"](body={}, uid="u") for _ in range(500)]
    assert all(15.0 <= d <= 30.0 for d in delays)
    assert max(delays) - min(delays) > 10  # spread, not one instant for every object


def test_jitter_above_100_percent_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOPS_RESYNC_JITTER_PERCENT", "150")
    with pytest.raises(ValueError, match="RECOPS_RESYNC_JITTER_PERCENT"):
        tuning.resync_timer(FakeConfig())


def test_resyncs_run_on_their_own_threads_with_kopfs_context() -> None:
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker")
    seen: dict[str, str] = {}

    def reconcile(value: str) -> None:
        seen["thread"] = threading.current_thread().name
        seen["marker"] = marker.get()
        seen["value"] = value

    async def main() -> None:
        marker.set("from-kopf")
        await tuning.run_resync(reconcile, "x")

    tuning.apply(kopf.OperatorSettings(), FakeConfig())
    asyncio.run(main())
    assert seen == {"thread": seen["thread"], "marker": "from-kopf", "value": "x"}
    assert seen["thread"].startswith("recops-resync")


def test_resyncs_use_kopfs_pool_when_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOPS_TUNING", "off")
    settings = kopf.OperatorSettings()
    tuning.apply(settings, FakeConfig())
    names: list[str] = []

    async def main() -> None:
        await tuning.run_resync(lambda: names.append(threading.current_thread().name))

    asyncio.run(main())
    assert not names[0].startswith("recops-resync")


def test_a_resync_of_a_stopped_timer_is_skipped() -> None:
    class Flag:
        def __init__(self, value: bool) -> None:
            self.value = value

        def is_set(self) -> bool:
            return self.value

    ran: list[str] = []
    tuning.apply(kopf.OperatorSettings(), FakeConfig())
    asyncio.run(tuning.run_resync(ran.append, "stopped", stopped=Flag(True)))
    asyncio.run(tuning.run_resync(ran.append, "running", stopped=Flag(False)))
    assert ran == ["running"]


def test_a_queued_resync_returns_when_its_timer_is_stopped() -> None:
    """Deleting an object waits for its timer: a resync still queued behind busy threads must not hold it."""
    import time

    class Flag:
        value = False

        def is_set(self) -> bool:
            return self.value

    gate = threading.Event()
    ran: list[str] = []
    flag = Flag()

    async def main() -> float:
        busy = [asyncio.ensure_future(tuning.run_resync(gate.wait)) for _ in range(tuning.resync_workers())]
        await asyncio.sleep(0.2)  # every resync thread is taken
        queued = asyncio.ensure_future(tuning.run_resync(ran.append, "queued", stopped=flag))
        await asyncio.sleep(0.2)
        flag.value = True
        started = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.shield(queued), 5)  # without the early return: a TimeoutError
        finally:
            gate.set()
        waited = time.monotonic() - started
        await asyncio.gather(*busy, queued)
        await asyncio.sleep(0.2)  # the queued job now reaches a thread, and skips itself
        return waited

    tuning.apply(kopf.OperatorSettings(), FakeConfig())
    assert asyncio.run(main()) < 2.0
    assert ran == []


def _watch_of(events: list[dict[str, Any]]) -> Any:
    async def infinite_watch(**_: Any) -> AsyncIterator[Any]:
        for event in events:
            yield event

    return infinite_watch


def _watched() -> list[Any]:
    from kopf._cogs.clients import watching

    async def main() -> list[Any]:
        return [e async for e in watching.infinite_watch(resource=None, namespace=None)]

    return asyncio.run(main())


def test_kopf_never_keeps_managed_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tuning wraps kopf's watch stream: objects reach kopf's per-object memory without managedFields."""
    from kopf._cogs.clients import watching

    def events() -> list[dict[str, Any]]:
        meta = {"name": "a", "uid": "u1", "managedFields": [{"manager": "kubectl"}], "labels": {"x": "y"}}
        return [{"type": None, "object": {"metadata": meta, "spec": {"k": 1}}}, {"type": "BOOKMARK", "object": {}}]

    monkeypatch.setattr(watching, "infinite_watch", _watch_of(events()))
    monkeypatch.setenv("RECOPS_TUNING", "off")
    tuning.apply(kopf.OperatorSettings(), FakeConfig())
    assert "managedFields" in _watched()[0]["object"]["metadata"]  # off: kopf as it is

    monkeypatch.setattr(watching, "infinite_watch", _watch_of(events()))
    monkeypatch.setenv("RECOPS_TUNING", "on")
    tuning.apply(kopf.OperatorSettings(), FakeConfig())
    tuning.apply(kopf.OperatorSettings(), FakeConfig())  # twice (a restart in tests): wrapped once
    got = _watched()
    assert got[0] == {"type": None, "object": {"metadata": {"name": "a", "uid": "u1", "labels": {"x": "y"}},
                                               "spec": {"k": 1}}}
    assert got[1] == {"type": "BOOKMARK", "object": {}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_scheduler_spreads_first_resyncs_then_repeats_each_an_interval_after_its_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(tuning.time, "monotonic", clock)
    resyncs = tuning.Resyncs()
    for i in range(200):
        resyncs.register(f"u{i}", "recommenderdeployments", "ns", f"rd-{i}", interval=30.0, jitter=0.5)
    resyncs.register("u0", "recommenderdeployments", "ns", "rd-0", interval=30.0, jitter=0.5)  # again: one row
    assert len(resyncs) == 200
    assert resyncs.due(clock.now + 14.9)[0] == []  # nothing before half an interval
    first, _ = resyncs.due(clock.now + 22.5)
    assert 40 < len(first) < 160  # spread over 15..30 s, not all at once
    rest, next_due = resyncs.due(clock.now + 30.0)
    assert len(first) + len(rest) == 200 and next_due is None
    assert ("recommenderdeployments", "ns", "rd-0", "u0") in first + rest
    clock.now += 30.0
    resyncs.again("u0", 30.0)
    resyncs.forget("u1")
    resyncs.again("u1", 30.0)  # forgotten (deleted) while it ran: not scheduled again
    assert resyncs.due(clock.now + 29.9) == ([], clock.now + 30.0)
    assert resyncs.due(clock.now + 30.0)[0] == [("recommenderdeployments", "ns", "rd-0", "u0")]


def test_the_scheduler_runs_due_resyncs_on_the_resync_threads_in_kopfs_context() -> None:
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker")
    ran: list[tuple[str, str, str]] = []
    done = threading.Event()

    def resync(plural: str, namespace: str, name: str, uid: str) -> None:
        ran.append((name, threading.current_thread().name, marker.get()))
        if len(ran) >= 3:
            done.set()
        if name == "bad":
            raise RuntimeError("a failing resync is logged and tried again")

    handler_context = contextvars.copy_context()
    handler_context.run(marker.set, "from-a-handler")
    resyncs = tuning.Resyncs()
    resyncs.register("u1", "driftmonitors", "ns", "bad", interval=0.05, jitter=0.0)

    async def main() -> None:
        task = asyncio.create_task(resyncs.run(resync, 0.05, handler_context.copy))
        await asyncio.get_running_loop().run_in_executor(None, done.wait, 10)
        task.cancel()

    asyncio.run(main())
    assert len(ran) >= 3  # it failed, and came back an interval later, again and again
    assert all(name == "bad" and thread.startswith("recops-resync") and value == "from-a-handler"
               for name, thread, value in ran)


def test_malloc_arenas_are_limited_unless_the_environment_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    import platform

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert tuning.limit_malloc_arenas() is False  # the variable wins
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    monkeypatch.setenv("RECOPS_TUNING", "off")
    assert tuning.limit_malloc_arenas() is False
    monkeypatch.setenv("RECOPS_TUNING", "on")
    assert tuning.limit_malloc_arenas() is (platform.libc_ver()[0] == "glibc")

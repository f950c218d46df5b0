"""recops.tuning: which kopf settings it sets, the resync timer's options, and where resyncs run."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
                 "RECOPS_LIST_CHUNK", "RECOPS_RESYNC_JITTER_PERCENT"):
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
    assert tuning.resync_timer(FakeConfig()) == {"interval": 30.0, "sharp": False, "idle": None}


def test_on_by_default_sets_the_measured_values() -> None:
    settings = kopf.OperatorSettings()
    tuning.apply(settings, FakeConfig())
    assert settings.execution.max_workers == 16
    assert settings.posting.worker_limit == 8
    assert settings.watching.chunk_size == 500
    # one client connection per thread that may use it (reconcile + resync threads)
    assert kube.api_client().rest_client.pool_manager.connection_pool_kw["maxsize"] >= 20


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOPS_WORKERS", "24")
    monkeypatch.setenv("RECOPS_EVENT_POSTERS", "3")
    monkeypatch.setenv("RECOPS_LIST_CHUNK", "100")
    settings = kopf.OperatorSettings()
    tuning.apply(settings, FakeConfig())
    assert (settings.execution.max_workers, settings.posting.worker_limit, settings.watching.chunk_size) == \
        (24, 3, 100)


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

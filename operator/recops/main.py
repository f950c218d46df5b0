"""kopf registrations and the resync scheduler: every handler and resync delegates to `recops.reconcile`.

Run with `recops operator` (or `kopf run -m recops.main`).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from recops import kube, reconcile, tuning
from recops.api import FINALIZER, GROUP, VERSION
from recops.backends import aws
from recops.backends.kubernetes import KubernetesBackend
from recops.backends.local import LocalBackend
from recops.config import load
from recops.metrics import start_metrics_server

CONFIG = load()
log = logging.getLogger("recops")
tuning.limit_malloc_arenas()  # before kopf starts its threads


def _post_event(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    kopf.event(dict(body), type=type_, reason=reason, message=message)  # type: ignore[arg-type]


ECS, SAGEMAKER = aws.backends(CONFIG)
CTX = reconcile.Context(config=CONFIG, kubernetes=KubernetesBackend(),
                        local=LocalBackend(CONFIG.local_state_dir, kube.secret_value),
                        post_event=_post_event, logger=log, ecs=ECS, sagemaker=SAGEMAKER)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    # The Kubernetes client logs whole response bodies (Secrets included) at DEBUG: never let it.
    logging.getLogger("kubernetes").setLevel(logging.INFO)
    logging.getLogger("urllib3").setLevel(logging.INFO)
    settings.posting.loggers = False  # logs are not Events; condition transitions are posted explicitly
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    # kopf retries a failed API request (a watch too) after 1, 1, 2, 3, 5, 8, 13, 21 s: after an API server outage
    # the watches came back up to 21 s late (tests/reliability/test_apiserver_outage.py). At most 5 s apart.
    settings.networking.error_backoffs = (1, 1, 2, 3, 5, 5, 5, 5, 5, 5, 5, 5)
    settings.execution.max_workers = 8
    tuning.apply(settings, CONFIG)
    if CONFIG.metrics_port:
        start_metrics_server(CONFIG.metrics_port)
    log.info("Started the Recops operator with backends %s.", ",".join(sorted(CONFIG.enabled_backends)))
    for name in sorted(CONFIG.enabled_backends):
        if missing := CONFIG.missing_settings(name):
            log.warning("The %s backend is enabled but not configured: set %s.", name, ", ".join(missing))


@kopf.on.probe(id="ready")
def probe(**_: Any) -> bool:
    return True


# RECOPS_TUNING=on: one resync scheduler for all objects (tuning.Resyncs); off: a kopf timer per object.
RESYNCS = tuning.Resyncs() if tuning.enabled() else None
_KOPF_CONTEXT: list[contextvars.Context] = []  # a change handler's context: kopf.event needs kopf's variables
_TASKS: set[asyncio.Task[None]] = set()


@kopf.on.startup()
async def start_resyncs(**_: Any) -> None:
    if RESYNCS is not None:
        task = asyncio.create_task(RESYNCS.run(_resync, float(CONFIG.resync_seconds), lambda: _KOPF_CONTEXT[0].copy()))
        _TASKS.add(task)
        task.add_done_callback(_resyncs_ended)


def _resyncs_ended(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        log.critical("The resync scheduler stopped: %r", task.exception())


def _resync(plural: str, namespace: str, name: str, uid: str) -> None:
    """One resync: read the object fresh (inside its lock, so never older than a change handler's body)."""
    kind = next(k for k, p in reconcile.KIND_PLURALS.items() if p == plural)
    with CTX.lock_for(uid):  # re-entrant: reconcile.run takes it again
        body = kube.get(f"{GROUP}/{VERSION}", kind, namespace, name)
        if body is None or body["metadata"].get("uid") != uid:
            if RESYNCS is not None:
                RESYNCS.forget(uid)
            return
        if body["metadata"].get("deletionTimestamp"):
            return  # the delete handler has it
        patch: dict[str, Any] = {}
        reconcile.run(CTX, plural, body, patch)
        if patch.get("status"):
            kube.patch_status(f"{GROUP}/{VERSION}", kind, namespace, name, patch["status"])


def _register(plural: str) -> None:
    def handle(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        if RESYNCS is not None:
            if not _KOPF_CONTEXT:
                _KOPF_CONTEXT.append(contextvars.copy_context())
            RESYNCS.register(body.meta.uid or "", plural, body.meta.namespace or "", body.meta.name or "",
                             float(CONFIG.resync_seconds), tuning.resync_jitter())
        reconcile.run(CTX, plural, body, patch)  # type: ignore[arg-type]

    async def timer(body: kopf.Body, patch: kopf.Patch, stopped: Any = None, **_: Any) -> None:
        await tuning.run_resync(reconcile.run, CTX, plural, body, patch, stopped=stopped)

    def cleanup(body: kopf.Body, **_: Any) -> None:
        if RESYNCS is not None:
            RESYNCS.forget(body.meta.uid or "")
        reconcile.cleanup(CTX, plural, body)  # type: ignore[arg-type]

    kopf.on.resume(GROUP, VERSION, plural, id="reconcile")(handle)
    kopf.on.create(GROUP, VERSION, plural, id="reconcile")(handle)
    kopf.on.update(GROUP, VERSION, plural, id="reconcile")(handle)
    if RESYNCS is None:
        kopf.timer(GROUP, VERSION, plural, id="resync", **tuning.resync_timer(CONFIG))(timer)
    kopf.on.delete(GROUP, VERSION, plural, id="cleanup", optional=False)(cleanup)


for _plural in reconcile.RECONCILERS:
    _register(_plural)



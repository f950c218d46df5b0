"""kopf registrations only: every handler delegates to `recops.reconcile`.

Run with `recops operator` (or `kopf run -m recops.main`).
"""

from __future__ import annotations

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


def _register(plural: str) -> None:
    def handle(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        reconcile.run(CTX, plural, body, patch)  # type: ignore[arg-type]

    async def timer(body: kopf.Body, patch: kopf.Patch, stopped: Any = None, **_: Any) -> None:
        await tuning.run_resync(reconcile.run, CTX, plural, body, patch, stopped=stopped)

    def cleanup(body: kopf.Body, **_: Any) -> None:
        reconcile.cleanup(CTX, plural, body)  # type: ignore[arg-type]

    kopf.on.resume(GROUP, VERSION, plural, id="reconcile")(handle)
    kopf.on.create(GROUP, VERSION, plural, id="reconcile")(handle)
    kopf.on.update(GROUP, VERSION, plural, id="reconcile")(handle)
    kopf.timer(GROUP, VERSION, plural, id="resync", **tuning.resync_timer(CONFIG))(timer)
    kopf.on.delete(GROUP, VERSION, plural, id="cleanup", optional=False)(cleanup)


for _plural in reconcile.RECONCILERS:
    _register(_plural)



"""Deleting an object waits for a reconcile of it that is in flight (a resync may be creating what the
cleanup removes): the CI soak once left an ECS service created just after its object's cleanup had looked."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from recops import reconcile
from recops.backends.kubernetes import KubernetesBackend
from recops.backends.local import LocalBackend
from recops.config import Config
from recops.controllers.common import Owner
from recops.reconcile import Context


class Service:
    """Stands in for the ECS backend: what exists, and what the cleanup saw."""

    def __init__(self) -> None:
        self.exists = False
        self.deleted_existing: bool | None = None

    def delete(self, owner: Owner, name: str) -> None:
        self.deleted_existing = self.exists
        self.exists = False

    def release(self, owner: Owner) -> None:
        pass


def test_cleanup_waits_for_the_reconcile_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    service = Service()
    config = Config(enabled_backends=frozenset({"ecs"}), aws_region="eu-west-1", aws_result_uri="s3://b/p",
                    aws_subnets=("subnet-1",), aws_security_groups=("sg-1",), ecs_cluster="c",
                    ecs_execution_role_arn="arn:aws:iam::1:role/x", sagemaker_role_arn="")  # fmt: skip
    ctx = Context(config=config, kubernetes=KubernetesBackend(), local=LocalBackend(Path("/nonexistent"),
                  lambda *_: None), post_event=lambda *_: None, logger=logging.getLogger("test"),
                  ecs=service)  # type: ignore[arg-type]  # fmt: skip
    assert ctx.backend_verdict("ecs").is_true
    started, release = threading.Event(), threading.Event()

    def slow_reconcile(ctx: Context, body: Any, patch: Any) -> None:  # a resync creating the service
        started.set()
        assert release.wait(10)
        service.exists = True

    monkeypatch.setitem(reconcile.RECONCILERS, "recommenderdeployments", slow_reconcile)
    body = {"metadata": {"name": "rd", "namespace": "ns", "uid": "u-1"}, "spec": {"backend": "ecs"}}
    resync = threading.Thread(target=reconcile.run, args=(ctx, "recommenderdeployments", body, {}))
    resync.start()
    assert started.wait(10)
    deleting = threading.Thread(target=reconcile.cleanup, args=(ctx, "recommenderdeployments", body))
    deleting.start()
    time.sleep(0.3)
    assert service.deleted_existing is None, "the cleanup ran while the reconcile was still creating"
    release.set()
    resync.join(10)
    deleting.join(10)
    assert service.deleted_existing is True and not service.exists  # it found the service and removed it
    assert "u-1" not in ctx.locks  # forgotten once cleaned up

"""Fault injection for crash-safety tests: SIGKILL this process at a named point, right after a side effect.

`RECOPS_CRASH_AT=<point>:<n>` kills the process the n-th time `crash_point(<point>)` is reached (n defaults to 1).
Unset (always, outside tests) a crash point costs one comparison. Points (see their call sites):

* ``child-applied``: a child object was server-side applied (kube.apply returned);
* ``object-created``: kube.create_if_absent created an object (e.g. a DriftMonitor's retraining TrainingRun);
* ``job-submitted``: a batch backend's submit returned (kubernetes, local, ecs, sagemaker);
* ``aws-<Operation>``: a creating boto3 call returned (``aws-RunTask``, ``aws-RegisterTaskDefinition``, ...);
* ``status-written``: kopf applies the status patch after a handler returns, so this point sits at the start of
  the next reconcile of the same object, and counts only when that object's body already shows the status this
  process last wrote (the API server has stored it): the kill falls after the status write was committed.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Mapping
from typing import Any


def _parse(value: str | None) -> tuple[str | None, int]:
    if not value:
        return None, 0
    name, _, nth = value.partition(":")
    return name, int(nth or 1)


TARGET, NTH = _parse(os.environ.get("RECOPS_CRASH_AT"))
hits: dict[str, int] = {}
_lock = threading.Lock()


def crash_point(name: str) -> None:
    """SIGKILL this process when RECOPS_CRASH_AT names this point and this is its n-th hit."""
    if name != TARGET:
        return
    with _lock:
        hits[name] = hits.get(name, 0) + 1
        if hits[name] == NTH:
            os.kill(os.getpid(), signal.SIGKILL)


def status_written(written: Mapping[str, Any] | None, status: Mapping[str, Any] | None) -> None:
    """The `status-written` point: hit when the body's status already shows the conditions this process wrote."""
    if TARGET == "status-written" and written and (status or {}).get("conditions") == written.get("conditions"):
        crash_point("status-written")

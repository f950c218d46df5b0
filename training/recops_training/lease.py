"""The run lease: which attempt is working on a runKey's MLflow run right now.

Two attempts of one TrainingRun can overlap (a Job pod that is slow rather than dead, a local
process the operator could not see, a retry started while the first attempt still runs). The run
key alone cannot tell a dead attempt's run from a live one's, so the attempt holding the run writes
the tag ``recops.lease = "<attempt id> <unix seconds>"`` when it creates or takes over the run and
renews it every ``ttl / 6`` seconds until it is done; a finished attempt releases it (empty value).

Another attempt that finds the run with a fresh lease waits; one that finds no lease, an empty one
or one older than ``ttl`` takes the run over (claim, pause, read back: the last writer wins).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

LEASE_TAG = "recops.lease"
DEFAULT_TTL_SECONDS = 30.0
CLAIM_PAUSE_SECONDS = 1.0


def ttl_seconds() -> float:
    """``RECOPS_TRAIN_LEASE_SECONDS`` (default 30): how long a silent attempt still counts as alive."""
    raw = os.environ.get("RECOPS_TRAIN_LEASE_SECONDS", "")
    try:
        return max(3.0, float(raw)) if raw else DEFAULT_TTL_SECONDS
    except ValueError:
        return DEFAULT_TTL_SECONDS


def new_attempt_id() -> str:
    return f"{os.uname().nodename[:40]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def lease_value(attempt: str, now: float) -> str:
    return f"{attempt} {now:.0f}"


def live_holder(tag: str | None, now: float, ttl: float) -> str | None:
    """The attempt holding a lease tag value, or None when the lease is missing, released or expired."""
    if not tag:
        return None
    holder, _, stamp = tag.rpartition(" ")
    try:
        renewed = float(stamp)
    except ValueError:
        return None
    if not holder or now - renewed > ttl:
        return None
    return holder


class Heartbeat:
    """Renews the lease from a daemon thread while the attempt works; ``stop()`` releases it."""

    def __init__(self, set_tag: Callable[[str], Any], attempt: str, ttl: float) -> None:
        self._set_tag = set_tag
        self._attempt = attempt
        self._interval = ttl / 6
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="recops-lease", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            # a missed renewal only shortens the lease; the job goes on
            with contextlib.suppress(Exception):
                self._set_tag(lease_value(self._attempt, time.time()))

    def stop(self, release: bool) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if release:
            with contextlib.suppress(Exception):  # an unreleased lease expires after ttl
                self._set_tag("")

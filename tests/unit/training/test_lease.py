"""The run lease (training/recops_training/lease.py): who holds a runKey's run, and the heartbeat."""

from __future__ import annotations

import threading

import pytest
from recops_training.lease import Heartbeat, lease_value, live_holder, ttl_seconds


@pytest.mark.parametrize(
    ("tag", "now", "holder"),
    [
        (None, 100.0, None),
        ("", 100.0, None),  # released by a finished attempt
        ("host-1-42-ab12cd34 100", 100.0, "host-1-42-ab12cd34"),
        ("host-1-42-ab12cd34 100", 130.0, "host-1-42-ab12cd34"),  # exactly ttl old: still alive
        ("host-1-42-ab12cd34 100", 130.5, None),  # expired
        ("no-stamp", 100.0, None),
        (" 100", 100.0, None),
        ("a b c 100", 101.0, "a b c"),
    ],
)
def test_live_holder(tag, now, holder):
    assert live_holder(tag, now, 30.0) == holder


def test_lease_value_round_trips():
    assert live_holder(lease_value("me-1", 1000.4), 1010.0, 30.0) == "me-1"


def test_ttl_from_env(monkeypatch):
    monkeypatch.delenv("RECOPS_TRAIN_LEASE_SECONDS", raising=False)
    assert ttl_seconds() == 30.0
    monkeypatch.setenv("RECOPS_TRAIN_LEASE_SECONDS", "12")
    assert ttl_seconds() == 12.0
    monkeypatch.setenv("RECOPS_TRAIN_LEASE_SECONDS", "0.5")
    assert ttl_seconds() == 3.0  # floor: renewals every ttl/6 must stay sane
    monkeypatch.setenv("RECOPS_TRAIN_LEASE_SECONDS", "soon")
    assert ttl_seconds() == 30.0


def test_heartbeat_renews_then_releases_and_survives_a_failed_renewal():
    seen: list[str] = []
    renewed = threading.Event()

    def set_tag(value: str) -> None:
        seen.append(value)
        if len(seen) == 1:
            raise ConnectionError("MLflow blinked")
        if len(seen) >= 3:
            renewed.set()

    hb = Heartbeat(set_tag, "me-1", ttl=3.0).start()  # renews every 0.5 s
    assert renewed.wait(5)
    hb.stop(release=True)
    assert seen[-1] == ""
    assert all(live_holder(v, float(v.split()[-1]), 3.0) == "me-1" for v in seen[:-1])

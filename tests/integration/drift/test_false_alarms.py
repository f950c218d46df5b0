"""False alarms and detection of the drift check as users run it (no servers: local files only).

Each check is a synthetic shop (``recops_features.datagen``) over two 28-day windows: the real feature
job publishes one snapshot per window to a local directory, the reference is the TrainingRun's
reference document built from the first snapshot's manifest, and ``recops-drift``'s ``run_check``
compares the second snapshot with it, with the rules, driftShare and minSamples the operator derives
from the shipped DriftMonitor examples. The measurement code is ``bench/drift/false_alarms.py``; its
bigger run is ``bench/results/drift-false-alarms.json``.

Fresh data from the same distribution must alarm in at most 5 % of the checks (whole monitor and each
feature). Injected drift (the datagen's four knobs at the demo's strengths) must be detected in every
check, and show in the feature it changes: a category-mix shift in ``interactions.category`` (the
traffic's category mix), a price shift in ``users.avg_price``, a new-user surge in ``users.tenure_days``,
bots in the item counts.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT / "bench" / "drift") not in sys.path:
    sys.path.insert(0, str(ROOT / "bench" / "drift"))

import false_alarms as FA  # noqa: E402

EVENTS = 40_000
"""Events per two windows: ~760 users and ~700 items a window, so minSamples 500 checks every table."""
SMALL_EVENTS = 12_000
"""~250 users and items a window: just above the full loop's minSamples 200, where noise is largest."""
FRESH_CHECKS = 30
DRIFT_CHECKS = 6
MAX_FALSE_ALARM_RATE = 0.05
SNAPSHOT_FEATURES = 30
"""Numeric and categorical columns of the built-in transform's three tables (keys and times are not monitored)."""
SHIPPED = ("full-loop", "driftmonitor")
"""The two shipped DriftMonitor examples: the full loop's and the ML scientist's (examples/driftmonitor.yaml)."""


def _report(title: str, aggregated: dict[str, Any]) -> None:
    print(f"\n{title}")
    for name, m in aggregated.items():
        v = m["verdict"]
        noisy = {f: f"{r['count']}/{r['of']}" for f, r in m["features"].items() if r["count"]}
        print(f"  {name}: {v['count']}/{v['of']} (Wilson95 {v['wilson95']}); features drifted: {noisy or 'none'}")


@pytest.fixture(scope="module")
def monitors() -> dict[str, dict[str, Any]]:
    return FA.all_monitors()


@pytest.fixture(scope="module")
def fresh(monitors: dict[str, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    checks = FA.run_checks(
        monitors, events=EVENTS, seeds=range(1000, 1000 + FRESH_CHECKS), workdir=tmp_path_factory.mktemp("fresh")
    )
    return FA.aggregate(checks)


def test_shipped_monitors_are_measured_with_their_own_thresholds(monitors: dict[str, dict[str, Any]]) -> None:
    import yaml

    for name, path in FA.MONITOR_FILES.items():
        spec = yaml.safe_load((ROOT / path).read_text())["spec"]
        config = monitors[name]
        assert config["driftShare"] == spec.get("driftShare", "0.3")  # the CRD's default when not set
        assert config["minSamples"] == spec["window"].get("minSamples", 500)
        assert config["defaultRule"]["threshold"] == spec["defaultRule"]["threshold"]
        assert [r["name"] for r in config["features"]] == [r["name"] for r in spec.get("features", [])]


def test_fresh_data_from_the_same_distribution_rarely_alarms(fresh: dict[str, Any]) -> None:
    _report(f"false alarms, {FRESH_CHECKS} fresh windows of {EVENTS // 2} events", fresh)
    for name, m in fresh.items():
        assert m["featuresChecked"] == [SNAPSHOT_FEATURES] and not m["insufficientData"], (name, m)
        assert m["verdict"]["rate"] <= MAX_FALSE_ALARM_RATE, (name, m["verdict"])
        for feature, r in m["features"].items():
            assert r["of"] == FRESH_CHECKS and r["rate"] <= MAX_FALSE_ALARM_RATE, (name, feature, r)


def test_small_fresh_windows_rarely_alarm(monitors: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """Windows just above the full loop's minSamples: where PSI noise is largest."""
    chosen = {"full-loop": monitors["full-loop"]}
    checks = FA.run_checks(chosen, events=SMALL_EVENTS, seeds=range(2000, 2000 + FRESH_CHECKS), workdir=tmp_path)
    aggregated = FA.aggregate(checks)
    _report(f"false alarms, {FRESH_CHECKS} fresh windows of {SMALL_EVENTS // 2} events", aggregated)
    for name, m in aggregated.items():
        assert m["featuresChecked"] == [SNAPSHOT_FEATURES], (name, m["featuresChecked"], m["insufficientData"])
        assert m["verdict"]["rate"] <= MAX_FALSE_ALARM_RATE, (name, m["verdict"])
        for feature, r in m["features"].items():
            assert r["rate"] <= MAX_FALSE_ALARM_RATE, (name, feature, r)


@pytest.fixture(scope="module")
def injected(monitors: dict[str, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    chosen = {name: monitors[name] for name in SHIPPED}
    out = {}
    for knob, strength in FA.DEMO_DRIFT.items():
        checks = FA.run_checks(
            chosen,
            events=EVENTS,
            seeds=range(5000, 5000 + DRIFT_CHECKS),
            drift=FA.Drift(knob, strength),
            workdir=tmp_path_factory.mktemp(knob),
        )
        out[knob] = FA.aggregate(checks)
    return out


@pytest.mark.parametrize(("monitor", "knob"), [(monitor, knob) for monitor in SHIPPED for knob in FA.DEMO_DRIFT])
def test_injected_drift_is_detected_in_every_check(monitor: str, knob: str, injected: dict[str, Any]) -> None:
    m = injected[knob][monitor]
    _report(f"detection of {knob}={FA.DEMO_DRIFT[knob]:g}, {DRIFT_CHECKS} windows", {monitor: m})
    assert m["verdict"]["count"] == DRIFT_CHECKS, m["verdict"]


def test_each_detectable_drift_shows_in_the_feature_it_changes(injected: dict[str, Any]) -> None:
    features = injected["new_user_share"]["full-loop"]["features"]
    assert features["users.tenure_days"]["count"] == DRIFT_CHECKS
    for monitor in SHIPPED:
        assert injected["category_shift"][monitor]["features"]["interactions.category"]["count"] == DRIFT_CHECKS
        assert injected["price_multiplier"][monitor]["features"]["users.avg_price"]["count"] == DRIFT_CHECKS
    bots = injected["bot_share"]["full-loop"]["features"]
    assert all(bots[f]["count"] == DRIFT_CHECKS for f in ("items.views", "items.events", "items.popularity"))

from __future__ import annotations

from recops.conditions import Verdict, apply_verdicts, set_condition, status_patch, transitions


def test_transition_time_kept_unless_status_flips() -> None:
    first = set_condition([], "Ready", Verdict.fail("A", "a"), 1, "2026-01-01T00:00:00Z")
    same = set_condition(first, "Ready", Verdict.fail("B", "b"), 2, "2026-01-02T00:00:00Z")
    assert same[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert same[0]["reason"] == "B" and same[0]["observedGeneration"] == 2
    flipped = set_condition(same, "Ready", Verdict.ok("C"), 2, "2026-01-03T00:00:00Z")
    assert flipped[0]["lastTransitionTime"] == "2026-01-03T00:00:00Z"


def test_order_is_stable_and_transitions_reported() -> None:
    before = apply_verdicts([], {"Ready": Verdict.unknown("X"), "ModelLoaded": Verdict.unknown("Y")}, 1, "t0")
    after = apply_verdicts(before, {"ModelLoaded": Verdict.ok("Z"), "Ready": Verdict.unknown("X")}, 1, "t1")
    assert [c["type"] for c in after] == ["Ready", "ModelLoaded"]
    assert transitions(before, after) == [("ModelLoaded", "Unknown", "True")]


def test_status_patch_only_changes() -> None:
    assert status_patch({"a": 1, "b": [1]}, {"a": 1, "b": [1]}) == {}
    assert status_patch({"a": 1}, {"a": 2, "c": 3}) == {"a": 2, "c": 3}

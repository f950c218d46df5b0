"""Pure helpers for status conditions (no kopf, no Kubernetes client).

As in cert-manager: `lastTransitionTime` only moves when the status flips, and a status is written only
when it changed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"


@dataclass(frozen=True)
class Verdict:
    """The outcome of one policy decision: a condition's status, reason and message."""

    status: str
    reason: str
    message: str = ""

    @classmethod
    def ok(cls, reason: str, message: str = "") -> Verdict:
        return cls(TRUE, reason, message)

    @classmethod
    def fail(cls, reason: str, message: str) -> Verdict:
        return cls(FALSE, reason, message)

    @classmethod
    def unknown(cls, reason: str, message: str = "") -> Verdict:
        return cls(UNKNOWN, reason, message)

    @property
    def is_true(self) -> bool:
        return self.status == TRUE


def now_rfc3339(clock: dt.datetime | None = None) -> str:
    moment = clock or dt.datetime.now(dt.UTC)
    return moment.astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def find(conditions: Iterable[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    for condition in conditions:
        if condition.get("type") == type_:
            return condition
    return None


def set_condition(
    conditions: list[dict[str, Any]] | None,
    type_: str,
    verdict: Verdict,
    generation: int | None,
    now: str,
) -> list[dict[str, Any]]:
    """Return a new list with `type_` set to `verdict`, keeping lastTransitionTime unless status flips."""
    result = [dict(c) for c in conditions or [] if c.get("type") != type_]
    previous = find(conditions or [], type_)
    transition = now
    if previous is not None and previous.get("status") == verdict.status and previous.get("lastTransitionTime"):
        transition = str(previous["lastTransitionTime"])
    condition: dict[str, Any] = {
        "type": type_,
        "status": verdict.status,
        "reason": verdict.reason,
        "message": verdict.message,
        "lastTransitionTime": transition,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    # Keep a stable order: the order in which types were first set.
    order = [c.get("type") for c in conditions or []]
    result.append(condition)
    result.sort(key=lambda c: order.index(c["type"]) if c["type"] in order else len(order))
    return result


def apply_verdicts(
    conditions: list[dict[str, Any]] | None,
    verdicts: Mapping[str, Verdict],
    generation: int | None,
    now: str,
) -> list[dict[str, Any]]:
    result = list(conditions or [])
    for type_, verdict in verdicts.items():
        result = set_condition(result, type_, verdict, generation, now)
    return result


def transitions(
    before: Iterable[Mapping[str, Any]], after: Iterable[Mapping[str, Any]]
) -> list[tuple[str, str | None, str]]:
    """(type, old status, new status) for every condition whose status changed: these become Events."""
    old = {str(c.get("type")): c.get("status") for c in before}
    return [
        (str(c["type"]), old.get(str(c["type"])), str(c["status"]))
        for c in after
        if old.get(str(c["type"])) != c["status"]
    ]


def status_patch(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of `desired` that differs from `current` (empty: nothing to write)."""
    current = current or {}
    return {key: value for key, value in desired.items() if current.get(key) != value}

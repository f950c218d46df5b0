"""Readable tables of the four kinds, as `kubectl get recops` shows them, for the CLI and the demo."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

KIND_ORDER = ("FeaturePipeline", "TrainingRun", "RecommenderDeployment", "DriftMonitor")
SUMMARY = {"FeaturePipeline": "Ready", "TrainingRun": "Succeeded", "RecommenderDeployment": "Ready",
           "DriftMonitor": "Ready"}


def _cond(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


def _age(timestamp: str | None, now: dt.datetime) -> str:
    if not timestamp or now.year < 2001:
        return ""
    seconds = int((now - dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))).total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def detail(obj: Mapping[str, Any]) -> str:
    """The one thing the owner wants to know about this object right now."""
    kind, status = obj["kind"], obj.get("status") or {}
    if kind == "FeaturePipeline":
        snap = status.get("latestSnapshot") or {}
        return (f"snapshot {str(snap.get('version', ''))[:12]} rows={snap.get('rows')}" if snap
                else (status.get("lastRun") or {}).get("result", ""))
    if kind == "TrainingRun":
        parts = [f"{obj['spec']['algorithm']['name']}"]
        if status.get("ndcgAt10"):
            parts.append(f"ndcg@10={status['ndcgAt10']}")
        if status.get("modelVersion"):
            parts.append(f"v{status['modelVersion']}")
        promoted = _cond(obj, "Promoted").get("status")
        if promoted in ("True", "False"):
            parts.append("promoted" if promoted == "True" else "not promoted")
        return " ".join(parts)
    if kind == "RecommenderDeployment":
        return f"v{status.get('servedVersion', '-')} ready={status.get('ready', '0/0')} {status.get('url', '')}"
    drift = _cond(obj, "DriftDetected").get("status", "")
    return (f"drift={drift} score={status.get('score', '-')} drifted={status.get('driftedFeatures') or '-'} "
            f"samples={status.get('samples', '-')}")


def render(objects: Sequence[Mapping[str, Any]], now: dt.datetime | None = None, elapsed: str = "") -> str:
    now = now or dt.datetime.now(dt.UTC)
    rows = [("KIND", "NAME", "STATUS", "REASON", "DETAIL", "AGE")]
    for obj in sorted(objects, key=lambda o: (KIND_ORDER.index(o["kind"]) if o["kind"] in KIND_ORDER else 9,
                                              o["metadata"].get("creationTimestamp", ""))):
        cond = _cond(obj, SUMMARY.get(obj["kind"], "Ready"))
        rows.append((obj["kind"], obj["metadata"]["name"], cond.get("status", "-"), cond.get("reason", "-"),
                     detail(obj), _age(obj["metadata"].get("creationTimestamp"), now)))
    widths = [min(max(len(str(r[i])) for r in rows), 60) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c)[:60].ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if elapsed:
        lines.append(f"(elapsed {elapsed})")
    return "\n".join(lines)

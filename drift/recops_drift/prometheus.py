"""Prometheus: metric families for drift results and the alert rules that watch them (pure functions).

Metrics (gauges) the operator exports per DriftMonitor:

* ``recops_drift_score{monitor,namespace,feature,method}``: the feature's score (psi, js distance,
  KS D or Cohen's w); only for features that were checked;
* ``recops_drift_feature_drifted{monitor,namespace,feature,method}``: 1 when that feature drifted;
* ``recops_drift_detected{monitor,namespace}``: 1 when the last check found drift;
* ``recops_drift_share{monitor,namespace}``: share of checked features that drifted;
* ``recops_drift_samples{monitor,namespace}``: samples in the last current window;
* ``recops_drift_last_check_timestamp_seconds{monitor,namespace}``: when the last check finished
  (what ``RecopsDriftCheckStale`` watches).

The operator holds the check's result document (the termination message), not a
:class:`~recops_drift.stats.DriftResult`: :func:`families_from_result` takes either.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # stats pulls in scipy (~70 MB): the operator imports this module only for rule_group
    from . import stats as S

DEFAULT_RUNBOOK = "https://github.com/recops/recops/blob/main/docs/runbooks/drift.md"


@dataclass(frozen=True)
class Sample:
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(frozen=True)
class MetricFamily:
    name: str
    help: str
    samples: tuple[Sample, ...]
    type: str = "gauge"


def _epoch(checked_at: str | float | datetime | None) -> float | None:
    if checked_at is None:
        return None
    if isinstance(checked_at, int | float):
        return float(checked_at)
    if isinstance(checked_at, datetime):
        return checked_at.timestamp()
    text = checked_at.strip()
    return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text).timestamp()


def _score(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def families_from_result(
    result: S.DriftResult | Mapping[str, Any],
    *,
    monitor: str,
    namespace: str,
    checked_at: str | float | datetime | None = None,
) -> list[MetricFamily]:
    """A DriftResult or a result document (``recops-drift`` output) -> metric families."""
    from . import stats as S

    share: float | None
    if isinstance(result, S.DriftResult):
        drifted, share, samples = result.drifted, result.score, result.samples
        features = [
            {"name": f.name, "method": f.method, "score": f.score, "drifted": f.drifted, "status": f.status}
            for f in result.features
        ]
    else:
        drifted = bool(result.get("drifted"))
        share = _score(result.get("score"))
        samples = int(result.get("samples") or 0)
        features = list(result.get("features") or [])
        checked_at = checked_at if checked_at is not None else result.get("checkedAt")
    base = (("monitor", monitor), ("namespace", namespace))
    scores, flags = [], []
    for f in features:
        if f.get("status") not in (S.DRIFTED, S.NO_DRIFT):
            continue
        value = _score(f.get("score"))
        labels = (*base, ("feature", str(f.get("name"))), ("method", str(f.get("method"))))
        if value is not None:
            scores.append(Sample(labels, value))
        flags.append(Sample(labels, 1.0 if f.get("drifted") else 0.0))
    families = [
        MetricFamily(
            "recops_drift_score",
            "Drift score of a feature in the last check (psi, jensenshannon distance, KS statistic or Cohen's w).",
            tuple(scores),
        ),
        MetricFamily("recops_drift_feature_drifted", "1 when the feature drifted in the last check.", tuple(flags)),
        MetricFamily(
            "recops_drift_detected",
            "1 when the last drift check found drift.",
            (Sample(base, 1.0 if drifted else 0.0),),
        ),
        MetricFamily(
            "recops_drift_samples",
            "Samples in the last drift check's current window.",
            (Sample(base, float(samples)),),
        ),
    ]
    if share is not None:
        families.append(
            MetricFamily(
                "recops_drift_share",
                "Share of checked features that drifted in the last check.",
                (Sample(base, share),),
            )
        )
    epoch = _epoch(checked_at)
    if epoch is not None:
        families.append(
            MetricFamily(
                "recops_drift_last_check_timestamp_seconds",
                "Unix time the last drift check finished.",
                (Sample(base, epoch),),
            )
        )
    return families


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def render_text(families: Iterable[MetricFamily]) -> str:
    """Prometheus text exposition format (0.0.4)."""
    lines: list[str] = []
    for fam in families:
        lines.append(f"# HELP {fam.name} {fam.help.replace(chr(92), chr(92) * 2).replace(chr(10), ' ')}")
        lines.append(f"# TYPE {fam.name} {fam.type}")
        for sample in fam.samples:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sample.labels)
            lines.append(
                f"{fam.name}{{{labels}}} {_number(sample.value)}" if labels else f"{fam.name} {_number(sample.value)}"
            )
    return "\n".join(lines) + "\n"


def to_prometheus_client(families: Iterable[MetricFamily]) -> list[Any]:
    """As ``prometheus_client`` GaugeMetricFamily objects, for a custom collector's ``collect()``."""
    from prometheus_client.core import GaugeMetricFamily

    out = []
    for fam in families:
        keys = [k for k, _ in fam.samples[0].labels] if fam.samples else []
        gauge = GaugeMetricFamily(fam.name, fam.help, labels=keys)
        for sample in fam.samples:
            gauge.add_metric([v for _, v in sample.labels], sample.value)
        out.append(gauge)
    return out


# ----------------------------------------------------------------------------------------- alert rules


def _selector(monitor: str | None, namespace: str | None) -> str:
    parts = []
    if namespace is not None:
        parts.append(f'namespace="{_escape(namespace)}"')
    if monitor is not None:
        parts.append(f'monitor="{_escape(monitor)}"')
    return "{" + ",".join(parts) + "}"


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if not duration or duration[-1] not in units or not duration[:-1].isdigit():
        raise ValueError(f"{duration!r} is not a duration such as '90m' or '2h'")
    return int(duration[:-1]) * units[duration[-1]]


def rule_group(
    *,
    monitor: str | None = None,
    namespace: str | None = None,
    severity: str = "warning",
    runbook_url: str | None = None,
    detected_for: str = "5m",
    stale_after: str = "1h",
    stale_for: str = "10m",
    extra_labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One rule group with ``RecopsDriftDetected`` and ``RecopsDriftCheckStale``.

    ``monitor``/``namespace`` narrow the rules to one DriftMonitor (None: every monitor).
    ``stale_after`` is how old the last check may get (set it above the monitor's schedule period).
    """
    if severity not in ("info", "warning", "critical"):
        raise ValueError(f"severity must be info, warning or critical, got {severity!r}")
    sel = _selector(monitor, namespace)
    stale_seconds = _seconds(stale_after)
    _seconds(detected_for)
    _seconds(stale_for)
    runbook = runbook_url or DEFAULT_RUNBOOK
    labels = {"severity": severity, **dict(extra_labels or {})}
    name = "recops-drift" + (f".{namespace}" if namespace else "") + (f".{monitor}" if monitor else "")
    return {
        "name": name,
        "rules": [
            {
                "alert": "RecopsDriftDetected",
                "expr": f"max by (namespace, monitor) (recops_drift_detected{sel}) == 1",
                "for": detected_for,
                "labels": dict(labels),
                "annotations": {
                    "summary": "Drift detected by DriftMonitor {{ $labels.namespace }}/{{ $labels.monitor }}",
                    "description": "The last drift check of DriftMonitor "
                    "{{ $labels.namespace }}/{{ $labels.monitor }} "
                    "found drift in its current window compared with the training reference. See "
                    "`kubectl get driftmonitor -n {{ $labels.namespace }} {{ $labels.monitor }}` "
                    "and its report for the drifted features.",
                    "runbook_url": runbook,
                },
            },
            {
                "alert": "RecopsDriftCheckStale",
                "expr": "time() - max by (namespace, monitor) "
                f"(recops_drift_last_check_timestamp_seconds{sel}) "
                f"> {stale_seconds}",
                "for": stale_for,
                "labels": dict(labels),
                "annotations": {
                    "summary": "Drift checks of DriftMonitor {{ $labels.namespace }}/{{ $labels.monitor }} are stale",
                    "description": "DriftMonitor {{ $labels.namespace }}/{{ $labels.monitor }} "
                    "has not finished a "
                    f"drift check for more than {stale_after} (last one {{{{ $value | humanizeDuration }}}}"
                    " ago): drift would go unnoticed. Check the monitor's conditions and its check "
                    "Jobs.",
                    "runbook_url": runbook,
                },
            },
        ],
    }


def prometheus_rule(
    *,
    name: str,
    namespace: str,
    monitor: str | None = None,
    severity: str = "warning",
    runbook_url: str | None = None,
    detected_for: str = "5m",
    stale_after: str = "1h",
    stale_for: str = "10m",
    labels: Mapping[str, str] | None = None,
    owner_references: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ``monitoring.coreos.com/v1`` PrometheusRule object for one DriftMonitor (or a namespace)."""
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {
            "app.kubernetes.io/managed-by": "recops",
            "app.kubernetes.io/component": "drift-monitor",
            **dict(labels or {}),
        },
    }
    if owner_references:
        metadata["ownerReferences"] = owner_references
    group = rule_group(
        monitor=monitor,
        namespace=namespace,
        severity=severity,
        runbook_url=runbook_url,
        detected_for=detected_for,
        stale_after=stale_after,
        stale_for=stale_for,
    )
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": metadata,
        "spec": {"groups": [group]},
    }


def rules_file(groups: Iterable[Mapping[str, Any]]) -> str:
    """A plain Prometheus rules file (YAML) for Prometheus without the operator CRDs."""
    import yaml

    return str(yaml.safe_dump({"groups": [dict(g) for g in groups]}, sort_keys=False, width=200))

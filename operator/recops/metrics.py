"""The operator's own Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, start_http_server

RECONCILES = Counter("recops_reconciles_total", "Reconciles by kind and outcome.", ["kind", "outcome"])
DRIFT_SCORE = Gauge("recops_drift_score", "Drift score per monitor and feature.",
                    ["namespace", "monitor", "feature", "method"])
DRIFT_DETECTED = Gauge("recops_drift_detected", "1 when the monitor's last check found drift.",
                       ["namespace", "monitor"])
DRIFT_SAMPLES = Gauge("recops_drift_samples", "Samples in the monitor's last current window.",
                      ["namespace", "monitor"])
DRIFT_LAST_CHECK = Gauge("recops_drift_last_check_timestamp_seconds", "When the last drift check finished.",
                         ["namespace", "monitor"])


def start_metrics_server(port: int) -> None:
    start_http_server(port, addr="0.0.0.0")  # noqa: S104 (scraped by Prometheus from outside the pod)

"""Metric families, exposition text and alert rules (checked with the real promtool when installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from recops_drift import prometheus as P
from recops_drift import stats as S


def _result() -> S.DriftResult:
    rng = np.random.default_rng(0)
    prof = S.prepare_profile({"age": rng.normal(size=5000)}, {"device": rng.choice(["a", "b"], size=5000)})
    return S.compare(
        prof,
        {"age": rng.normal(1.0, 1, 2000), "device": rng.choice(["a", "b"], size=2000)},
        S.DriftSpec(default_rule=S.FeatureRule("*", "psi", "0.2")),
    )


def test_families_from_result_and_from_result_document_agree() -> None:
    from recops_drift.cli import result_document

    result = _result()
    fams = P.families_from_result(result, monitor="m", namespace="ns", checked_at="2026-11-29T04:00:00Z")
    by_name = {f.name: f for f in fams}
    assert by_name["recops_drift_detected"].samples[0].value == 1.0
    assert by_name["recops_drift_samples"].samples[0].value == 2000
    scores = {dict(s.labels)["feature"]: s.value for s in by_name["recops_drift_score"].samples}
    assert set(scores) == {"age", "device"} and scores["age"] > 0.2
    assert dict(by_name["recops_drift_score"].samples[0].labels).keys() == {
        "monitor",
        "namespace",
        "feature",
        "method",
    }
    assert by_name["recops_drift_last_check_timestamp_seconds"].samples[0].value == 1795924800.0
    doc = result_document(result, checked_at="2026-11-29T04:00:00Z")
    again = {f.name: f for f in P.families_from_result(doc, monitor="m", namespace="ns")}
    assert again["recops_drift_detected"] == by_name["recops_drift_detected"]
    assert again["recops_drift_last_check_timestamp_seconds"] == by_name["recops_drift_last_check_timestamp_seconds"]
    assert {dict(s.labels)["feature"] for s in again["recops_drift_score"].samples} == set(scores)


def test_render_text_exposition_format() -> None:
    fams = P.families_from_result(_result(), monitor='we"ird', namespace="ns", checked_at=1.0)
    text = P.render_text(fams)
    assert "# TYPE recops_drift_score gauge" in text
    assert 'monitor="we\\"ird"' in text
    assert "recops_drift_last_check_timestamp_seconds{" in text and text.endswith("\n")
    pytest.importorskip("prometheus_client")
    from prometheus_client.parser import text_string_to_metric_families

    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    assert parsed["recops_drift_detected"].samples[0].value == 1.0


def test_to_prometheus_client() -> None:
    pytest.importorskip("prometheus_client")
    gauges = P.to_prometheus_client(P.families_from_result(_result(), monitor="m", namespace="ns"))
    assert {g.name for g in gauges} >= {"recops_drift_score", "recops_drift_detected", "recops_drift_samples"}


def test_prometheus_rule_object() -> None:
    owner = [
        {
            "apiVersion": "recops.dev/v1alpha1",
            "kind": "DriftMonitor",
            "name": "m",
            "uid": "u",
            "controller": True,
        }
    ]
    rule = P.prometheus_rule(
        name="m-drift",
        namespace="shop",
        monitor="m",
        runbook_url="https://runbooks.example/drift",
        owner_references=owner,
    )
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert rule["metadata"]["ownerReferences"] == owner
    alerts = {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}
    assert set(alerts) == {"RecopsDriftDetected", "RecopsDriftCheckStale"}
    for alert in alerts.values():
        assert set(alert["annotations"]) == {"summary", "description", "runbook_url"}
        assert alert["annotations"]["runbook_url"] == "https://runbooks.example/drift"
        assert 'namespace="shop",monitor="m"' in alert["expr"]
    with pytest.raises(ValueError, match="severity"):
        P.rule_group(severity="page")
    with pytest.raises(ValueError, match="duration"):
        P.rule_group(stale_after="1 hour")


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)")
def test_promtool_check_and_unit_test_rules(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(P.rules_file([P.rule_group(namespace="shop", monitor="m", stale_after="1h", stale_for="10m")]))
    done = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                # drift flips to 1 at minute 10; checks stop after minute 20 (timestamp frozen at 1200 s)
                "input_series": [
                    {"series": 'recops_drift_detected{namespace="shop",monitor="m"}', "values": "0x9 1x100"},
                    {
                        "series": 'recops_drift_last_check_timestamp_seconds{namespace="shop",monitor="m"}',
                        "values": "0+60x20 1200x200",
                    },
                    {"series": 'recops_drift_detected{namespace="other",monitor="m"}', "values": "1x100"},
                ],
                "alert_rule_test": [
                    {"eval_time": "12m", "alertname": "RecopsDriftDetected", "exp_alerts": []},
                    {
                        "eval_time": "16m",
                        "alertname": "RecopsDriftDetected",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", "namespace": "shop", "monitor": "m"},
                                "exp_annotations": {
                                    "summary": "Drift detected by DriftMonitor shop/m",
                                    "description": "The last drift check of DriftMonitor shop/m found drift "
                                    "in its "
                                    "current window compared with the training reference. See `kubectl get "
                                    "driftmonitor -n shop m` and its report for the drifted features.",
                                    "runbook_url": P.DEFAULT_RUNBOOK,
                                },
                            }
                        ],
                    },
                    {"eval_time": "70m", "alertname": "RecopsDriftCheckStale", "exp_alerts": []},
                    {
                        "eval_time": "95m",
                        "alertname": "RecopsDriftCheckStale",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", "namespace": "shop", "monitor": "m"},
                                "exp_annotations": {
                                    "summary": "Drift checks of DriftMonitor shop/m are stale",
                                    "description": "DriftMonitor shop/m has not finished a drift check for "
                                    "more "
                                    "than 1h (last one 1h 15m 0s ago): drift would go unnoticed. Check the "
                                    "monitor's conditions and its check Jobs.",
                                    "runbook_url": P.DEFAULT_RUNBOOK,
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    test_file = tmp_path / "rules_test.yaml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False, width=400))
    done = subprocess.run([PROMTOOL, "test", "rules", str(test_file)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)")
def test_promtool_checks_generic_rules_and_exposition(tmp_path: Path) -> None:
    rules = tmp_path / "generic.yaml"
    rules.write_text(P.rules_file([P.rule_group(severity="critical")]))
    done = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    text = P.render_text(P.families_from_result(_result(), monitor="m", namespace="ns", checked_at=1.0))
    done = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr

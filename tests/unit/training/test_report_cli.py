"""The HTML report and the CLI's result handling (no MLflow needed)."""

from __future__ import annotations

import json

from recops_training import cli
from recops_training.evaluation import metric_names
from recops_training.report import write_report


def test_report_is_self_contained(tmp_path):
    ks = [5, 10]
    metrics = dict.fromkeys(metric_names(ks), 0.2)
    baseline = dict.fromkeys(metric_names(ks), 0.1)
    paths = write_report(
        tmp_path, algorithm="itemknn", metrics=metrics, baseline=baseline, ks=ks, facts={"snapshot": "v1"}
    )
    names = sorted(p.name for p in paths)
    assert names == ["metrics_by_k.png", "popularity.png", "report.html"]
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "src='http" not in page
    assert "ndcg" in page and "popularity" in page
    assert (tmp_path / "metrics_by_k.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_invalid_config_exits_2_with_result(tmp_path, monkeypatch):
    cfg = tmp_path / "c.json"
    cfg.write_text(
        json.dumps(
            {
                "runKey": "k",
                "snapshot": {"uri": "/x"},
                "algorithm": {"name": "itemknn"},
                "mlflow": {"registeredModelName": "m"},
                "typo": 1,
            }
        )
    )
    out = tmp_path / "result.json"
    code = cli.main(["run", "--config", str(cfg), "--result-file", str(out)])
    res = json.loads(out.read_text())
    assert code == 2 and res["ok"] is False and res["reason"] == "InvalidConfig" and "typo" in res["message"]


def test_unreadable_config_exits_2(tmp_path, monkeypatch):
    monkeypatch.setenv("RECOPS_RESULT_FILE", str(tmp_path / "r.json"))
    assert cli.main(["run", "--config", str(tmp_path / "missing.json")]) == 2
    assert json.loads((tmp_path / "r.json").read_text())["reason"] == "InvalidConfig"


def test_unknown_metric_exits_2(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(
        json.dumps(
            {
                "runKey": "k",
                "snapshot": {"uri": "/x"},
                "algorithm": {"name": "itemknn"},
                "mlflow": {"registeredModelName": "m"},
                "promotion": {"metric": "ndcg_at_7"},
            }
        )
    )
    out = tmp_path / "r.json"
    assert cli.main(["run", "--config", str(cfg), "--result-file", str(out)]) == 2
    assert json.loads(out.read_text())["reason"] == "UnknownMetric"


def test_no_tracking_uri_exits_4(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = tmp_path / "c.json"
    cfg.write_text(
        json.dumps(
            {
                "runKey": "k",
                "snapshot": {"uri": "/x"},
                "algorithm": {"name": "popularity"},
                "mlflow": {"registeredModelName": "m"},
            }
        )
    )
    out = tmp_path / "r.json"
    assert cli.main(["run", "--config", str(cfg), "--result-file", str(out)]) == 4


def test_result_is_compact():
    big = {"ok": True, "reason": "X", "message": "m" * 10000, "metrics": {f"k{i}": "0.1" for i in range(10)}}
    text = cli.compact(big)
    assert len(text.encode()) <= 4096 and json.loads(text)["ok"] is True

"""The alert rules the operator creates are valid Prometheus rules (promtool from Debian's prometheus)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from recops.api import DriftMonitorSpec, RecommenderDeploymentSpec
from recops.controllers import driftmonitor, recommenderdeployment
from recops.controllers.common import Owner

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: `make deps` installs Debian's prometheus")
        pytest.skip("promtool not installed (run `make deps`)")
    return tool


def test_serving_and_drift_rules_pass_promtool(tmp_path: Path) -> None:
    rd = RecommenderDeploymentSpec.model_validate(yaml.safe_load((EXAMPLES / "recommenderdeployment.yaml").read_text())
                                                  ["spec"])
    dm = DriftMonitorSpec.model_validate(yaml.safe_load((EXAMPLES / "driftmonitor.yaml").read_text())["spec"])
    groups = [recommenderdeployment.build_prometheus_rule(rd, Owner("RecommenderDeployment", "shop", "ns", "u"))
              ["spec"]["groups"][0]]
    groups += driftmonitor.build_children(dm, Owner("DriftMonitor", "drift", "ns", "u"), monitoring_crds=True)[0][
        "spec"]["groups"]
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": groups}))
    out = subprocess.run([_promtool(), "check", "rules", str(rules)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 6 rules found" in out.stdout

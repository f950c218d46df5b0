"""checkov over the rendered chart: no failure outside the reviewed skip list in charts/recops/.checkov.yaml."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from chartlib import ALL_FEATURES, CHART, render_text

# checkov pins many dependencies of its own: it lives in its own venv so it never changes the project's.
CHECKOV_VENV = Path.home() / ".cache" / "recops" / "venvs" / "checkov"


def _checkov() -> str | None:
    candidates = [os.environ.get("RECOPS_CHECKOV"), str(CHECKOV_VENV / "bin" / "checkov"), shutil.which("checkov")]
    return next((c for c in candidates if c and Path(c).exists()), None)


def test_skip_list_is_reviewed() -> None:
    text = (CHART / ".checkov.yaml").read_text().splitlines()
    for i, line in enumerate(text):
        if line.strip().startswith("- CKV"):
            assert text[i - 1].strip().startswith("#"), f"skip without a reason: {line.strip()}"


def test_checkov_passes(tmp_path: Path) -> None:
    checkov = _checkov()
    if checkov is None:
        pytest.skip(f"checkov not installed: python3 -m venv {CHECKOV_VENV} && {CHECKOV_VENV}/bin/pip install checkov")
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(render_text(*ALL_FEATURES).stdout)
    proc = subprocess.run([checkov, "--config-file", str(CHART / ".checkov.yaml"), "-f", str(manifest), "-o", "json"],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [f"{c['check_id']} {c['resource']}" for r in reports for c in r["results"]["failed_checks"]]
    passed = sum(r["summary"]["passed"] for r in reports)
    assert not failed, failed
    assert passed > 100

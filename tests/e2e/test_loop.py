"""The whole loop on the lab, as `make demo` runs it (shortened): real control plane, operator with the local
backend, MLflow, PostgreSQL, the S3 emulator (moto, an emulator) and Prometheus.

Seeds synthetic data, applies examples/full-loop, and asserts every step's real outcome: a snapshot whose
counts are reported, a trained and promoted model version in MLflow, a model server answering real top-10
requests (known user, cold-start user), a drift check against the served version's reference; then time
passes with drift (same world: catalogue and users unchanged), live requests reach the server, and the loop
must close: DRIFT=True naming the features, the alert firing in Prometheus, exactly one retraining run, a
new version promoted by the gate and served.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from recops.demo import Demo

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]


def _conds(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    from recops.lab import down, status

    running_before = {name for name, row in status().items() if row.get("ready")}
    d = Demo(events=120_000, seed=11, timeout=420)
    d.lab_up()
    try:
        yield d
    finally:
        d.kubectl("delete", "-f", str(d_root() / "examples" / "full-loop"), "--wait=true", "--timeout=120s",
                  check=False)
        # Stop what this test started (the operator's local servers and jobs go with it), nothing else.
        started = [name for name in status() if name not in running_before]
        if started:
            down(components=started)


def d_root() -> Any:
    from recops.demo import ROOT

    return ROOT


def test_the_loop_serves_a_promoted_model(demo: Demo) -> None:
    demo.seed_data()
    demo.apply_examples()
    rd = demo.wait_for_serving()

    fp = demo.get("fp", "shop-features")
    snapshot = fp["status"]["latestSnapshot"]
    assert snapshot["rows"] > 1000 and len(snapshot["version"]) == 64
    assert _conds(fp)["QualityPassed"]["status"] == "True"

    tr = demo.get("tr", "shop-ease-1")
    assert _conds(tr)["Succeeded"]["status"] == "True", _conds(tr)["Succeeded"]
    assert _conds(tr)["Promoted"]["status"] == "True", tr["status"].get("promotionReason")
    assert float(tr["status"]["ndcgAt10"]) > float({m["name"]: m["value"] for m in
                                                     tr["status"]["baselineMetrics"]}["ndcg_at_10"])
    version = tr["status"]["modelVersion"]
    assert rd["status"]["servedVersion"] == version

    url = rd["status"]["url"]
    known = demo.known_user()
    with urllib.request.urlopen(f"{url}/v1/recommendations/{known}?k=10", timeout=10) as resp:
        answer = json.loads(resp.read())
    assert len(answer["items"]) == 10 and answer["model"]["version"] == version
    with urllib.request.urlopen(f"{url}/v1/recommendations/never-seen-visitor?k=10", timeout=10) as resp:
        cold = json.loads(resp.read())
    assert cold["fallback"] is True and len(cold["items"]) == 10

    # The drift monitor checks the served version's reference against the current window.
    def checked() -> dict[str, Any] | None:
        dm = demo.get("dm", "shop-drift")
        return dm if (dm.get("status") or {}).get("lastCheckTime") else None

    dm = demo.wait("the first drift check", checked)
    assert dm["status"]["referenceVersion"] == version
    assert _conds(dm)["DriftDetected"]["status"] in ("True", "False", "Unknown")
    assert dm["status"]["features"], "the check reported per-feature results"


def test_drift_retrains_and_the_new_version_is_served(demo: Demo) -> None:
    before = demo.get("rd", "shop-recommender")["status"]["servedVersion"]
    demo.inject_drift()
    dm = demo.get("dm", "shop-drift")
    assert _conds(dm)["DriftDetected"]["status"] == "True"
    drifted = [f["name"] for f in dm["status"]["features"] if f["drifted"]]
    assert drifted and set(dm["status"]["driftedFeatures"].split(",")) <= {f["name"] for f in dm["status"]["features"]}
    # the injected new-user surge, in the feature it moves (category-mix and price drift: test_false_alarms)
    assert "users.tenure_days" in drifted, drifted
    assert dm["status"]["samples"] >= 200, "the live requests were read from the payload log"

    demo.alert_and_retraining()
    runs = demo.get("dm", "shop-drift")["status"]["retrainingRuns"]
    assert len(runs) == 1, runs  # the cooldown holds any further drift checks back
    tr = demo.get("tr", runs[0]["name"])
    assert _conds(tr)["Succeeded"]["status"] == "True"
    assert tr["status"]["promoted"] is True, tr["status"].get("promotionReason")
    new = str(tr["status"]["modelVersion"])
    assert new != before
    rd = demo.get("rd", "shop-recommender")
    assert rd["status"]["servedVersion"] == new
    with urllib.request.urlopen(f"{rd['status']['url']}/v1/recommendations/{demo.known_user()}?k=10",
                                timeout=10) as resp:
        assert json.loads(resp.read())["model"]["version"] == new


def _mlflow_runs_text(tracking_uri: str) -> str:
    """Every MLflow run's params, tags and metrics keys (what a TrainingRun logs), as one JSON text."""

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(f"{tracking_uri}/api/2.0/mlflow/{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return dict(json.loads(resp.read()))

    experiments = post("experiments/search", {"max_results": 1000}).get("experiments", [])
    ids = [e["experiment_id"] for e in experiments]
    runs = post("runs/search", {"experiment_ids": ids, "max_results": 1000}).get("runs", []) if ids else []
    assert runs, "the loop logged MLflow runs"
    return json.dumps(runs)


def test_the_database_password_never_leaks(demo: Demo) -> None:
    """The lab's PostgreSQL password is random per lab (a unique canary) and reaches the loop only through the
    `lab-postgres` Secret: after the whole loop it appears in no custom resource (spec or status), no child object,
    no Event, no operator or job log, no job's recorded arguments and no MLflow run."""
    from urllib.parse import urlparse

    password = urlparse(demo.lab.postgres_dsn).password
    assert password and len(password) >= 16, "the lab's password is a long random token"
    kinds = ("featurepipelines,trainingruns,recommenderdeployments,driftmonitors,"
             "deployments,services,configmaps,jobs,pods")
    scanned = {
        "objects": demo.kubectl("get", kinds, "-A", "-o", "yaml"),
        "events": demo.kubectl("get", "events", "-A", "-o", "yaml"),
        "mlflow runs": _mlflow_runs_text(demo.lab.mlflow_uri or ""),
    }
    files = [p for sub in ("logs", "runs") for p in (demo.lab.state_dir / sub).rglob("*") if p.is_file()]
    assert any(p.name == "operator.log" for p in files), "the operator's log was scanned"
    for path in files:
        scanned[str(path.relative_to(demo.lab.state_dir))] = path.read_bytes().decode("utf-8", "replace")
    leaks = [name for name, text in scanned.items() if password in text]
    print(f"\nscanned {len(scanned)} sources ({sum(len(t) for t in scanned.values()) / 1e6:.1f} MB) for the canary")
    assert not leaks, f"the database password appears in: {leaks}"

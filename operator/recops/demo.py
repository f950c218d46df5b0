"""`recops demo`: the whole loop on the embedded lab, as a newcomer first meets Recops.

Every number printed comes from the running system: the lab's services, the operator's status and the
model server's answers. Nothing is canned.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recops.table import render

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "default"
BUCKET = "recops-lab"


class DemoError(RuntimeError):
    pass


@dataclass
class Timer:
    started: float = field(default_factory=time.monotonic)
    steps: list[tuple[str, float]] = field(default_factory=list)
    _last: float = field(default_factory=time.monotonic)

    def mark(self, name: str) -> float:
        now = time.monotonic()
        took = now - self._last
        self.steps.append((name, took))
        self._last = now
        return took

    def elapsed(self) -> str:
        return f"{time.monotonic() - self.started:.0f}s"


def say(text: str) -> None:
    print(text, flush=True)


def header(text: str) -> None:
    say(f"\n\033[1m==> {text}\033[0m" if sys.stdout.isatty() else f"\n==> {text}")


class Demo:
    def __init__(self, events: int, seed: int, timeout: float) -> None:
        self.events, self.seed, self.timeout = events, seed, timeout
        self.timer = Timer()
        self.lab: Any = None
        self.env: dict[str, str] = {}

    # -- plumbing -------------------------------------------------------------------------------------------------
    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        proc = subprocess.run([str(self.lab.bin_dir["kubectl"]), "-n", NAMESPACE, *args], input=stdin,
                              capture_output=True, text=True, env=self.env, timeout=120)
        if check and proc.returncode != 0:
            raise DemoError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def objects(self) -> list[dict[str, Any]]:
        out = self.kubectl("get", "featurepipelines,trainingruns,recommenderdeployments,driftmonitors", "-o", "json")
        return list(json.loads(out)["items"])

    def get(self, resource: str, name: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", resource, name, "-o", "json")))

    def wait(self, what: str, done: Callable[[], Any], timeout: float | None = None) -> Any:
        """Poll `done` while showing the live table; fail with the table and the reason on timeout."""
        deadline = time.monotonic() + (timeout or self.timeout)
        shown, shown_at = "", 0.0
        while time.monotonic() < deadline:
            result = done()
            objects = self.objects()
            content = render(objects, now=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))  # ages left out
            if content != shown or time.monotonic() - shown_at > 30 or result:
                say(render(objects, elapsed=self.timer.elapsed()) + "\n")
                shown, shown_at = content, time.monotonic()
            if result:
                return result
            time.sleep(2)
        raise DemoError(f"timed out waiting for {what}; see the table above, `kubectl describe`, and the "
                        f"operator log {self.lab.state_dir}/logs/operator.log")

    def run_program(self, *argv: str) -> dict[str, Any]:
        proc = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, env=self.env,
                              timeout=900)
        if proc.returncode != 0:
            raise DemoError(f"{' '.join(argv[:2])} failed: {proc.stderr.strip()[-2000:]}")
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        return dict(json.loads(lines[-1])) if lines else {}

    @staticmethod
    def http_json(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})  # noqa: S310
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (loopback)
            return dict(json.loads(resp.read()))

    # -- steps ----------------------------------------------------------------------------------------------------
    def lab_up(self) -> None:
        from recops.lab import build, up

        header("1/7 Starting the embedded lab (control plane with fake nodes, MLflow, PostgreSQL, S3 emulator, "
               "Prometheus, Alertmanager, the operator)")
        self.lab = up(components="demo", bins=build())
        self.env = {**os.environ, **self.lab.env}
        say(f"lab ready in {self.timer.mark('lab'):.0f}s; export KUBECONFIG={self.lab.kubeconfig}")

    def secrets(self) -> None:
        creds = self.lab.s3_credentials
        docs = [
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "lab-s3", "namespace": NAMESPACE},
             "stringData": {"AWS_ACCESS_KEY_ID": creds.get("access_key", "testing"),
                            "AWS_SECRET_ACCESS_KEY": creds.get("secret_key", "testing")}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "lab-postgres", "namespace": NAMESPACE},
             "stringData": {"dsn": self.lab.postgres_dsn}},
        ]
        self.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))

    def seed_data(self) -> None:
        header(f"2/7 Seeding {self.events:,} synthetic clickstream events into S3 and user profiles into PostgreSQL")
        self.secrets()
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.lab.s3_endpoint, region_name="us-east-1",
                          aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if BUCKET not in existing:
            s3.create_bucket(Bucket=BUCKET)
        summary = self.run_program("recops_features", "generate", "--target", f"s3://{BUCKET}/clickstream",
                                   "--events", str(self.events), "--days", "30", "--seed", str(self.seed),
                                   "--profiles-table", "user_profiles", "--profiles-mode", "replace")
        say(f"seeded {summary.get('events')} events by {summary.get('users')} users on {summary.get('items')} "
            f"items ({summary.get('eventTypes')}); {summary.get('profiles')} profiles in PostgreSQL "
            f"[{self.timer.mark('seed'):.0f}s]")

    def apply_examples(self) -> None:
        header("3/7 Applying examples/full-loop (the same kind of manifests you would apply to a cluster)")
        say(self.kubectl("apply", "-f", str(ROOT / "examples" / "full-loop")).strip())

    def wait_for_serving(self) -> dict[str, Any]:
        header("4/7 Features -> training -> promotion -> serving (live `kubectl get recops`)")

        def serving() -> dict[str, Any] | None:
            rd = self.get("rd", "shop-recommender")
            conds = {c["type"]: c for c in (rd.get("status") or {}).get("conditions") or []}
            return rd if conds.get("Ready", {}).get("status") == "True" and rd["status"].get("url") else None

        rd = self.wait("the RecommenderDeployment to serve the promoted model", serving)
        self.timer.mark("first model served")
        return dict(rd)

    def recommendations(self, rd: dict[str, Any]) -> None:
        header("5/7 Real top-10 recommendations from the running model server")
        url = rd["status"]["url"]
        tr = self.get("tr", "shop-ease-1")
        known = self.known_user()
        for title, path in (
            (f"known user {known}", f"/v1/recommendations/{urllib.parse.quote(known)}?k=10"),
            (f"known user {known}, seen items kept", f"/v1/recommendations/{urllib.parse.quote(known)}?k=10"
                                                     "&excludeSeen=false"),
            ("cold-start user never seen before", "/v1/recommendations/new-visitor-0001?k=10"),
        ):
            answer = self.http_json(url + path)
            say(f"{title}: {json.dumps(answer)[:600]}")
        status = tr.get("status") or {}
        say(f"MLflow run: {(status.get('mlflowRun') or {}).get('url', '-')}  (NDCG@10 {status.get('ndcgAt10')}, "
            f"model version {status.get('modelVersion')}; the evaluation report is the run's artifact "
            f"'report/report.html')")
        say(f"time to the first recommendation: {self.timer.elapsed()} "
            f"({', '.join(f'{n} {t:.0f}s' for n, t in self.timer.steps)})")

    def known_user(self) -> str:
        rows = subprocess.run(
            ["psql", self.lab.postgres_dsn, "-Atc", "select user_id from user_profiles order by user_id limit 1"],
            capture_output=True, text=True, env=self.env, timeout=30)
        return rows.stdout.strip() or "u1"

    def inject_drift(self) -> None:
        header("6/7 Injecting drift: the last 7 days' shoppers shift categories, prices rise, new users surge")
        today = dt.datetime.now(dt.UTC).date()
        start = (today - dt.timedelta(days=6)).isoformat()
        summary = self.run_program("recops_features", "generate", "--target", f"s3://{BUCKET}/clickstream",
                                   "--events", str(self.events // 3), "--days", "7", "--seed", str(self.seed + 1),
                                   "--end-date", (today + dt.timedelta(days=1)).isoformat(),
                                   "--drift-start", start, "--category-shift", "0.8", "--price-multiplier", "1.6",
                                   "--drift-new-user-share", "0.5", "--profiles-table", "user_profiles")
        say(f"wrote {summary.get('events')} drifted events from {start}")
        token = f"demo-{int(time.time())}"
        self.kubectl("annotate", "--overwrite", "fp", "shop-features", f"recops.dev/run-requested={token}")
        self.wait("a fresh snapshot of the drifted data", lambda: self.get("fp", "shop-features")
                  .get("status", {}).get("lastRunRequest") == token and
                  self.get("fp", "shop-features")["status"].get("lastRun", {}).get("result") == "Succeeded")
        self.kubectl("annotate", "--overwrite", "dm", "shop-drift", f"recops.dev/run-requested={token}")

        def drifted() -> bool:
            dm = self.get("dm", "shop-drift")
            conds = {c["type"]: c for c in (dm.get("status") or {}).get("conditions") or []}
            return conds.get("DriftDetected", {}).get("status") == "True"

        self.wait("the DriftMonitor to report drift", drifted)
        say(self.kubectl("get", "driftmonitors"))
        self.timer.mark("drift detected")

    def alert_and_retraining(self) -> None:
        header("7/7 The alert fires in Prometheus, drift starts a retraining, the new version is served")

        def firing() -> list[dict[str, Any]]:
            alerts = self.http_json(f"{self.lab.prometheus_url}/api/v1/alerts")["data"]["alerts"]
            return [a for a in alerts if a["labels"].get("alertname") == "RecopsDriftDetected"
                    and a["state"] == "firing"]

        alerts = self.wait("RecopsDriftDetected to fire in Prometheus", firing, timeout=120)
        say(f"Prometheus alert: {alerts[0]['labels']} {alerts[0]['annotations'].get('summary')}")
        dm = self.get("dm", "shop-drift")
        before = self.get("rd", "shop-recommender")["status"].get("servedVersion")

        def retrained() -> str | None:
            runs = (self.get("dm", "shop-drift").get("status") or {}).get("retrainingRuns") or []
            return runs[-1]["name"] if runs else None

        run = self.wait("the retraining TrainingRun", retrained)
        features = json.dumps(dm.get("status", {}).get("features"))[:400]
        say(f"drift started TrainingRun {run} (per-feature results: {features})")

        def finished() -> dict[str, Any] | None:
            tr = self.get("tr", run)
            conds = {c["type"]: c for c in (tr.get("status") or {}).get("conditions") or []}
            return tr if conds.get("Succeeded", {}).get("status") in ("True", "False") else None

        tr = self.wait(f"TrainingRun {run} to finish", finished)
        status = tr["status"]
        say(f"{run}: NDCG@10 {status.get('ndcgAt10')}, version {status.get('modelVersion')}, promoted: "
            f"{status.get('promoted')} ({status.get('promotionReason')})")
        if status.get("promoted"):
            new = str(status.get("modelVersion"))
            self.wait(f"the server to serve version {new}",
                      lambda: self.get("rd", "shop-recommender")["status"].get("servedVersion") == new)
            say(f"served version moved from {before} to {new}")
        self.timer.mark("retrained")

    def next_steps(self) -> None:
        rd = self.get("rd", "shop-recommender")
        say(f"""
The lab keeps running. Try:
  export KUBECONFIG={self.lab.kubeconfig}
  kubectl get recops                      # all four kinds
  kubectl get driftmonitors               # TARGET DRIFT SCORE DRIFTED SAMPLES LAST CHECK
  kubectl describe trainingrun shop-ease-1
  MLflow:      {self.lab.mlflow_uri}
  Prometheus:  {self.lab.prometheus_url}/alerts
  Model API:   {rd['status'].get('url')}/docs
Stop it with `make demo-down` (or `recops lab down`).
Total {self.timer.elapsed()}: {', '.join(f'{n} {t:.0f}s' for n, t in self.timer.steps)}""")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="recops demo")
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=600, help="seconds each step may take")
    args = parser.parse_args(argv)
    demo = Demo(args.events, args.seed, args.timeout)
    try:
        demo.lab_up()
        demo.seed_data()
        demo.apply_examples()
        rd = demo.wait_for_serving()
        demo.recommendations(rd)
        demo.inject_drift()
        demo.alert_and_retraining()
        demo.next_steps()
    except Exception as exc:  # every failure ends with what failed and where to look
        if os.environ.get("RECOPS_DEBUG"):
            raise
        print(f"\ndemo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

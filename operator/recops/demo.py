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
        # One synthetic world for the whole demo: 40 days ending tomorrow, drift from 9 days ago. The demo
        # first writes the history before the drift, and later lets those 9 days "happen" (same world: same
        # catalogue, users and tastes), so the drift is what changed in traffic, nothing else.
        today = dt.datetime.now(dt.UTC).date()
        self.end_date = today + dt.timedelta(days=1)
        self.drift_start = today - dt.timedelta(days=9)
        self._world: Any = None
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
            self.fail_fast(objects)
            time.sleep(2)
        raise DemoError(f"timed out waiting for {what}; see the table above, `kubectl describe`, and the "
                        f"operator log {self.lab.state_dir}/logs/operator.log")

    def fail_fast(self, objects: list[dict[str, Any]]) -> None:
        """A TrainingRun that failed will not come back: say so now, with its message and where its log is."""
        for obj in objects:
            cond = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}.get("Succeeded", {})
            if obj["kind"] == "TrainingRun" and cond.get("status") == "False":
                meta = obj["metadata"]
                raise DemoError(f"TrainingRun {meta['name']} failed ({cond.get('reason')}): {cond.get('message')}; "
                                f"its job log: {self.lab.state_dir}/runs/{meta['namespace']}/{meta['uid']}/")

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
        header(f"2/7 Seeding synthetic clickstream into S3 and user profiles into PostgreSQL ({self.events:,} "
               "events over 40 days; the 31 days before the drift first)")
        self.secrets()
        summary = self.write(self.world().between(until=self.drift_start), profiles_mode="replace")
        say(f"seeded {summary.get('events')} events by {summary.get('users')} users on {summary.get('items')} "
            f"items ({summary.get('eventTypes')}); {summary.get('profiles')} profiles in PostgreSQL "
            f"[{self.timer.mark('seed'):.0f}s]")

    def world(self) -> Any:
        """The demo's one synthetic world (generated once, deterministic from the seed)."""
        from recops_features.datagen import DriftSpec, GenerateSpec, generate

        if self._world is None:
            self._world = generate(GenerateSpec(
                events=self.events, days=40, end_date=self.end_date, seed=self.seed,
                drift=DriftSpec(start=self.drift_start, price_multiplier=1.6, new_user_share=0.5)))
        return self._world

    def write(self, part: Any, profiles_mode: str) -> dict[str, Any]:
        """Write a slice of the world to the lab's S3 (events, catalogue) and PostgreSQL (profiles)."""
        import boto3
        from recops_features.datagen import write_dataset, write_profiles_postgres

        s3 = boto3.client("s3", endpoint_url=self.lab.s3_endpoint, region_name="us-east-1",
                          aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])
        if BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
            s3.create_bucket(Bucket=BUCKET)
        summary = write_dataset(part, f"s3://{BUCKET}/clickstream", client=s3)
        write_profiles_postgres(part.profiles, self.lab.postgres_dsn, "user_profiles", mode=profiles_mode)
        return dict(summary)

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
        header("6/7 Injecting drift: 9 more days pass; a surge of new users arrives and prices rise")
        summary = self.write(self.world().between(since=self.drift_start), profiles_mode="upsert")
        say(f"wrote {summary.get('events')} events of the last 9 days ({summary.get('eventTypes')}); from "
            f"{self.drift_start} half the sessions come from a cohort of new users and prices are 1.6x")
        token = f"demo-{int(time.time())}"
        self.kubectl("annotate", "--overwrite", "fp", "shop-features", f"recops.dev/run-requested={token}")
        self.wait("a fresh snapshot of the drifted data", lambda: self.get("fp", "shop-features")
                  .get("status", {}).get("lastRunRequest") == token and
                  self.get("fp", "shop-features")["status"].get("lastRun", {}).get("result") == "Succeeded")
        # Live traffic only after the fresh snapshot: a scheduled check never sees the drifted traffic against the
        # old snapshot, so any retraining a check starts trains on the drifted days.
        self.live_traffic()
        self.kubectl("annotate", "--overwrite", "dm", "shop-drift", f"recops.dev/run-requested={token}")

        def drifted() -> bool:  # the check this step asked for (it reads the live traffic), not an earlier one
            status = self.get("dm", "shop-drift").get("status") or {}
            conds = {c["type"]: c for c in status.get("conditions") or []}
            return status.get("lastRunRequest") == token and conds.get("DriftDetected", {}).get("status") == "True"

        self.wait("the DriftMonitor to report drift", drifted)
        say(self.kubectl("get", "driftmonitors"))
        self.timer.mark("drift detected")

    def live_traffic(self, requests: int = 600) -> None:
        """Shoppers of the drifted days ask the running server for recommendations (its payload log is what the
        DriftMonitor reads as live data): one request per sampled session, in time order."""
        import numpy as np

        events = self.world().between(since=self.drift_start).events
        sessions = events.drop_duplicates("session_id")
        rng = np.random.default_rng(self.seed)
        picked = sessions.iloc[np.sort(rng.choice(len(sessions), size=min(requests, len(sessions)), replace=False))]
        url = self.get("rd", "shop-recommender")["status"]["url"]
        fallbacks = 0
        for user in picked["user_id"]:
            fallbacks += bool(self.http_json(f"{url}/v1/recommendations/{int(user)}?k=10").get("fallback"))
        say(f"sent {len(picked)} live requests from shoppers of the drifted days: {fallbacks} "
            f"({fallbacks / max(len(picked), 1):.0%}) got the popularity fallback (users the model has never seen)")

        def logged() -> bool:
            with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:  # noqa: S310 (loopback)
                text = resp.read().decode()
            written = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                          if line.startswith("recops_payload_log_records_total") and 'outcome="written"' in line)
            return written >= len(picked)

        self.wait("the server to write its payload log", logged, timeout=60)

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

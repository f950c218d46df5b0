"""False alarms and detection rates of the drift check as users run it, on synthetic data (no servers).

One check, end to end, the way the full loop runs it:

* a synthetic shop (``recops_features.datagen``: catalogue, users, clickstream) over two 28-day windows
  (the full-loop FeaturePipeline's window), written as Parquet to a local directory;
* the feature job (``recops_features.job.run_job``, what ``recops-features run`` calls) publishes one
  snapshot per window to a local output;
* the reference is the TrainingRun's ``RecopsReferenceProfile`` document built from the first
  snapshot's manifest (its ``tables`` statistics, as ``recops_training.runner.reference_profile``
  writes them; no prediction part: payload-log features are not measured here);
* the current window is the second snapshot; the check is ``recops_drift.cli.run_check`` (what
  ``recops-drift run`` calls) with the config the operator builds from the shipped DriftMonitor
  examples (``recops.controllers.driftmonitor.check_config``), reference and current swapped for the
  local files.

Fresh data from the same distribution: every check is its own world (seed), the current window is the
28 days after the reference window, generated without drift knobs. Injected drift: the same worlds
with one datagen drift knob on from the current window's first day. Rates come with Wilson and
Clopper-Pearson 95 % intervals. ``--lags`` adds a staleness series: one world, one reference, the
current window 1..N windows later (what ageing features such as ``users.tenure_days`` do over time).

Usage: python bench/drift/false_alarms.py [--events 20000 60000 300000] [--checks 100]
       [--drift-checks 20] [--lags 12] [--output bench/results/drift-false-alarms.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
for _path in ("drift", "feature-jobs", "operator", "bench/drift"):
    if str(ROOT / _path) not in sys.path:
        sys.path.insert(0, str(ROOT / _path))

from recops_drift import logs as drift_logs  # noqa: E402
from recops_drift import stats as S  # noqa: E402
from recops_drift.cli import run_check  # noqa: E402
from recops_drift.config import DriftCheckConfig  # noqa: E402
from recops_features import datagen  # noqa: E402
from recops_features import logs as feature_logs  # noqa: E402
from recops_features.config import FeaturePipelineConfig  # noqa: E402
from recops_features.job import run_job  # noqa: E402

WINDOW_DAYS = 28
"""The full-loop FeaturePipeline's window (examples/full-loop/10-featurepipeline.yaml)."""
END = date(2026, 11, 29)
MONITOR_FILES = {
    "full-loop": "examples/full-loop/40-driftmonitor.yaml",
    "driftmonitor": "examples/driftmonitor.yaml",
}
PROPOSED: dict[str, tuple[str, dict[str, Any]]] = {}
"""Changes to the examples measured next to them (see the report)."""
DEMO_DRIFT = {"category_shift": 0.8, "price_multiplier": 1.6, "new_user_share": 0.5, "bot_share": 0.2}
"""One strength per datagen drift knob: the demo's for the three it injects, a fifth of the traffic for bots."""
SWEEP = {
    "category_shift": (0.2, 0.5, 0.8),
    "price_multiplier": (1.1, 1.3, 1.6, 2.0),
    "new_user_share": (0.1, 0.25, 0.5),
    "bot_share": (0.05, 0.1, 0.2, 0.4),
}


def log(message: str) -> None:
    print(f"[drift-false-alarms {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ intervals


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k / n (95 % by default)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a binomial proportion k / n."""
    from scipy.stats import beta

    if n == 0:
        return 0.0, 1.0
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def rate(k: int, n: int) -> dict[str, Any]:
    return {
        "count": k,
        "of": n,
        "rate": k / n if n else None,
        "wilson95": [round(x, 4) for x in wilson(k, n)],
        "clopperPearson95": [round(x, 4) for x in clopper_pearson(k, n)],
    }


# ------------------------------------------------------------------------------------------- monitors


def shipped_monitors() -> dict[str, dict[str, Any]]:
    """The check config the operator builds from each shipped DriftMonitor example (rules, driftShare,
    minSamples), without its reference, current window and report (replaced by local files)."""
    import yaml
    from recops.api.driftmonitor import DriftMonitorSpec
    from recops.controllers.common import Owner
    from recops.controllers.driftmonitor import Target, check_config

    monitors: dict[str, dict[str, Any]] = {}
    for name, path in MONITOR_FILES.items():
        doc = yaml.safe_load((ROOT / path).read_text())
        spec = DriftMonitorSpec.model_validate(doc["spec"])
        meta = doc["metadata"]
        owner = Owner(kind="DriftMonitor", name=meta["name"], namespace=meta.get("namespace", "default"), uid="u")
        target = Target({"model": {"name": "recs"}}, "1", {"output": {"uri": "local"}})
        config = check_config(spec, owner, target)
        assert config is not None, f"{path}: the operator built no check"
        monitors[name] = {k: v for k, v in config.items() if k not in ("reference", "current", "report")}
    return monitors


def all_monitors() -> dict[str, dict[str, Any]]:
    """The shipped monitors plus the proposed changes."""
    shipped = shipped_monitors()
    monitors = dict(shipped)
    for name, (base, change) in PROPOSED.items():
        monitors[name] = {**shipped[base], **change}
    return monitors


# --------------------------------------------------------------------------------------------- worlds


@dataclass(frozen=True)
class Drift:
    """One datagen drift knob (``none`` = fresh data from the same distribution)."""

    knob: str = "none"
    strength: float = 0.0

    def spec(self, start: date) -> datagen.DriftSpec:
        if self.knob == "none":
            return datagen.DriftSpec()
        return datagen.DriftSpec(start=start, **{self.knob: self.strength})

    @property
    def label(self) -> str:
        return "none" if self.knob == "none" else f"{self.knob}={self.strength:g}"


def _iso(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def publish_snapshot(lake: Path, output: Path, start: date, end: date) -> Path:
    """Run the feature job on ``[start, end)`` of a local lake; the published snapshot's directory."""
    config = FeaturePipelineConfig.model_validate(
        {
            "name": "shop-features",
            "sources": {
                "events": {"uri": str(lake / "events")},
                "catalog": {"uri": str(lake / "catalog")},
                "profiles": {"uri": str(lake / "profiles" / "users.parquet")},
            },
            "window": {"start": _iso(start), "end": _iso(end)},
            "output": {"uri": str(output)},
        }
    )
    result = run_job(config, now=datetime(end.year, end.month, end.day, tzinfo=UTC))
    if result.exit_code != 0:
        raise RuntimeError(f"the feature job failed: {result.body}")
    return Path(str(result.body["uri"]))


def reference_document(snapshot: Path) -> dict[str, Any]:
    """The TrainingRun's reference document for a snapshot (recops_training.runner.reference_profile
    without the prediction part): the manifest's table statistics."""
    manifest = json.loads((snapshot / "manifest.json").read_text())
    return {
        "kind": "RecopsReferenceProfile",
        "formatVersion": 1,
        "snapshot": {"uri": str(snapshot), "version": manifest["version"]},
        "tables": manifest["tables"],
        "statistics": None,
    }


@dataclass
class World:
    """One synthetic shop: a lake and the snapshots of consecutive windows."""

    root: Path
    events: int
    seed: int
    windows: int = 2
    drift: Drift = field(default_factory=Drift)

    @property
    def start(self) -> date:
        return END - timedelta(days=WINDOW_DAYS * self.windows)

    def window(self, i: int) -> tuple[date, date]:
        return self.start + timedelta(days=WINDOW_DAYS * i), self.start + timedelta(days=WINDOW_DAYS * (i + 1))

    def build(self) -> list[Path]:
        """Generate the shop (drift from window 1 on), write it, publish one snapshot per window."""
        spec = datagen.GenerateSpec(
            events=self.events * self.windows // 2,
            days=WINDOW_DAYS * self.windows,
            end_date=END,
            seed=self.seed,
            drift=self.drift.spec(self.window(1)[0]),
        )
        lake = self.root / "lake"
        datagen.write_dataset(datagen.generate(spec), str(lake), fmt="parquet")
        return [publish_snapshot(lake, self.root / "snapshots", *self.window(i)) for i in range(self.windows)]


def check(monitor: Mapping[str, Any], reference: Path, current: Path) -> S.DriftResult:
    """``recops-drift run`` in-process with a monitor's rules, a reference document and a snapshot."""
    config = DriftCheckConfig.model_validate(
        {
            **monitor,
            "reference": {"profileUri": str(reference)},
            "current": {"snapshot": {"uri": str(current)}},
            "checkedAt": _iso(END),
        }
    )
    return run_check(config)[1]


def summary_of(result: S.DriftResult) -> dict[str, Any]:
    checked = [f for f in result.features if f.status in (S.DRIFTED, S.NO_DRIFT)]
    return {
        "status": result.status,
        "share": round(result.score, 4),
        "checked": len(checked),
        "drifted": list(result.drifted_features),
        "scores": {f.name: round(f.score, 5) for f in checked},
        "missing": [f.name for f in result.features if f.status == S.MISSING],
        "insufficient": [f.name for f in result.features if f.status == S.INSUFFICIENT_DATA],
    }


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Send the job programs' structured log lines to a buffer while measuring."""
    buffer = io.StringIO()
    drift_logs.set_stream(buffer)
    feature_logs.set_stream(buffer)
    try:
        yield
    finally:
        drift_logs.set_stream(None)
        feature_logs.set_stream(None)


def run_checks(
    monitors: Mapping[str, Mapping[str, Any]],
    *,
    events: int,
    seeds: Iterable[int],
    drift: Drift = Drift(),
    workdir: Path | None = None,
) -> list[dict[str, Any]]:
    """One check per seed (its own world): reference = window 0, current = window 1."""
    out: list[dict[str, Any]] = []
    base = Path(tempfile.mkdtemp(prefix="recops-drift-fa-", dir=workdir))
    try:
        for seed in seeds:
            root = base / f"world-{seed}"
            with quiet():
                reference_snapshot, current = World(root, events, seed, drift=drift).build()
                reference = root / "reference_profile.json"
                reference.write_text(json.dumps(reference_document(reference_snapshot)))
                results = {name: summary_of(check(m, reference, current)) for name, m in monitors.items()}
            out.append({"seed": seed, "drift": drift.label, "monitors": results})
            shutil.rmtree(root, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return out


def aggregate(checks: Sequence[Mapping[str, Any]], *, only_drifted: bool = False) -> dict[str, Any]:
    """Per monitor: the verdict's rate (false alarms or detections), the checks' verdicts and each
    feature's rate (``only_drifted``: of the features that drifted at least once)."""
    monitors: dict[str, Any] = {}
    for name in checks[0]["monitors"] if checks else []:
        runs = [c["monitors"][name] for c in checks]
        features: dict[str, dict[str, Any]] = {}
        for feature in sorted({f for r in runs for f in r["scores"]}):
            scores = [r["scores"][feature] for r in runs if feature in r["scores"]]
            drifted = sum(feature in r["drifted"] for r in runs)
            if only_drifted and not drifted:
                continue
            features[feature] = {
                **rate(drifted, len(scores)),
                "scoreMedian": round(float(np.median(scores)), 5),
                "scoreMax": round(float(np.max(scores)), 5),
            }
        monitors[name] = {
            "verdict": rate(sum(r["status"] == S.DRIFTED for r in runs), len(runs)),
            "checks": {  # each check's verdict: the seeds of the worlds, NoDrift as a count
                S.DRIFTED: [c["seed"] for c in checks if c["monitors"][name]["status"] == S.DRIFTED],
                S.INSUFFICIENT_DATA: [
                    c["seed"] for c in checks if c["monitors"][name]["status"] == S.INSUFFICIENT_DATA
                ],
                S.NO_DRIFT: sum(r["status"] == S.NO_DRIFT for r in runs),
            },
            "checksWithAnyFeatureDrifted": rate(sum(bool(r["drifted"]) for r in runs), len(runs)),
            "featuresChecked": sorted({r["checked"] for r in runs}),
            "missing": sorted({m for r in runs for m in r["missing"]}),
            "insufficientData": sorted({m for r in runs for m in r["insufficient"]}),
            "features": features,
        }
    return monitors


def staleness(monitors: Mapping[str, Mapping[str, Any]], *, events: int, lags: int, seed: int) -> list[dict[str, Any]]:
    """One world, one reference (window 0), the current window 1..lags windows later (no drift knobs)."""
    root = Path(tempfile.mkdtemp(prefix="recops-drift-lag-"))
    try:
        with quiet():
            snapshots = World(root, events, seed, windows=lags + 1).build()
            reference = root / "reference_profile.json"
            reference.write_text(json.dumps(reference_document(snapshots[0])))
            rows = []
            for lag, current in enumerate(snapshots[1:], start=1):
                results = {name: summary_of(check(m, reference, current)) for name, m in monitors.items()}
                rows.append(
                    {
                        "lagWindows": lag,
                        "lagDays": lag * WINDOW_DAYS,
                        "verdicts": {n: r["status"] for n, r in results.items()},
                        "drifted": {n: r["drifted"] for n, r in results.items()},
                        "psi": {
                            f: results["full-loop"]["scores"].get(f)
                            for f in ("users.tenure_days", "users.recency_days", "users.events", "items.events")
                        },
                    }
                )
        return rows
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ----------------------------------------------------------------------------------------------- main


def machine() -> dict[str, Any]:
    import pandas as pd
    import scipy
    from bench_drift import machine as bench_machine

    return {**bench_machine(), "numpy": np.__version__, "pandas": pd.__version__, "scipy": scipy.__version__}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[20_000, 60_000, 300_000])
    parser.add_argument("--checks", type=int, default=100, help="fresh-data checks per size")
    parser.add_argument("--drift-checks", type=int, default=20, help="checks per drift knob and strength")
    parser.add_argument("--lags", type=int, default=12, help="staleness series length in windows (0: skip)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "drift-false-alarms.json")
    args = parser.parse_args()

    monitors = all_monitors()
    started = time.monotonic()
    sizes: dict[str, Any] = {}
    for events in args.events:
        t0 = time.monotonic()
        fresh = run_checks(monitors, events=events, seeds=range(1000, 1000 + args.checks))
        log(f"{events} events: {args.checks} fresh-data checks in {time.monotonic() - t0:.0f} s")
        detection: dict[str, Any] = {}
        for knob, strengths in SWEEP.items():
            for strength in strengths:
                drift = Drift(knob, strength)
                seeds = range(5000, 5000 + args.drift_checks)
                runs = run_checks(monitors, events=events, seeds=seeds, drift=drift)
                detection[drift.label] = aggregate(runs, only_drifted=True)
                rates = {n: m["verdict"]["rate"] for n, m in detection[drift.label].items()}
                log(f"{events} events, {drift.label}: detection {rates}")
        sizes[str(events)] = {
            "events": events,
            "falseAlarms": aggregate(fresh),
            "detection": detection,
        }
    lag_rows = staleness(monitors, events=args.events[0], lags=args.lags, seed=7) if args.lags else []

    out = {
        "benchmark": "drift-false-alarms",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "seconds": round(time.monotonic() - started, 1),
        "method": __doc__,
        "windowDays": WINDOW_DAYS,
        "monitors": monitors,
        "proposed": {name: {"base": base, "change": change} for name, (base, change) in PROPOSED.items()},
        "demoDrift": DEMO_DRIFT,
        "sizes": sizes,
        "staleness": {"events": args.events[0], "seed": 7, "rows": lag_rows},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(out, indent=1)  # lists of numbers or seeds on one line each
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    args.output.write_text(text + "\n")
    for events, body in sizes.items():
        print(f"{events} events per 2 windows ({args.checks} fresh checks, {args.drift_checks} per drift):")
        for name, m in body["falseAlarms"].items():
            v = m["verdict"]
            worst = max(m["features"].items(), key=lambda kv: kv[1]["count"], default=("-", {"count": 0, "of": 0}))
            print(
                f"  {name:44s} false alarms {v['count']}/{v['of']} (Wilson95 {v['wilson95']}); "
                f"most: {worst[0]} {worst[1]['count']}/{worst[1]['of']}"
            )
        for label, per in body["detection"].items():
            print(
                f"  {label:22s} "
                + "  ".join(f"{n}: {m['verdict']['count']}/{m['verdict']['of']}" for n, m in per.items())
            )
    for row in lag_rows:
        print(f"  lag {row['lagDays']:4d} d: {row['verdicts']} psi {row['psi']}")
    print(f"saved {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Drift check benchmark: 1M reference x 1M current rows x 50 numeric features, side by side.

Contenders, interleaved A B C D A B C D ... in one run on the same data:
  ours      recops_drift.stats.compare (KS + p-value + quantile bins per feature); the reference
            profile is prepared once (not timed in the comparison; its time is recorded). Exact (D
            equal to scipy's) but sort-free for large windows: one pass maps current values to a
            monotone cell grid prepared with the reference, cumulative counts bound D, and only the
            few cells that can hold the supremum are sorted, which is why it beats the sort floor
  scipy     a loop of scipy.stats.ks_2samp(reference[:, j], current[:, j]) (statistic + p-value)
  floor     np.sort of each current column once (no check can do less: KS needs the ranks)
  evidently Evidently 0.7 DataDriftPreset (its defaults: Wasserstein for numeric columns), run in a
            subprocess from a separate virtualenv (Evidently 0.7 does not import with pandas 3) on the
            same saved data; its in-process Report.run time is compared (import and load excluded)

Medians are reported with ratios: scipy / ours and evidently / ours (targets >= 25x and >= 50x) and
ours / floor (target <= 1.5x). The machine, versions and every raw timing go to
bench/results/drift.json.

Usage: python bench/drift/bench_drift.py [--rows 1000000] [--features 50] [--rounds 3]
       [--evidently-rounds 2] [--no-evidently]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import scipy
from scipy import stats as sps

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "drift"))

from recops_drift import stats as S  # noqa: E402

CACHE = Path(os.environ.get("RECOPS_CACHE", Path.home() / ".cache" / "recops"))
EVIDENTLY_VENV = Path(os.environ.get("RECOPS_EVIDENTLY_VENV", CACHE / "bench-venvs" / "evidently07"))
EVIDENTLY_REQUIREMENTS = ["evidently>=0.7,<0.8", "pandas<3"]
RUNNER = Path(__file__).with_name("_evidently_runner.py")


def log(message: str) -> None:
    print(f"[bench-drift {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def make_data(rows: int, features: int, seed: int = 42) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Feature-major float32 arrays (features, rows); every third feature drifts."""
    rng = np.random.default_rng(seed)
    ref = np.empty((features, rows), dtype=np.float32)
    cur = np.empty((features, rows), dtype=np.float32)
    kinds = []
    for j in range(features):
        kind = ("normal", "lognormal", "uniform", "exponential", "counts", "bimodal")[j % 6]
        drift = j % 3 == 0
        shift, scale = (0.05, 1.05) if drift else (0.0, 1.0)

        def draw(size: int, shift: float, scale: float, kind: str = kind) -> np.ndarray:
            if kind == "normal":
                return rng.normal(shift, scale, size)
            if kind == "lognormal":
                return rng.lognormal(shift, 0.5 * scale, size)
            if kind == "uniform":
                return rng.uniform(shift, scale, size)
            if kind == "exponential":
                return rng.exponential(scale, size) + shift
            if kind == "counts":  # integer-valued: heavy ties
                return rng.poisson(3.0 * scale + 10 * shift, size).astype(np.float64)
            mix = rng.random(size) < 0.3 + shift
            return np.where(mix, rng.normal(-2, 0.5, size), rng.normal(2 * scale, 1, size))

        ref[j] = draw(rows, 0.0, 1.0)
        cur[j] = draw(rows, shift, scale)
        kinds.append(f"{kind}{'+drift' if drift else ''}")
    return ref, cur, kinds


def load_or_make(rows: int, features: int) -> tuple[Path, np.ndarray, np.ndarray, list[str]]:
    folder = CACHE / "bench-data" / f"drift-{rows}x{features}-v1"
    ref_path, cur_path, meta_path = folder / "reference.npy", folder / "current.npy", folder / "meta.json"
    if meta_path.exists():
        log(f"Loaded cached data from {folder}")
        return folder, np.load(ref_path), np.load(cur_path), json.loads(meta_path.read_text())["kinds"]
    log(f"Generating {rows} x {features} reference and current data")
    ref, cur, kinds = make_data(rows, features)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(ref_path, ref)
    np.save(cur_path, cur)
    meta_path.write_text(json.dumps({"kinds": kinds}))
    return folder, ref, cur, kinds


def ensure_evidently() -> tuple[Path | None, str | None]:
    python = EVIDENTLY_VENV / "bin" / "python"
    probe = [str(python), "-c", "import evidently, pandas; print(evidently.__version__, pandas.__version__)"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python, None
    log(f"Creating the Evidently virtualenv at {EVIDENTLY_VENV} ({' '.join(EVIDENTLY_REQUIREMENTS)})")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True, capture_output=True)
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *EVIDENTLY_REQUIREMENTS],
            capture_output=True,
            text=True,
            timeout=1800,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"could not create the Evidently virtualenv: {exc}"
    if done.returncode != 0:
        return None, "pip install " + " ".join(EVIDENTLY_REQUIREMENTS) + " failed: " + done.stderr[-2000:]
    check = subprocess.run(probe, capture_output=True, text=True)
    if check.returncode != 0:
        return None, "evidently does not import: " + check.stderr[-2000:]
    return python, None


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def machine() -> dict[str, object]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg": os.getloadavg(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of ours, scipy and floor")
    parser.add_argument("--evidently-rounds", type=int, default=2)
    parser.add_argument("--no-evidently", action="store_true")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "drift.json")
    args = parser.parse_args()

    folder, ref, cur, kinds = load_or_make(args.rows, args.features)
    names = [f"f{j:02d}" for j in range(args.features)]
    current = {name: cur[j] for j, name in enumerate(names)}

    log("Preparing the reference profile once (exact: every value kept)")
    t0 = time.perf_counter()
    profile = S.prepare_profile({name: ref[j] for j, name in enumerate(names)}, sketch_size=None)
    prepare_s = time.perf_counter() - t0
    spec = S.DriftSpec(default_rule=S.FeatureRule("*", "ks", "0.1"), drift_share="0.3")

    evidently_python, evidently_error = (None, "skipped (--no-evidently)") if args.no_evidently else ensure_evidently()
    if evidently_error:
        log(f"Evidently unavailable: {evidently_error}")

    results: dict[str, list[float]] = {"ours": [], "scipy": [], "floor": [], "evidently": []}
    evidently_runs: list[dict[str, object]] = []
    last: dict[str, object] = {}

    def run_ours() -> None:
        last["ours"] = S.compare(profile, current, spec)

    def run_scipy() -> None:
        last["scipy"] = [sps.ks_2samp(ref[j], cur[j]) for j in range(args.features)]

    def run_floor() -> None:
        for j in range(args.features):
            np.sort(cur[j])

    def run_evidently() -> None:
        assert evidently_python is not None
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
        done = subprocess.run(
            [str(evidently_python), str(RUNNER), str(folder)],
            capture_output=True,
            text=True,
            env=env,
            timeout=3600,
        )
        if done.returncode != 0:
            raise RuntimeError("Evidently runner failed: " + done.stderr[-3000:])
        record = json.loads(done.stdout.strip().splitlines()[-1])
        evidently_runs.append(record)
        results["evidently"].append(float(record["run_seconds"]))

    rounds = max(args.rounds, args.evidently_rounds if evidently_python else 0)
    for r in range(rounds):
        for label, fn in (("ours", run_ours), ("scipy", run_scipy), ("floor", run_floor)):
            if r < args.rounds:
                seconds = timed(fn)
                results[label].append(seconds)
                log(f"Round {r + 1}: {label} took {seconds:.3f} s")
        if evidently_python and r < args.evidently_rounds:
            log(f"Round {r + 1}: evidently running (subprocess)")
            run_evidently()
            log(f"Round {r + 1}: evidently took {results['evidently'][-1]:.3f} s in Report.run")

    ours_result = last["ours"]
    assert isinstance(ours_result, S.DriftResult)
    scipy_result = last["scipy"]
    assert isinstance(scipy_result, list)
    d_diff = max(abs(f.score - s.statistic) for f, s in zip(ours_result.features, scipy_result, strict=True))
    p_rel = max(
        abs(f.p_value - s.pvalue) / s.pvalue
        for f, s in zip(ours_result.features, scipy_result, strict=True)
        if f.p_value is not None and s.pvalue > 1e-12
    )

    med = {k: statistics.median(v) for k, v in results.items() if v}
    ratios = {
        "scipy_over_ours": med["scipy"] / med["ours"],
        "ours_over_floor": med["ours"] / med["floor"],
    }
    if "evidently" in med:
        ratios["evidently_over_ours"] = med["evidently"] / med["ours"]
    targets = {"scipy_over_ours": ">= 25", "ours_over_floor": "<= 1.5", "evidently_over_ours": ">= 50"}
    met = {
        "scipy_over_ours": ratios["scipy_over_ours"] >= 25,
        "ours_over_floor": ratios["ours_over_floor"] <= 1.5,
    }
    if "evidently_over_ours" in ratios:
        met["evidently_over_ours"] = ratios["evidently_over_ours"] >= 50

    versions = {"numpy": np.__version__, "scipy": scipy.__version__}
    if evidently_runs:
        versions["evidently_venv"] = evidently_runs[-1]["versions"]
    out = {
        "benchmark": "drift",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": {
            "rows_reference": args.rows,
            "rows_current": args.rows,
            "features": args.features,
            "dtype": "float32",
            "kinds": kinds,
            "drifted_by_construction": sum("+drift" in k for k in kinds),
        },
        "machine": machine(),
        "versions": versions,
        "method": "medians of interleaved rounds (ours, scipy, floor, evidently, ours, ...) in one process; "
        "evidently timed inside its subprocess around Report.run only",
        "prepare_reference_seconds": prepare_s,
        "seconds": results,
        "median_seconds": med,
        "per_feature_median_ms": {k: 1000 * v / args.features for k, v in med.items()},
        "ratios": ratios,
        "targets": targets,
        "targets_met": met,
        "accuracy": {
            "max_abs_ks_statistic_diff_vs_scipy": d_diff,
            "max_rel_pvalue_diff_vs_scipy": p_rel,
            "ours_drifted_features": len(ours_result.drifted_features),
            "ours_status": ours_result.status,
        },
        "evidently": {"error": evidently_error, "runs": evidently_runs},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2) + "\n")

    print(
        f"drift benchmark: {args.rows} x {args.rows} rows x {args.features} features, "
        f"nproc={out['machine']['nproc']} ({out['machine']['cpu']})"
    )  # type: ignore[index]
    for key, value in med.items():
        print(f"  {key:10s} median {value:8.3f} s  ({1000 * value / args.features:8.2f} ms/feature)")
    print(f"  reference prepared once in {prepare_s:.2f} s")
    print(f"  scipy / ours     = {ratios['scipy_over_ours']:.1f}x  (target >= 25x)")
    print(f"  ours / floor     = {ratios['ours_over_floor']:.2f}x  (target <= 1.5x)")
    if "evidently_over_ours" in ratios:
        print(f"  evidently / ours = {ratios['evidently_over_ours']:.1f}x  (target >= 50x)")
    else:
        print(f"  evidently: not run: {evidently_error}")
    print(f"  max |D_ours - D_scipy| = {d_diff:.3g}; max rel p-value diff = {p_rel:.3g}")
    print(f"  saved {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

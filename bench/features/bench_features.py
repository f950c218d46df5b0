"""Benchmark: the job's built-in feature transform vs idiomatic pandas vs polars / DuckDB.

    PYTHONPATH=feature-jobs:bench/features python bench/features/bench_features.py [--events 10000000]

Method (see shared/TESTING.md): the same synthetic clickstream (recops_features.datagen, fixed
seed) is written once to Parquet; every measurement runs in a fresh subprocess that loads the data
into memory (not timed), resets the kernel's peak-RSS counter, runs one transform (timed), and
reports the time and the peak RSS above the post-load baseline. Engines alternate in rounds
(A B C D, A B C D, ...) so machine noise hits them alike; we report medians and ratios. Before
timing, all engines are checked to produce the same tables on a small sample.

Targets: builtin >= 3x faster than idiomatic pandas, within 1.3x of the fastest of polars/DuckDB,
transform peak memory <= 2x the in-memory input size. Result: bench/results/features.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT / "feature-jobs"), str(HERE)]

REF = datetime(2026, 11, 29, tzinfo=UTC)
ENGINES = ("builtin", "polars", "duckdb", "idiomatic")


# ----------------------------------------------------------------------------- memory accounting


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM (peak RSS) to the current RSS
        return True
    except OSError:
        return False


# ----------------------------------------------------------------------------- worker


def worker(engine: str, data_dir: Path) -> dict[str, Any]:
    """Load the data, run one transform, report seconds and memory (runs in a fresh process)."""
    import gc

    import engines as eng
    import pandas as pd
    import pyarrow.parquet as pq

    events_t = pq.read_table(data_dir / "events.parquet")
    catalog_t = pq.read_table(data_dir / "items.parquet")
    profiles_t = pq.read_table(data_dir / "profiles.parquet")
    con = None
    if engine in ("builtin", "idiomatic"):
        events = events_t.to_pandas()
        catalog, profiles = catalog_t.to_pandas(), profiles_t.to_pandas()
        input_bytes = int(events.memory_usage(deep=True).sum())
        del events_t
    elif engine == "polars":
        import polars as pl

        events = pl.from_arrow(events_t)
        catalog, profiles = pl.from_arrow(catalog_t), pl.from_arrow(profiles_t)
        input_bytes = int(events.estimated_size())
        del events_t
    else:
        import duckdb

        con = duckdb.connect()
        con.execute(f"SET threads TO {os.cpu_count() or 1}")
        events, catalog, profiles = events_t, catalog_t, profiles_t
        input_bytes = int(events.nbytes)
    gc.collect()
    baseline_kib = _status_kib("VmRSS")
    exact_peak = _reset_peak()
    started = time.perf_counter()
    if engine == "builtin":
        out = eng.run_builtin(events, catalog, profiles, REF)
    elif engine == "idiomatic":
        out = eng.run_idiomatic(events, catalog, profiles, REF)
    elif engine == "polars":
        out = eng.run_polars(events, catalog, profiles, REF)
    else:
        out = eng.run_duckdb(events, catalog, profiles, REF, con)
    seconds = time.perf_counter() - started
    peak_kib = _status_kib("VmHWM")
    rows = {k: (len(v) if hasattr(v, "__len__") else v.num_rows) for k, v in out.items()}
    return {
        "engine": engine,
        "seconds": seconds,
        "inputBytes": input_bytes,
        "baselineRssBytes": baseline_kib * 1024,
        "peakRssBytes": peak_kib * 1024,
        "peakExtraBytes": max(0, (peak_kib - baseline_kib) * 1024),
        "peakExact": exact_peak,
        "rows": rows,
        "pandas": pd.__version__,
    }


def run_worker(engine: str, data_dir: Path) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "feature-jobs"), str(HERE)]),
        "OPENBLAS_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", engine, "--data", str(data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- setup


def prepare_data(events: int, users: int | None, data_dir: Path, seed: int) -> dict[str, Any]:
    from recops_features.datagen import GenerateSpec, generate
    from recops_features.snapshot import frame_to_arrow

    marker = data_dir / "spec.json"
    spec_json: dict[str, Any] = {"events": events, "users": users, "seed": seed, "end": "2026-11-29", "days": 30}
    if marker.exists() and json.loads(marker.read_text()) == spec_json:
        return spec_json
    import pyarrow.parquet as pq

    data_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = generate(GenerateSpec(events=events, users=users, days=30, end_date=date(2026, 11, 29), seed=seed))
    spec_json["distinctUsers"] = int(data.events["user_id"].nunique())
    spec_json["distinctItems"] = int(data.events["item_id"].nunique())
    spec_json["generateSeconds"] = round(time.perf_counter() - started, 2)
    pq.write_table(frame_to_arrow(data.events), data_dir / "events.parquet")
    pq.write_table(frame_to_arrow(data.items), data_dir / "items.parquet")
    pq.write_table(frame_to_arrow(data.profiles), data_dir / "profiles.parquet")
    marker.write_text(json.dumps(spec_json))
    return spec_json


def check_engines(sample_events: int = 200_000) -> list[str]:
    """Run every engine on a small sample and check they agree with the builtin transform."""
    import duckdb
    import engines as eng
    import polars as pl
    from recops_features.datagen import GenerateSpec, generate
    from recops_features.snapshot import frame_to_arrow

    data = generate(GenerateSpec(events=sample_events, days=30, end_date=date(2026, 11, 29), seed=3))
    ev_t, cat_t, prof_t = (frame_to_arrow(f) for f in (data.events, data.items, data.profiles))
    ref = eng.run_builtin(data.events, data.items, data.profiles, REF)
    checked = []
    eng.check_equivalent(ref, eng.run_idiomatic(data.events, data.items, data.profiles, REF), "idiomatic")
    checked.append("idiomatic")
    eng.check_equivalent(
        ref, eng.run_polars(pl.from_arrow(ev_t), pl.from_arrow(cat_t), pl.from_arrow(prof_t), REF), "polars"
    )
    checked.append("polars")
    eng.check_equivalent(ref, eng.run_duckdb(ev_t, cat_t, prof_t, REF, duckdb.connect()), "duckdb")
    checked.append("duckdb")
    return checked


def machine() -> dict[str, Any]:
    import duckdb
    import numpy
    import pandas
    import polars
    import pyarrow

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpuModel": cpu,
        "memTotalBytes": mem,
        "loadAvgAtStart": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {
            "numpy": numpy.__version__,
            "pandas": pandas.__version__,
            "pyarrow": pyarrow.__version__,
            "polars": polars.__version__,
            "duckdb": duckdb.__version__,
        },
    }


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="rounds for builtin/polars/duckdb")
    parser.add_argument("--idiomatic-rounds", type=int, default=2, help="rounds for the slow idiomatic version")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--users",
        type=int,
        default=50_000,
        help="profiled users; the idiomatic version's cost grows with the number of groups",
    )
    parser.add_argument("--data", default=None, help="cache directory for the generated Parquet input")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "features.json"))
    parser.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(worker(args.worker, Path(args.data))))
        return 0

    data_dir = Path(
        args.data or Path(tempfile.gettempdir()) / f"recops-bench-features-{args.events}-{args.users}-{args.seed}"
    )
    info = machine()
    print(f"machine: {info['nproc']} cores, {info['cpuModel']}, load {info['loadAvgAtStart']}", flush=True)
    checked = check_engines()
    print(f"equivalence: {', '.join(checked)} agree with builtin on a 200k-event sample", flush=True)
    spec = prepare_data(args.events, args.users, data_dir, args.seed)
    print(f"data: {args.events:,} events in {data_dir}", flush=True)

    runs: dict[str, list[dict[str, Any]]] = {e: [] for e in ENGINES}
    for r in range(max(args.rounds, args.idiomatic_rounds)):
        for engine in ENGINES:
            wanted = args.idiomatic_rounds if engine == "idiomatic" else args.rounds
            if r >= wanted:
                continue
            result = run_worker(engine, data_dir)
            runs[engine].append(result)
            peak_mb = result["peakExtraBytes"] / 1e6
            print(
                f"round {r + 1} {engine:>9}: {result['seconds']:8.2f}s  peak +{peak_mb:7.0f} MB"
                f"  (input {result['inputBytes'] / 1e6:.0f} MB)",
                flush=True,
            )

    def med(engine: str, key: str) -> float:
        return float(statistics.median(r[key] for r in runs[engine]))

    measured = [e for e in ENGINES if runs[e]]
    times = {e: med(e, "seconds") for e in measured}
    fastest_engine = min(("polars", "duckdb"), key=lambda e: times[e])
    builtin_input = runs["builtin"][0]["inputBytes"]
    builtin_peak = med("builtin", "peakExtraBytes")
    summary = {
        "speedupVsIdiomaticPandas": times["idiomatic"] / times["builtin"] if "idiomatic" in times else None,
        "fastestEngine": fastest_engine,
        "builtinOverFastestEngine": times["builtin"] / times[fastest_engine],
        "builtinPeakExtraOverInput": builtin_peak / builtin_input,
        "targets": {
            "speedupVsIdiomaticPandas": ">= 3",
            "builtinOverFastestEngine": "<= 1.3",
            "builtinPeakExtraOverInput": "<= 2",
        },
    }
    summary["met"] = {
        "speedupVsIdiomaticPandas": (summary["speedupVsIdiomaticPandas"] or 0) >= 3,
        "builtinOverFastestEngine": summary["builtinOverFastestEngine"] <= 1.3,
        "builtinPeakExtraOverInput": summary["builtinPeakExtraOverInput"] <= 2,
    }
    result = {
        "benchmark": "features-transform",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": info | {"loadAvgAtEnd": os.getloadavg()},
        "data": spec | {"inputBytesPandas": builtin_input},
        "method": "fresh subprocess per measurement; engines alternate per round; medians; transform only "
        "(loading not timed); peak = VmHWM after transform minus RSS before (VmHWM reset via clear_refs)",
        "medianSeconds": times,
        "medianPeakExtraBytes": {e: med(e, "peakExtraBytes") for e in measured},
        "inputBytes": {e: runs[e][0]["inputBytes"] for e in measured},
        "summary": summary,
        "runs": runs,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print("\nmedian seconds: " + ", ".join(f"{e} {t:.2f}" for e, t in times.items()))
    if summary["speedupVsIdiomaticPandas"] is not None:
        print(f"builtin vs idiomatic pandas: {summary['speedupVsIdiomaticPandas']:.1f}x faster (target >= 3x)")
    print(
        f"builtin vs {fastest_engine} (fastest engine): {summary['builtinOverFastestEngine']:.2f}x its time "
        f"(target <= 1.3x)"
    )
    print(
        f"builtin peak memory above input: {summary['builtinPeakExtraOverInput']:.2f}x the input "
        f"({builtin_peak / 1e6:.0f} MB over {builtin_input / 1e6:.0f} MB; target <= 2x)"
    )
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

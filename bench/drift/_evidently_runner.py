"""Run Evidently 0.7's DataDriftPreset on the benchmark data (executed inside the Evidently virtualenv).

Usage: python _evidently_runner.py DATA_DIR   (prints one JSON line: timings, versions, drift summary)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

t0 = time.perf_counter()
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scipy  # noqa: E402
from evidently import Report  # noqa: E402
from evidently import __version__ as evidently_version  # noqa: E402
from evidently.presets import DataDriftPreset  # noqa: E402

import_seconds = time.perf_counter() - t0


def main() -> None:
    folder = Path(sys.argv[1])
    t1 = time.perf_counter()
    ref = np.load(folder / "reference.npy")
    cur = np.load(folder / "current.npy")
    names = [f"f{j:02d}" for j in range(ref.shape[0])]
    ref_df = pd.DataFrame({n: ref[j] for j, n in enumerate(names)})
    cur_df = pd.DataFrame({n: cur[j] for j, n in enumerate(names)})
    load_seconds = time.perf_counter() - t1
    t2 = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current_data=cur_df, reference_data=ref_df)
    run_seconds = time.perf_counter() - t2
    summary: dict[str, object] = {}
    methods: set[str] = set()
    for metric in snapshot.dict()["metrics"]:
        name = str(metric.get("metric_name", ""))
        if name.startswith("DriftedColumnsCount"):
            summary = dict(metric["value"])
        elif name.startswith("ValueDrift"):
            methods.add(str(metric["config"].get("method")))
    print(
        json.dumps(
            {
                "run_seconds": run_seconds,
                "import_seconds": import_seconds,
                "load_seconds": load_seconds,
                "drifted_columns": summary,
                "methods": sorted(methods),
                "versions": {
                    "evidently": evidently_version,
                    "pandas": pd.__version__,
                    "numpy": np.__version__,
                    "scipy": scipy.__version__,
                    "python": sys.version.split()[0],
                },
            }
        )
    )


if __name__ == "__main__":
    main()

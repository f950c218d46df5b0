"""Runs one job program for the local backend and records how it ended.

`python -m recops.backends.local_runner RUN_DIR -- PROGRAM ARGS...`: the runner lives in its own session,
so a job keeps running (as a Kubernetes Job would) when the operator restarts, and `exit.json` tells
the operator how it ended even if the operator was down at the time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from recops.conditions import now_rfc3339


def main(argv: list[str]) -> int:
    run_dir = Path(argv[0])
    command = argv[argv.index("--") + 1:]
    with open(run_dir / "log.txt", "ab") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=run_dir)
    tmp = run_dir / "exit.json.tmp"
    tmp.write_text(json.dumps({"exitCode": code, "finishedAt": now_rfc3339()}))
    os.replace(tmp, run_dir / "exit.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Runs one job program for the local backend, retries it per the job retry policy, and records how it ended.

`python -m recops.backends.local_runner RUN_DIR [--backoff-limit N] [--first-delay SECONDS] -- PROGRAM ARGS...`:
the runner lives in its own session, so a job keeps running (as a Kubernetes Job would) when the operator
restarts, and the files it keeps in RUN_DIR tell the operator how it is going even if the operator was down:

- `attempt.json` (before each attempt and each wait): `{"attempt", "of", "startedAt", "exitCodes"}`, plus
  `retryAt` while it waits to try again;
- `exit.json` (once, at the end): `{"exitCode", "finishedAt", "attempts", "exitCodes"}`;
- `log.txt`: every attempt's output, with one line from the runner between attempts;
- `result.json`: the program's result document; an earlier attempt's is kept as `result.attempt-N.json`.

A retryable exit code (not 0, 2 or 3: `recops.backends.retry`) is tried again up to N more times.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from recops.backends.retry import FIRST_DELAY_SECONDS, attempt_text, run_with_retries
from recops.conditions import now_rfc3339


def _write(path: Path, body: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(body))
    os.replace(tmp, path)


def _log(run_dir: Path, message: str, **fields: Any) -> None:
    record = {"ts": now_rfc3339(), "level": "warning", "logger": "recops-local-runner", "msg": message, **fields}
    with open(run_dir / "log.txt", "a") as log:
        log.write(json.dumps(record, separators=(",", ":")) + "\n")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="recops.backends.local_runner")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--backoff-limit", type=int, default=0)
    parser.add_argument("--first-delay", type=float, default=FIRST_DELAY_SECONDS)
    return parser.parse_args(argv[:split]), argv[split + 1:]


def main(argv: list[str]) -> int:
    args, command = parse_args(argv)
    run_dir: Path = args.run_dir
    limit: int = args.backoff_limit
    codes: list[int] = []

    def run_once(attempt: int) -> int:
        result = run_dir / "result.json"
        if attempt > 1 and result.exists():
            os.replace(result, run_dir / f"result.attempt-{attempt - 1}.json")
        _write(run_dir / "attempt.json", {"attempt": attempt, "of": limit + 1, "startedAt": now_rfc3339(),
                                          "exitCodes": codes})
        with open(run_dir / "log.txt", "ab") as log:
            code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=run_dir)
        codes.append(code)
        return code

    def on_retry(attempt: int, code: int, delay: float) -> None:
        retry_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
        _write(run_dir / "attempt.json", {"attempt": attempt, "of": limit + 1, "exitCodes": codes,
                                          "retryAt": now_rfc3339(retry_at)})
        _log(run_dir, f"Retrying the job: {attempt_text(attempt, limit)} ended with exit code {code}",
             attempt=attempt, exitCode=code, retryInSeconds=delay)

    code, attempts = run_with_retries(run_once, limit, first_delay=args.first_delay, on_retry=on_retry)
    _write(run_dir / "exit.json", {"exitCode": code, "finishedAt": now_rfc3339(), "attempts": attempts,
                                   "exitCodes": codes})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

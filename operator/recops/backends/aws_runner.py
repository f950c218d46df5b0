"""Runs one job program in an ECS task or a SageMaker training job and puts its result document in S3.

`python -m recops.backends.aws_runner PROGRAM` (the jobs image holds this package): AWS has no termination
message, so the job contract (docs/CONTRACTS.md) is kept by this wrapper instead of by each program:

- the config: env `RECOPS_CONFIG_JSON` (an ECS container override), else the SageMaker hyperparameter
  `recops-config` (/opt/ml/input/config/hyperparameters.json); written to a file for `PROGRAM run --config FILE`;
- the result: the program writes `--result-file`; this wrapper uploads it to `RECOPS_RESULT_URI` (s3://...) with
  the job's own credentials (task or SageMaker role), through `RECOPS_RESULT_ENDPOINT_URL` when set (emulators);
- `RECOPS_DEADLINE_SECONDS`: stop the program after this long, all attempts together (ECS has no deadline of its own);
- `RECOPS_BACKOFF_LIMIT`: retries after a retryable exit code (the job retry policy, `recops.backends.retry`:
  2 and 3 are final), with a capped exponential backoff; the stored result is the last attempt's, with `attempts`;
- the exit code is the program's, or 4 when the result could not be stored (the operator would not see it).

Only the standard library, boto3 (a dependency of every job program) and `recops.backends.retry` (standard
library only): nothing else of the operator loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from recops.backends.retry import FIRST_DELAY_SECONDS, attempt_text, run_with_retries

HYPERPARAMETERS = Path("/opt/ml/input/config/hyperparameters.json")
CONFIG_HYPERPARAMETER = "recops-config"
SAGEMAKER_FAILURE_FILE = Path("/opt/ml/output/failure")
EXIT_INVALID, EXIT_UNAVAILABLE = 2, 4


def log(message: str, **fields: Any) -> None:
    print(json.dumps({"logger": "recops.aws_runner", "message": message, **fields}), file=sys.stderr, flush=True)


def read_config(env: dict[str, str], hyperparameters: Path = HYPERPARAMETERS) -> str | None:
    if env.get("RECOPS_CONFIG_JSON"):
        return env["RECOPS_CONFIG_JSON"]
    if hyperparameters.exists():
        value = json.loads(hyperparameters.read_text()).get(CONFIG_HYPERPARAMETER)
        return str(value) if value else None
    return None


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not key:
        raise ValueError(f"RECOPS_RESULT_URI {uri!r} is not an s3://bucket/key URI")
    return bucket, key


def upload(uri: str, body: bytes, endpoint_url: str | None) -> None:
    import boto3

    bucket, key = split_s3(uri)
    client = boto3.client("s3", endpoint_url=endpoint_url or None)
    client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


def run_program(program: str, config: str, env: dict[str, str], deadline: int | None) -> tuple[int, dict[str, Any]]:
    """Run `PROGRAM run --config FILE --result-file FILE`; its exit code and result document."""
    with tempfile.TemporaryDirectory(prefix="recops-") as tmp:
        config_file, result_file = Path(tmp) / "config.json", Path(tmp) / "result.json"
        config_file.write_text(config)
        child_env = {k: v for k, v in env.items() if k not in ("RECOPS_CONFIG_JSON", "RECOPS_RESULT_FILE")}
        command = [program, "run", "--config", str(config_file), "--result-file", str(result_file)]
        try:
            code = subprocess.call(command, env=child_env, timeout=deadline)
        except subprocess.TimeoutExpired:
            log("Stopped the job at its deadline", program=program, deadlineSeconds=deadline)
            return 1, {"ok": False, "reason": "DeadlineExceeded",
                       "message": f"{program} ran longer than its deadline of {deadline} s and was stopped"}
        try:
            body = json.loads(result_file.read_text())
        except (OSError, ValueError):
            body = None
    if not isinstance(body, dict):
        body = {"ok": False, "reason": "NoResult",
                "message": f"{program} ended with exit code {code} without a result document"}
    return code, body


def run_attempts(program: str, config: str, env: dict[str, str], deadline: int | None, backoff_limit: int,
                 first_delay: float = FIRST_DELAY_SECONDS) -> tuple[int, dict[str, Any]]:
    """`run_program` under the job retry policy; the deadline covers every attempt, as a Job's
    activeDeadlineSeconds does. The result is the last attempt's, with `attempts` added."""
    ends_at = time.monotonic() + deadline if deadline else None
    bodies: list[dict[str, Any]] = []

    def run_once(attempt: int) -> int:
        left = max(1, int(ends_at - time.monotonic())) if ends_at is not None else None
        code, body = run_program(program, config, env, left)
        bodies.append(body)
        return code

    def on_retry(attempt: int, code: int, delay: float) -> None:
        log(f"Retrying the job: {attempt_text(attempt, backoff_limit)} ended with exit code {code}", program=program,
            reason=bodies[-1].get("reason"), retryInSeconds=delay)

    code, attempts = run_with_retries(run_once, backoff_limit, first_delay=first_delay, deadline=ends_at,
                                      on_retry=on_retry)
    return code, {**bodies[-1], "attempts": attempts}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        log("Refused the arguments: expected exactly one job program (recops-features, recops-train, recops-drift)")
        return EXIT_INVALID
    program, env = argv[0], dict(os.environ)
    result_uri = env.get("RECOPS_RESULT_URI", "")
    config = read_config(env)
    deadline = int(env["RECOPS_DEADLINE_SECONDS"]) if env.get("RECOPS_DEADLINE_SECONDS") else None
    limit = int(env.get("RECOPS_BACKOFF_LIMIT") or 0)
    if config is None:
        code, body = EXIT_INVALID, {"ok": False, "reason": "InvalidConfig", "message": "the job got no config: set "
                                    f"RECOPS_CONFIG_JSON or the SageMaker hyperparameter {CONFIG_HYPERPARAMETER!r}"}
    else:
        code, body = run_attempts(program, config, env, deadline, limit)
    if code != 0 and SAGEMAKER_FAILURE_FILE.parent.is_dir():
        SAGEMAKER_FAILURE_FILE.write_text(str(body.get("message", ""))[:1000])  # becomes SageMaker's FailureReason
    try:
        upload(result_uri, json.dumps(body, separators=(",", ":")).encode(), env.get("RECOPS_RESULT_ENDPOINT_URL"))
    except Exception as exc:
        log("Failed to store the result document", uri=result_uri, error=f"{type(exc).__name__}: {exc}")
        return code or EXIT_UNAVAILABLE
    log("Stored the result document", uri=result_uri, exitCode=code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``recops-train run --config FILE|-`` (see docs/CONTRACTS.md).

Exit codes: 0 success (version registered; promoted, or policy 'never'); 2 invalid config or input;
3 the promotion gate refused (version registered, alias unchanged); 4 MLflow/S3 unavailable;
1 unexpected. The result JSON goes to ``--result-file`` (default env ``RECOPS_RESULT_FILE``, else
``/dev/termination-log`` when it exists, else stdout).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from .errors import InvalidInput, TrainingError
from .logs import log

MAX_RESULT_BYTES = 4096


def _result_target(arg: str | None) -> str | None:
    if arg:
        return arg
    env = os.environ.get("RECOPS_RESULT_FILE")
    if env:
        return env
    if Path("/dev/termination-log").exists():
        return "/dev/termination-log"
    return None


def compact(result: dict[str, Any]) -> str:
    """One JSON object under 4 KiB: drop optional keys, then shorten the message, if needed."""
    text = json.dumps(result, separators=(",", ":"), default=str)
    for key in ("baselineMetrics", "metrics", "promotionReason", "runKey"):
        if len(text.encode()) <= MAX_RESULT_BYTES:
            break
        result = {k: v for k, v in result.items() if k != key}
        text = json.dumps(result, separators=(",", ":"), default=str)
    while len(text.encode()) > MAX_RESULT_BYTES and len(result.get("message", "")) > 40:
        result["message"] = result["message"][: len(result["message"]) // 2] + "..."
        text = json.dumps(result, separators=(",", ":"), default=str)
    return text


def write_result(result: dict[str, Any], target: str | None) -> None:
    text = compact(result)
    if target is None:
        print(text, flush=True)
        return
    tmp = f"{target}.tmp" if not target.startswith("/dev/") else target
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    if tmp != target:
        os.replace(tmp, target)


def _read_config(path: str) -> Any:
    try:
        raw = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"--config {path!r} could not be read: {exc.strerror}", reason="InvalidConfig") from exc
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"--config {path!r} is not valid JSON: {exc}", reason="InvalidConfig") from exc


def run_command(config_path: str) -> tuple[int, dict[str, Any]]:
    from .tracking import tune_client_env

    tune_client_env()
    try:
        from .config import parse_config

        cfg = parse_config(_read_config(config_path))
        log("Read the config", runKey=cfg.run_key, algorithm=cfg.algorithm.name, snapshot=cfg.snapshot.uri)
        from .runner import run_training

        outcome = run_training(cfg)
        log("Finished the training job", reason=outcome.result.get("reason"), exitCode=outcome.exit_code)
        return outcome.exit_code, outcome.result
    except TrainingError as exc:
        log("Stopped the training job", level="error", reason=exc.reason, message=exc.message, exitCode=exc.exit_code)
        return exc.exit_code, {"ok": False, "reason": exc.reason, "message": exc.message}
    except Exception as exc:
        log(
            "Failed with an unexpected error",
            level="error",
            error=repr(exc)[:500],
            trace=traceback.format_exc()[-2000:],
        )
        return 1, {
            "ok": False,
            "reason": "Unexpected",
            "message": f"unexpected error: {type(exc).__name__}: {str(exc)[:300]}",
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="recops-train", description="Recops TrainingRun job: train, evaluate, log to MLflow, register, promote."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the training job")
    run.add_argument("--config", required=True, help="JSON config file, or - for stdin")
    run.add_argument("--result-file", default=None, help="where to write the result JSON")
    sub.add_parser("algorithms", help="list the algorithms and their parameters as JSON")
    args = parser.parse_args(argv)
    if args.command == "algorithms":
        from .algorithms import ALGORITHMS

        print(json.dumps({n: c.params_model.model_json_schema(by_alias=True) for n, c in ALGORITHMS.items()}, indent=1))
        return 0
    code, result = run_command(args.config)
    write_result(result, _result_target(args.result_file))
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

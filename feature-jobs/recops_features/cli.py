"""``recops-features``: ``run --config FILE`` (the FeaturePipeline job) and ``generate`` (synthetic data).

Exit codes (docs/CONTRACTS.md): 0 success, 2 invalid config or input, 3 quality gate refused,
4 dependency unavailable (retry), 1 unexpected.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from datetime import date
from pathlib import Path
from typing import Any

from recops_features.errors import EXIT_INVALID, EXIT_OK, EXIT_UNEXPECTED, JobError
from recops_features.logs import log


def _result_target(explicit: str | None) -> str | None:
    """Where the result goes: --result-file, env RECOPS_RESULT_FILE, /dev/termination-log, else stdout."""
    if explicit:
        return explicit
    if os.environ.get("RECOPS_RESULT_FILE"):
        return os.environ["RECOPS_RESULT_FILE"]
    if os.path.exists("/dev/termination-log"):
        return "/dev/termination-log"
    return None


def write_result(text: str, target: str | None) -> None:
    if target in (None, "-"):
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if str(path).startswith("/dev/"):
        path.write_text(text + "\n")
        return
    tmp.write_text(text + "\n")
    os.replace(tmp, path)


def _validation_message(exc: Any) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(document)"
        parts.append(f"{loc}: {err.get('msg')}")
    return "Invalid config: " + "; ".join(parts) + ". Fix the FeaturePipeline spec."


def _load_config_text(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    return Path(source).read_text()


def cmd_run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from recops_features.config import load_config
    from recops_features.job import compact_json, run_job

    target = _result_target(args.result_file)
    started = time.monotonic()

    def fail(code: int, reason: str, message: str) -> int:
        body = {
            "ok": False,
            "reason": reason,
            "message": message,
            "version": None,
            "uri": None,
            "rows": 0,
            "users": 0,
            "items": 0,
            "window": None,
            "quality": [],
            "durationSeconds": round(time.monotonic() - started, 3),
        }
        log("Failed feature pipeline", level="error", reason=reason, message=message)
        write_result(compact_json(body), target)
        return code

    try:
        text = _load_config_text(args.config)
    except OSError as exc:
        return fail(EXIT_INVALID, "ConfigNotFound", f"Could not read --config {args.config}: {exc.strerror}.")
    try:
        data = json.loads(text)
    except ValueError as exc:
        return fail(EXIT_INVALID, "InvalidConfig", f"--config {args.config} is not JSON: {exc}.")
    if not isinstance(data, dict):
        return fail(EXIT_INVALID, "InvalidConfig", f"--config {args.config} must be a JSON object.")
    try:
        config = load_config(data)
    except ValidationError as exc:
        return fail(EXIT_INVALID, "InvalidConfig", _validation_message(exc))
    except JobError as exc:
        return fail(exc.exit_code, exc.reason, exc.message)
    try:
        result = run_job(config)
    except Exception as exc:  # the contract: 1 = unexpected, with a result all the same
        log("Failed with an unexpected error", level="error", traceback=traceback.format_exc(limit=20))
        return fail(EXIT_UNEXPECTED, "UnexpectedError", f"{type(exc).__name__}: {str(exc)[:300]}")
    write_result(result.to_json(), target)
    if result.exit_code == EXIT_OK:
        log(
            "Finished feature pipeline",
            version=result.body.get("version"),
            rows=result.body.get("rows"),
            seconds=result.body.get("durationSeconds"),
        )
    return result.exit_code


def cmd_generate(args: argparse.Namespace) -> int:
    from recops_features.datagen import (
        DriftSpec,
        GenerateSpec,
        generate,
        write_dataset,
        write_profiles_postgres,
    )

    drift = DriftSpec(
        start=date.fromisoformat(args.drift_start) if args.drift_start else None,
        category_shift=args.category_shift,
        price_multiplier=args.price_multiplier,
        new_user_share=args.drift_new_user_share,
        bot_share=args.bot_share,
    )
    spec = GenerateSpec(
        events=args.events,
        users=args.users,
        items=args.items,
        days=args.days,
        end_date=date.fromisoformat(args.end_date) if args.end_date else GenerateSpec().end_date,
        seed=args.seed,
        new_user_share=args.new_user_share,
        new_item_share=args.new_item_share,
        drift=drift,
    )
    t0 = time.monotonic()
    data = generate(spec).between(
        date.fromisoformat(args.emit_from) if args.emit_from else None,
        date.fromisoformat(args.emit_until) if args.emit_until else None,
    )
    log(
        "Generated synthetic clickstream",
        events=len(data.events),
        seconds=round(time.monotonic() - t0, 3),
        seed=spec.seed,
    )
    try:
        summary = write_dataset(data, args.target, fmt=args.format, rows_per_file=args.rows_per_file, spec=spec)
        if args.profiles_table:
            dsn = os.environ.get("RECOPS_POSTGRES_DSN")
            if not dsn:
                log("Failed to load profiles: env RECOPS_POSTGRES_DSN is not set", level="error")
                return EXIT_INVALID
            write_profiles_postgres(data.profiles, dsn, args.profiles_table, mode=args.profiles_mode)
            summary["profilesTable"] = args.profiles_table
    except JobError as exc:
        log("Failed to write synthetic data", level="error", reason=exc.reason, message=exc.message)
        return exc.exit_code
    summary["seconds"] = round(time.monotonic() - t0, 3)
    sys.stdout.write(json.dumps(summary, default=str) + "\n")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recops-features", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="compute and publish one feature snapshot")
    run.add_argument("--config", required=True, help="JSON config file (FeaturePipelineConfig), '-' for stdin")
    run.add_argument(
        "--result-file",
        default=None,
        help="where to write the result JSON (default: $RECOPS_RESULT_FILE, /dev/termination-log, stdout)",
    )
    run.set_defaults(func=cmd_run)

    gen = sub.add_parser("generate", help="write a synthetic clickstream, catalogue and profiles")
    gen.add_argument("--target", required=True, help="s3://bucket/prefix or a local directory")
    gen.add_argument("--events", type=int, default=100_000, help="exact number of events")
    gen.add_argument("--users", type=int, default=None, help="profiled users (default events/40)")
    gen.add_argument("--items", type=int, default=None, help="catalogue size (default 4*sqrt(events))")
    gen.add_argument("--days", type=int, default=30, help="length of the period in days")
    gen.add_argument("--end-date", default=None, help="exclusive end date YYYY-MM-DD (default: tomorrow UTC)")
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--format", choices=["parquet", "jsonl"], default="parquet")
    gen.add_argument("--rows-per-file", type=int, default=2_000_000)
    gen.add_argument("--new-user-share", type=float, default=0.1, help="share of users signing up in the period")
    gen.add_argument("--new-item-share", type=float, default=0.15, help="share of items released in the period")
    gen.add_argument(
        "--profiles-table",
        default=None,
        help="also load profiles into this PostgreSQL table (DSN from env RECOPS_POSTGRES_DSN)",
    )
    gen.add_argument("--profiles-mode", choices=["upsert", "replace"], default="upsert")
    gen.add_argument(
        "--emit-from", default=None, help="write only events on or after this day YYYY-MM-DD (the world is unchanged)"
    )
    gen.add_argument(
        "--emit-until",
        default=None,
        help="write only events, items and users before this day YYYY-MM-DD; rerun the same spec with --emit-from "
        "that day later to let time pass",
    )
    drift = gen.add_argument_group("drift (applied from --drift-start on)")
    drift.add_argument("--drift-start", default=None, help="first drifted day YYYY-MM-DD")
    drift.add_argument(
        "--category-shift", type=float, default=0.0, help="0..1 share of sessions with inverted category mix"
    )
    drift.add_argument("--price-multiplier", type=float, default=1.0, help="event price multiplier, e.g. 1.3")
    drift.add_argument("--drift-new-user-share", type=float, default=0.0, help="0..1 share of sessions by a new cohort")
    drift.add_argument("--bot-share", type=float, default=0.0, help="0..1 share of drift-period events from bots")
    gen.set_defaults(func=cmd_generate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

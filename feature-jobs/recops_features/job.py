"""``recops-features run``: read inputs, transform, check gates, publish a snapshot, report a result.

The flow is gather (IO) -> transform (pure) -> gates (pure) -> snapshot (pure) -> publish (IO).
Nothing is written before every gate passed, so a failure never leaves a partial snapshot.
"""

from __future__ import annotations

import importlib
import inspect
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from recops_features.config import BUILTIN_TABLES, DEFAULT_KEYS, FeaturePipelineConfig
from recops_features.errors import EXIT_OK, GateFailed, InvalidInput, JobError
from recops_features.logs import log
from recops_features.quality import Check, evaluate, resolve_unique_keys
from recops_features.snapshot import build_snapshot, publish
from recops_features.sources import read_events, read_file_frame, read_profiles
from recops_features.storage import S3Store, parse_location, store_for
from recops_features.transform import TransformParams, build_features

RESULT_LIMIT = 4000


@dataclass
class TransformContext:
    """What a custom transform gets besides the frames."""

    window_start: datetime
    window_end: datetime
    reference_time: datetime
    params: TransformParams
    config: FeaturePipelineConfig


@dataclass
class JobResult:
    """The result document (see docs/CONTRACTS.md) and the process exit code."""

    exit_code: int
    body: dict[str, Any]

    def to_json(self) -> str:
        return compact_json(self.body)


def compact_json(body: dict[str, Any], limit: int = RESULT_LIMIT) -> str:
    """Serialise the result in under ``limit`` bytes, dropping passed checks first if needed."""
    text = json.dumps(body, separators=(",", ":"), default=str)
    if len(text) <= limit:
        return text
    slim = dict(body)
    quality = body.get("quality") or []
    failed = [q for q in quality if not q.get("passed")]
    slim["quality"] = failed
    slim["qualityOmittedPassed"] = len(quality) - len(failed)
    text = json.dumps(slim, separators=(",", ":"), default=str)
    while len(text) > limit and slim["quality"]:
        slim["quality"] = slim["quality"][:-1]
        slim["qualityTruncated"] = True
        text = json.dumps(slim, separators=(",", ":"), default=str)
    if len(text) > limit:
        slim["message"] = str(slim.get("message", ""))[:500]
        text = json.dumps(slim, separators=(",", ":"), default=str)
    return text


# ----------------------------------------------------------------------------- custom transforms


def load_transform(spec: str) -> Callable[..., Any]:
    """Import ``package.module:function`` (``InvalidInput`` when it does not exist)."""
    module_name, _, func_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidInput(
            "TransformNotFound",
            f"Could not import module {module_name!r} of transform.function "
            f"{spec!r}: {exc}; install it in the job image or fix the name.",
        ) from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise InvalidInput(
            "TransformNotFound", f"Module {module_name!r} has no function {func_name!r} (transform.function {spec!r})."
        )
    return func  # type: ignore[no-any-return]


def call_transform(
    func: Callable[..., Any], frames: dict[str, pd.DataFrame], context: TransformContext, spec: str
) -> dict[str, pd.DataFrame]:
    """Call a user transform with ``(frames, context)`` or ``(frames)`` and validate what it returns."""
    try:
        takes_context = len(inspect.signature(func).parameters) >= 2
    except (TypeError, ValueError):
        takes_context = True
    try:
        out = func(dict(frames), context) if takes_context else func(dict(frames))
    except Exception as exc:
        raise InvalidInput(
            "TransformFailed",
            f"transform.function {spec!r} raised {type(exc).__name__}: {str(exc)[:300]}; fix the transform.",
        ) from exc
    if (
        not isinstance(out, dict)
        or not out
        or not all(isinstance(k, str) and isinstance(v, pd.DataFrame) for k, v in out.items())
    ):
        raise InvalidInput(
            "TransformInvalidOutput",
            f"transform.function {spec!r} must return a non-empty dict[str, pandas.DataFrame] of output tables.",
        )
    bad = [k for k in out if not k.replace("_", "").replace("-", "").isalnum()]
    if bad:
        raise InvalidInput(
            "TransformInvalidOutput",
            f"transform.function {spec!r} returned table names {bad} "
            "that are not plain words (letters, digits, _ or -).",
        )
    return out


# ----------------------------------------------------------------------------- the run


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")


def _counts(tables: dict[str, pd.DataFrame], events: pd.DataFrame) -> dict[str, int]:
    rows = len(tables["interactions"]) if "interactions" in tables else sum(len(t) for t in tables.values())
    users = len(tables["users"]) if "users" in tables else int(events["user_id"].nunique())
    items = len(tables["items"]) if "items" in tables else int(events["item_id"].nunique())
    return {"rows": rows, "users": users, "items": items, "events": len(events)}


def run_job(config: FeaturePipelineConfig, now: datetime | None = None, s3_client: Any | None = None) -> JobResult:
    """Run the pipeline once and return the result (never raises for expected failures)."""
    started = time.monotonic()
    now = now or datetime.now(UTC)
    start, end = config.window.resolve(now)
    window = {"start": _iso(start), "end": _iso(end)}
    base: dict[str, Any] = {
        "ok": False,
        "reason": "",
        "message": "",
        "version": None,
        "uri": None,
        "rows": 0,
        "users": 0,
        "items": 0,
        "window": window,
        "quality": [],
    }
    log("Started feature pipeline", pipeline=config.name, window_start=window["start"], window_end=window["end"])
    try:
        body = _run(config, start, end, now, window, base, s3_client)
        code = EXIT_OK
    except JobError as exc:
        body = dict(base) | {"reason": exc.reason, "message": exc.message}
        if isinstance(exc, GateFailed) and hasattr(exc, "checks"):
            body["quality"] = exc.checks
        code = exc.exit_code
        log("Failed feature pipeline", level="error", pipeline=config.name, reason=exc.reason, message=exc.message)
    body["durationSeconds"] = round(time.monotonic() - started, 3)
    return JobResult(code, body)


def _run(
    config: FeaturePipelineConfig,
    start: datetime,
    end: datetime,
    now: datetime,
    window: dict[str, str],
    base: dict[str, Any],
    s3_client: Any | None,
) -> dict[str, Any]:
    output = parse_location(config.output.uri)
    if output.scheme == "s3":
        out_store = store_for(output, what=f"the snapshot output {output.uri}", field="output.uri", client=s3_client)
        assert isinstance(out_store, S3Store)
        out_store.check_bucket(output)

    custom = load_transform(config.transform.function) if config.transform.function else None

    # Gather.
    src = config.sources
    events = read_events(src.events.uri, src.events.format, start, end, client=s3_client).frame
    catalog = (
        read_file_frame(src.catalog.uri, "sources.catalog.uri", "item_id", client=s3_client) if src.catalog else None
    )
    profiles = (
        read_profiles(src.profiles.table, src.profiles.uri, src.profiles.columns, client=s3_client)
        if src.profiles
        else None
    )

    # Transform.
    feat = config.features
    params = TransformParams(
        reference_time=end,
        event_weights={w.event_type: w.weight for w in feat.event_weights},
        half_life_days=feat.half_life_days,
        price_bands=tuple(feat.price_bands),
    )
    context = TransformContext(start, end, end, params, config)
    inputs: dict[str, pd.DataFrame] = {"events": events}
    if catalog is not None:
        inputs["catalog"] = catalog
    if profiles is not None:
        inputs["profiles"] = profiles
    t0 = time.monotonic()
    if config.transform.mode == "custom":
        assert custom is not None
        tables = call_transform(custom, inputs, context, config.transform.function or "")
    else:
        tables = build_features(events, params, catalog, profiles)
        if config.transform.mode == "builtinThenCustom":
            assert custom is not None
            tables = call_transform(custom, inputs | tables, context, config.transform.function or "")
    log(
        "Computed features",
        seconds=round(time.monotonic() - t0, 3),
        tables={k: len(v) for k, v in tables.items()},
        mode=config.transform.mode,
    )

    # Gates.
    newest = events["ts"].max()
    newest_dt = newest.to_pydatetime() if pd.notna(newest) else None
    checks = evaluate(tables, config.quality, newest_dt, config.window.freshness_reference(now))
    counts = _counts(tables, events)
    quality = [c.as_dict() for c in checks]
    failed = [c for c in checks if not c.passed]
    if failed:
        err = GateFailed("QualityGateFailed", _gate_message(failed))
        err.checks = quality  # type: ignore[attr-defined]
        base.update(rows=counts["rows"], users=counts["users"], items=counts["items"])
        raise err

    # Snapshot and publish.
    keys = {k.table: list(k.columns) for k in resolve_unique_keys(tables, config.quality)}
    for name in BUILTIN_TABLES:
        if name in tables and name not in keys:
            keys[name] = DEFAULT_KEYS[name]
    extra = {
        "pipeline": config.name,
        "createdAt": _iso(datetime.now(UTC)),
        "counts": counts,
        "newestEvent": _iso(newest_dt) if newest_dt else None,
        "sources": {
            "events": src.events.uri,
            "catalog": src.catalog.uri if src.catalog else None,
            "profiles": (f"postgresql table {src.profiles.table}" if src.profiles.table else src.profiles.uri)
            if src.profiles
            else None,
        },
        "transform": {
            "mode": config.transform.mode,
            "function": config.transform.function,
            "features": feat.model_dump(by_alias=True),
        },
        "quality": quality,
    }
    snapshot = build_snapshot(tables, keys, window, extra)
    published = publish(snapshot, output, update_latest=config.output.update_latest, client=s3_client)
    return dict(base) | {
        "ok": True,
        "reason": "AlreadyPublished" if published.already_published else "Published",
        "message": (
            f"Snapshot {snapshot.version[:12]} with {counts['rows']} rows, {counts['users']} users and "
            f"{counts['items']} items is at {published.uri}"
            + (" (it existed already)." if published.already_published else ".")
        ),
        "version": snapshot.version,
        "uri": published.uri,
        "rows": counts["rows"],
        "users": counts["users"],
        "items": counts["items"],
        "events": counts["events"],
        "quality": quality,
        "isLatest": published.is_latest,
    }


def _gate_message(failed: list[Check]) -> str:
    parts = [f"{c.name} observed {c.observed} (threshold {c.threshold})" for c in failed[:5]]
    more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
    return (
        "Quality gate failed: "
        + "; ".join(parts)
        + more
        + ". Nothing was published and latest is unchanged; fix the input data or the quality thresholds."
    )

"""``recops-drift run --config FILE``: one drift check, one compact result (docs/CONTRACTS.md).

Exit codes: 0 the check ran (drift or not, or too little data: see ``reason``); 2 invalid config or
input; 4 MLflow / S3 unavailable (retry later); 1 unexpected.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from . import __version__
from . import stats as S
from .config import DriftCheckConfig, parse_duration, parse_time
from .errors import DriftCheckError, InvalidInput
from .logs import log

RESULT_LIMIT = 4000
"""Bytes: below the 4 KiB a termination message may hold."""

_STATUS_ORDER = {S.DRIFTED: 0, S.NO_DRIFT: 1, S.INSUFFICIENT_DATA: 2, S.MISSING: 3}


# ------------------------------------------------------------------------------------------- result doc


def feature_entry(f: S.FeatureResult) -> dict[str, Any]:
    return {
        "name": f.name,
        "method": f.method,
        "score": f.score_text if f.status in (S.DRIFTED, S.NO_DRIFT) else "",
        "threshold": f.threshold_text,
        "drifted": f.drifted,
        "status": f.status,
    }


def result_document(
    result: S.DriftResult,
    *,
    checked_at: str,
    report_uri: str | None = None,
    extra: dict[str, Any] | None = None,
    limit: int = RESULT_LIMIT,
) -> dict[str, Any]:
    """The compact result (< ``limit`` bytes): drifted features first, then by score; the rest trimmed."""
    checked = [f for f in result.features if f.status in (S.DRIFTED, S.NO_DRIFT)]
    if result.status == S.INSUFFICIENT_DATA:
        reason = "InsufficientData"
        message = (
            f"Too little data to judge drift: no feature had at least the minimum samples "
            f"({result.samples} in the window); raise the window duration or lower minSamples."
        )
    elif result.drifted:
        reason = "DriftDetected"
        names = ", ".join(result.drifted_features[:8]) + (" ..." if len(result.drifted_features) > 8 else "")
        message = (
            f"Drift detected: {len(result.drifted_features)} of {len(checked)} features drifted "
            f"(share {result.score_text} >= {S.format_score(result.drift_share)}): {names}."
        )
    else:
        reason = "NoDrift"
        message = (
            f"No drift: {len(result.drifted_features)} of {len(checked)} features drifted "
            f"(share {result.score_text} < {S.format_score(result.drift_share)})."
        )
    ordered = sorted(
        result.features,
        key=lambda f: (_STATUS_ORDER.get(f.status, 9), -(f.score if f.score == f.score else 0.0), f.name),
    )
    doc: dict[str, Any] = {
        "ok": True,
        "reason": reason,
        "message": message[:400],
        "drifted": result.drifted,
        "status": result.status,
        "score": result.score_text,
        "samples": result.samples,
        "driftedFeatures": ",".join(result.drifted_features)[:200],
        "referenceVersion": result.reference_version,
        "reportUri": (report_uri or None),
        "checkedAt": checked_at,
        **(extra or {}),
        "featuresTotal": len(result.features),
        "features": [],
    }
    doc = {k: v for k, v in doc.items() if v is not None}
    entries = [feature_entry(f) for f in ordered]
    size = len(json.dumps(doc, separators=(",", ":")).encode())
    kept: list[dict[str, Any]] = []
    for entry in entries:
        extra_bytes = len(json.dumps(entry, separators=(",", ":")).encode()) + 1
        if size + extra_bytes + 40 > limit:  # 40: room for "featuresOmitted"
            break
        kept.append(entry)
        size += extra_bytes
    doc["features"] = kept
    if len(kept) < len(entries):
        doc["featuresOmitted"] = len(entries) - len(kept)
    return doc


def error_document(exc: DriftCheckError) -> dict[str, Any]:
    return {"ok": False, "reason": exc.reason, "message": exc.message[:1000]}


def write_result(doc: dict[str, Any], result_file: str | None) -> None:
    body = json.dumps(doc, separators=(",", ":"))
    target = result_file or os.environ.get("RECOPS_RESULT_FILE")
    if not target and Path("/dev/termination-log").exists():
        target = "/dev/termination-log"
    if not target or target == "-":
        sys.stdout.write(body + "\n")
        sys.stdout.flush()
        return
    path = Path(target)
    if str(path).startswith("/dev/"):
        path.write_text(body)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(body)
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------- config


def _field_path(loc: Sequence[Any]) -> str:
    from pydantic.alias_generators import to_camel

    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + to_camel(str(part))
    return out or "config"


def load_config(source: str) -> DriftCheckConfig:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise InvalidInput(
            f"cannot read --config {source}: {exc.strerror}; pass a JSON file or -", reason="InvalidConfig"
        ) from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"--config is not JSON ({exc}); pass one JSON object", reason="InvalidConfig") from exc
    try:
        return DriftCheckConfig.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = _field_path([p for p in first["loc"] if not str(p).startswith("function-")])
        raise InvalidInput(
            f"config field {where}: {first['msg']} (fix the DriftMonitor spec or the config file)",
            reason="InvalidConfig",
        ) from exc
    except S.DriftSpecError as exc:
        raise InvalidInput(f"config: {exc}", reason="InvalidConfig") from exc


# ---------------------------------------------------------------------------------------------- the run


def load_reference(cfg: DriftCheckConfig) -> tuple[S.ReferenceProfile, str | None, str | None]:
    """(profile, model version, MLflow run id)."""
    from . import sources
    from .profile import load_reference_document, profile_from_manifest

    ref = cfg.reference
    run_id: str | None = None
    version: str | None = None
    try:
        if ref.mlflow is not None:
            resolved = sources.resolve_mlflow_run(
                ref.mlflow.run_id, ref.mlflow.model_name, ref.mlflow.model_version, ref.mlflow.model_alias
            )
            run_id, version = resolved.run_id, resolved.model_version
            body = sources.download_run_artifact(run_id, ref.mlflow.artifact_path)
            profile = load_reference_document(json.loads(body))
        elif ref.profile_uri is not None:
            profile = load_reference_document(json.loads(sources.read_bytes(ref.profile_uri, what="reference profile")))
        else:
            assert ref.snapshot_uri is not None
            _, manifest = sources.resolve_snapshot(ref.snapshot_uri)
            profile = profile_from_manifest(manifest)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"the reference profile is not JSON ({exc}); check reference", reason="InvalidReference"
        ) from exc
    except S.ProfileFormatError as exc:
        raise InvalidInput(f"the reference profile is unusable: {exc}", reason="InvalidReference") from exc
    version = version or profile.model_version
    if not profile.features:
        raise InvalidInput(
            "the reference has no feature statistics to compare against; log a reference profile "
            "with the training run (recops_drift.profile.build_reference_profile)",
            reason="InvalidReference",
        )
    if version and profile.model_version != version:
        profile = S.ReferenceProfile(
            features=profile.features,
            rows=profile.rows,
            model_version=version,
            source=profile.source,
            created_at=profile.created_at,
            items=profile.items,
        )
    return profile, version, run_id


def run_check(cfg: DriftCheckConfig, *, now: datetime | None = None) -> tuple[dict[str, Any], S.DriftResult]:
    from . import sources
    from .report import render_html

    checked = parse_time(cfg.checked_at) if cfg.checked_at else (now or datetime.now(UTC))
    checked_at = checked.strftime("%Y-%m-%dT%H:%M:%SZ")
    profile, version, run_id = load_reference(cfg)
    log("Loaded the reference profile", features=len(profile.features), modelVersion=version, run=run_id)

    current: dict[str, Any] = {}
    samples = 0
    context: dict[str, str] = {"checked at": checked_at, "monitor": f"{cfg.namespace}/{cfg.monitor}"}
    extra: dict[str, Any] = {}
    if cfg.current.payload_logs is not None:
        pl = cfg.current.payload_logs
        end = parse_time(pl.end) if pl.end else checked
        start = end - parse_duration(pl.duration)
        window = sources.read_payload_window(
            pl.uri, start, end, model_version=pl.model_version or version, max_records=pl.max_records
        )
        log(
            "Read payload logs",
            files=window.files,
            records=len(window.records),
            badLines=window.bad_lines,
            otherVersions=window.other_versions,
        )
        lookup = profile.items
        if lookup is None and cfg.reference.item_lookup_uri:
            lookup = sources.item_lookup_from_model_dir(cfg.reference.item_lookup_uri)
        elif lookup is None and cfg.reference.mlflow is not None and cfg.reference.mlflow.model_name and version:
            try:  # the served model's own item ids, categories and popularity
                lookup = sources.item_lookup_from_mlflow_model(cfg.reference.mlflow.model_name, version)
            except DriftCheckError as exc:
                log("Skipped the model's item lookup", level="warning", reason=exc.reason, error=exc.message)
        columns = sources.payload_columns(window.records, lookup)
        if len(window.records) < cfg.min_samples:  # too few requests: their per-item values must not alarm
            columns = {k: (v[:0] if hasattr(v, "shape") else []) for k, v in columns.items()}
        current.update(columns)
        samples = len(window.records)
        context["payload window"] = f"{start:%Y-%m-%dT%H:%M:%SZ} .. {end:%Y-%m-%dT%H:%M:%SZ}"
        extra["windowStart"] = start.strftime("%Y-%m-%dT%H:%M:%SZ")
        if lookup is None:
            log("Skipped output features: the reference has no item lookup", level="warning")
    if cfg.current.snapshot is not None:
        cols, rows, snap_version = sources.read_snapshot_columns(
            cfg.current.snapshot.uri, profile.features, cfg.current.snapshot.tables
        )
        current.update(cols)
        samples = samples or rows
        context["current snapshot"] = snap_version[:24]
        extra["snapshotVersion"] = snap_version[:64]

    spec = cfg.spec()
    if spec.features is None:  # compare what both sides have, plus every feature named in a rule
        names = [n for n in profile.features if n in current]
        names += [r.name for r in cfg.features if r.name not in names]
        spec = S.DriftSpec(
            rules=spec.rules,
            default_rule=spec.default_rule,
            drift_share=spec.drift_share,
            min_samples=spec.min_samples,
            min_reference_samples=spec.min_reference_samples,
            significance=spec.significance,
            features=names,
        )
    try:
        result = S.compare(profile, current, spec, samples=samples)
    except S.DriftSpecError as exc:
        raise InvalidInput(f"config: {exc}", reason="InvalidConfig") from exc
    log(
        "Compared the current window with the reference",
        status=result.status,
        score=result.score_text,
        drifted=",".join(result.drifted_features),
        samples=samples,
    )

    report_uri = write_report(cfg, result, context, run_id, checked_at, render_html)
    doc = result_document(result, checked_at=checked_at, report_uri=report_uri, extra=extra)
    return doc, result


def write_report(
    cfg: DriftCheckConfig,
    result: S.DriftResult,
    context: dict[str, str],
    run_id: str | None,
    checked_at: str,
    render: Any,
) -> str | None:
    from . import sources

    out = cfg.report
    if out.path is None and out.mlflow is None:
        return None
    page = render(result, title=f"Drift report: {cfg.namespace}/{cfg.monitor}", context=context)
    uri: str | None = None
    if out.path is not None:
        uri = sources.write_bytes(out.path, page.encode(), content_type="text/html")
        log("Wrote the drift report", uri=uri)
    if out.mlflow is not None:
        stamp = checked_at.replace(":", "").replace("-", "")
        with tempfile.TemporaryDirectory(prefix="recops-drift-") as tmp:
            local = Path(tmp) / f"drift-report-{cfg.monitor}-{stamp}.html"
            local.write_text(page)
            if out.mlflow.attach_to == "ReferenceRun" and run_id:
                target = run_id
            else:
                target = sources.monitoring_run(
                    out.mlflow.experiment,
                    f"{cfg.monitor}-{stamp}",
                    {
                        "recops.monitor": cfg.monitor,
                        "recops.namespace": cfg.namespace,
                        "recops.referenceRun": run_id or "",
                    },
                )
            mlflow_uri = sources.log_run_artifact(target, local, out.mlflow.artifact_dir)
            if target != run_id:
                sources.finish_run(
                    target,
                    {
                        "drift_share": result.score,
                        "drift_detected": float(result.drifted),
                        "drift_samples": float(result.samples),
                    },
                )
        log("Logged the drift report to MLflow", run=target, artifact=out.mlflow.artifact_dir)
        uri = uri or mlflow_uri
    return uri


def build_profile(snapshot: str, out: str, tables: list[str] | None, sketch_size: int) -> dict[str, Any]:
    """``recops-drift profile``: a reference profile (our format) from a snapshot's Parquet tables."""
    from . import sources
    from .profile import build_reference_profile

    frames, version = sources.read_snapshot_frames(snapshot, tables)
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    profile = build_reference_profile(frames, snapshot_version=version, sketch_size=sketch_size, created_at=created)
    uri = sources.write_bytes(out, profile.dumps().encode(), content_type="application/json")
    log("Wrote the reference profile", uri=uri, features=len(profile.features), snapshotVersion=version[:24])
    return {
        "ok": True,
        "reason": "ProfileWritten",
        "message": f"Wrote a reference profile of {len(profile.features)} features from snapshot {version[:24]}.",
        "profileUri": uri,
        "features": len(profile.features),
        "snapshotVersion": version[:64],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recops-drift", description="Recops drift check")
    parser.add_argument("--version", action="version", version=f"recops-drift {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one drift check")
    run.add_argument("--config", required=True, help="JSON config file, or - for stdin")
    run.add_argument(
        "--result-file",
        default=None,
        help="where the result goes (default: $RECOPS_RESULT_FILE, /dev/termination-log, stdout)",
    )
    prof = sub.add_parser("profile", help="build a reference profile from a feature snapshot")
    prof.add_argument("--snapshot", required=True, help="snapshot or FeaturePipeline output root (local or s3://)")
    prof.add_argument("--out", required=True, help="where the profile JSON goes (local path or s3://bucket/key)")
    prof.add_argument("--tables", default=None, help="comma-separated tables (default: all in the manifest)")
    prof.add_argument("--sketch-size", type=int, default=S.DEFAULT_SKETCH_SIZE)
    prof.add_argument("--result-file", default=None)
    args = parser.parse_args(argv)
    try:
        if args.command == "profile":
            tables = [t for t in args.tables.split(",") if t] if args.tables else None
            doc = build_profile(args.snapshot, args.out, tables, args.sketch_size)
        else:
            cfg = load_config(args.config)
            doc, _ = run_check(cfg)
    except DriftCheckError as exc:
        log("Failed the drift check", level="error", reason=exc.reason, error=exc.message)
        write_result(error_document(exc), args.result_file)
        return exc.exit_code
    except Exception as exc:
        log("Failed the drift check unexpectedly", level="error", error=f"{type(exc).__name__}: {exc}"[:500])
        write_result(
            {
                "ok": False,
                "reason": "Unexpected",
                "message": f"unexpected {type(exc).__name__} in the drift check; see the job log",
            },
            args.result_file,
        )
        return 1
    write_result(doc, args.result_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())

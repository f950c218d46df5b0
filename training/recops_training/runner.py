"""The training job: snapshot -> holdout evaluation (model and popularity baseline) -> MLflow run
-> registered model version -> gated alias promotion. Idempotent on ``runKey``.

Rerun semantics (the job may be run twice, concurrently, or killed midway):

1. the run is looked up by the tag ``recops.runKey``; if it exists and a model version of the
   registered model was made from it, nothing is trained again: its metrics are read back and only
   the (idempotent) promotion step runs;
2. if the run exists without a version (the previous attempt died), that same run is resumed; an
   attempt still alive holds the run's lease (``lease.py``), and the newcomer waits for it instead;
3. the version is registered only after a fresh lookup by run id, and if a concurrent attempt
   registered one in the meantime, every version but the lowest is deleted again (so one run key
   ends with exactly one version).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from . import __version__
from .algorithms import Recommender, build
from .config import TrainConfig
from .data import Snapshot, full_data, item_categories, load_snapshot, temporal_holdout
from .errors import DependencyUnavailable, GateRefused, InvalidInput, TrainingError
from .evaluation import Holdout, evaluate
from .lease import CLAIM_PAUSE_SECONDS, LEASE_TAG, Heartbeat, lease_value, live_holder, new_attempt_id, ttl_seconds
from .logs import log
from .promotion import (
    ChampionScore,
    decide_promotion,
    is_repeat_variant,
    metric_k,
    same_holdout,
    score_champion,
)
from .tracking import (
    RUN_KEY_TAG,
    champion_version,
    check_reachable,
    ensure_experiment,
    find_run,
    find_versions,
    is_connection_error,
    load_model_version,
)

MODEL_ARTIFACT = "model"
RESULT_METRICS = ("hr", "precision", "recall", "ndcg", "map", "coverage", "popularity_bias")


@dataclass
class Outcome:
    """What the job reports (the result JSON) and how it exits."""

    exit_code: int
    result: dict[str, Any] = field(default_factory=dict)


def to_rec_model(
    algo: Recommender,
    X: sp.csr_matrix,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    categories: np.ndarray,
    meta: dict[str, Any],
) -> Any:
    """The fitted algorithm as a ``recops_model.RecModel`` (the served format)."""
    from recops_model import RecModel

    parts = algo._require_fitted()
    return RecModel(
        algorithm=algo.name,
        kind=parts.kind,  # type: ignore[arg-type]
        user_ids=np.asarray(user_ids, dtype=str),
        item_ids=np.asarray(item_ids, dtype=str),
        seen=sp.csr_matrix(X, dtype=np.float32),
        popularity=np.asarray(algo.popularity, dtype=np.float32),
        item_categories=np.asarray(categories, dtype=str),
        user_factors=parts.user_factors,
        item_factors=parts.item_factors,
        similarity=parts.similarity,
        meta={**meta, **parts.meta},
    )


def _fmt(v: float) -> str:
    return f"{v:.4f}"


def result_metrics(metrics: dict[str, float], metric: str, prefix: str = "") -> dict[str, str]:
    """The compact subset that goes into the result (all metrics are in MLflow)."""
    k = metric_k(metric)
    suffix = "_repeat" if is_repeat_variant(metric) else ""
    keys = [f"{m}_at_{k}{suffix}" for m in RESULT_METRICS]
    if metric not in keys:
        keys.insert(0, metric)
    return {key: _fmt(metrics[prefix + key]) for key in keys if prefix + key in metrics}


def reference_profile(
    snap: Snapshot, holdout: Holdout, rec_counts: np.ndarray, k: int, categories: np.ndarray
) -> dict[str, Any]:
    """What DriftMonitor compares live traffic against: the snapshot's own statistics (manifest) plus
    the distribution of the model's outputs on the holdout users."""
    total = float(rec_counts.sum()) or 1.0
    share: dict[str, float] = {}
    for cat in np.unique(categories):
        share[str(cat)] = round(float(rec_counts[categories == cat].sum()) / total, 6)
    pop = holdout.popularity
    rec_pop = np.repeat(pop, rec_counts.astype(np.int64)) if rec_counts.sum() else np.zeros(1)
    m = snap.manifest
    return {
        "kind": "RecopsReferenceProfile",
        "formatVersion": 1,
        "snapshot": {"uri": snap.uri, "version": snap.version, "digest": snap.digest, "granularity": snap.granularity},
        "tables": m.get("tables"),
        "statistics": m.get("statistics") if "statistics" in m else None,
        "predictions": {
            "k": k,
            "users": int(holdout.n_rel_all.astype(bool).sum()),
            "categoryShare": share,
            "recommendedPopularity": {
                "mean": round(float(rec_pop.mean()), 6),
                "quantiles": {str(q): round(float(np.quantile(rec_pop, q)), 6) for q in (0.1, 0.25, 0.5, 0.75, 0.9)},
            },
        },
    }


def _log_dataset(mlflow: Any, snap: Snapshot) -> None:
    """Snapshot lineage: an MLflow dataset input whose digest is the snapshot version (tags as well)."""
    try:
        from mlflow.data.http_dataset_source import HTTPDatasetSource
        from mlflow.data.meta_dataset import MetaDataset

        source = HTTPDatasetSource(url=snap.uri)  # type: ignore[no-untyped-call]
        ds = MetaDataset(  # type: ignore[abstract]
            source=source, name=f"snapshot-{snap.version[:24]}", digest=snap.version[:36]
        )
        mlflow.log_input(ds, context="training")
    except Exception as exc:  # lineage stays in tags even where the dataset API differs
        log("Skipped dataset input", reason=str(exc)[:200])


def _train_and_log(cfg: TrainConfig, mlflow: Any, run_id: str, snap: Snapshot, tmp: Path) -> dict[str, Any]:
    ks = cfg.evaluation.ks
    w = cfg.algorithm.weighting
    t0 = time.perf_counter()
    holdout = temporal_holdout(snap, cfg.evaluation.holdout_days, w)
    log(
        "Split the snapshot",
        cut=holdout.cut,
        users=int(holdout.X_train.shape[0]),
        items=int(holdout.X_train.shape[1]),
        testUsers=int((holdout.n_rel_all > 0).sum()),
    )
    eval_kw: dict[str, Any] = {"ks": ks, "max_users": cfg.evaluation.max_users, "seed": cfg.seed}
    baseline = build("popularity").fit(holdout.X_train)
    baseline_metrics = evaluate(baseline.score_batch, holdout, same_for_all=baseline.popularity, **eval_kw)
    t1 = time.perf_counter()
    algo = build(cfg.algorithm.name, cfg.algorithm.params, seed=cfg.seed)
    algo.fit(holdout.X_train)
    t2 = time.perf_counter()
    k_ref = 10 if 10 in ks else ks[len(ks) // 2]
    rec_counts = np.zeros(holdout.X_train.shape[1], dtype=np.int64)
    same = algo.popularity if algo.kind == "popularity" else None
    metrics = evaluate(algo.score_batch, holdout, counts_out=rec_counts, counts_k=k_ref, same_for_all=same, **eval_kw)
    t3 = time.perf_counter()
    log(
        "Evaluated the model",
        metric=cfg.promotion.metric,
        value=round(metrics[cfg.promotion.metric], 5),
        baseline=round(baseline_metrics[cfg.promotion.metric], 5),
    )
    if cfg.refit == "full":
        X, user_ids, item_ids = full_data(snap, w)
        final = build(cfg.algorithm.name, cfg.algorithm.params, seed=cfg.seed).fit(X)
    else:
        X, user_ids, item_ids, final = holdout.X_train, holdout.user_ids, holdout.item_ids, algo
    t4 = time.perf_counter()
    categories = item_categories(item_ids, snap.items)

    # ---- MLflow: params, metrics, lineage, report, reference profile, model
    mlflow.log_params(
        {
            "algorithm": cfg.algorithm.name,
            "weighting": w,
            **{f"param.{k}": v for k, v in algo.params.model_dump(by_alias=True).items()},
            "holdoutDays": cfg.evaluation.holdout_days,
            "ks": ",".join(map(str, ks)),
            "maxUsers": cfg.evaluation.max_users,
            "refit": cfg.refit,
            "seed": cfg.seed,
            "snapshotVersion": snap.version,
            "holdoutCut": holdout.cut,
            "promotionMetric": cfg.promotion.metric,
            "promotionMargin": cfg.promotion.margin,
        }
    )
    all_metrics = {**metrics, **{f"baseline_{k}": v for k, v in baseline_metrics.items()}}
    all_metrics.update(
        {
            "train_seconds": t2 - t1,
            "eval_seconds": t3 - t2,
            "refit_seconds": t4 - t3,
            "baseline_seconds": t1 - t0,
            "train_users": float(holdout.X_train.shape[0]),
            "train_items": float(holdout.X_train.shape[1]),
            "train_interactions": float(holdout.X_train.nnz),
            "model_users": float(X.shape[0]),
            "model_items": float(X.shape[1]),
        }
    )
    mlflow.log_metrics(all_metrics)
    _log_dataset(mlflow, snap)
    profile = reference_profile(snap, holdout, rec_counts, k_ref, item_categories(holdout.item_ids, snap.items))
    (tmp / "reference_profile.json").write_text(json.dumps(profile, indent=1, default=str))
    mlflow.log_artifact(str(tmp / "reference_profile.json"))
    from .report import write_report

    facts = {
        "algorithm": cfg.algorithm.name,
        "parameters": json.dumps(algo.params.model_dump(by_alias=True)),
        "snapshot": snap.version,
        "holdout cut": holdout.cut,
        "evaluated users (new / repeat)": (
            f"{int(metrics['evaluated_users'])} / {int(metrics['evaluated_users_repeat'])}"
        ),
        "training users x items": (
            f"{holdout.X_train.shape[0]} x {holdout.X_train.shape[1]} ({holdout.X_train.nnz} interactions)"
        ),
        "train seconds": round(t2 - t1, 3),
        "MLflow run": run_id,
    }
    for note in snap.notes:
        facts[f"note {len(facts)}"] = note
    write_report(
        tmp / "report", algorithm=cfg.algorithm.name, metrics=metrics, baseline=baseline_metrics, ks=ks, facts=facts
    )
    mlflow.log_artifacts(str(tmp / "report"), artifact_path="report")

    from recops_model.pyfunc import log_model

    rec_model = to_rec_model(
        final,
        X,
        user_ids,
        item_ids,
        categories,
        meta={"snapshotVersion": snap.version, "runKey": cfg.run_key, "trainedWith": f"recops-training {__version__}"},
    )
    info = log_model(rec_model, MODEL_ARTIFACT)
    if getattr(info, "model_uri", None):
        mlflow.set_tag("recops.modelUri", info.model_uri)
    mlflow.set_tag("recops.stage", "modelLogged")
    log("Logged the model", kind=rec_model.kind, users=rec_model.n_users, items=rec_model.n_items)
    return {
        "metrics": metrics,
        "baseline": baseline_metrics,
        "model_uri": getattr(info, "model_uri", None),
        "holdout": holdout,
    }


def _metrics_from_run(run: Any) -> tuple[dict[str, float], dict[str, float]]:
    m = dict(run.data.metrics)
    baseline = {k[len("baseline_") :]: v for k, v in m.items() if k.startswith("baseline_")}
    own = {k: v for k, v in m.items() if not k.startswith("baseline_")}
    return own, baseline


def _register(client: Any, mlflow: Any, cfg: TrainConfig, run_id: str, model_uri: str | None) -> str:
    """Register the run's model once; return the version."""
    name = cfg.mlflow.registered_model_name
    versions = find_versions(client, name, run_id)
    if versions:
        return str(versions[0].version)
    uri = model_uri or f"runs:/{run_id}/{MODEL_ARTIFACT}"
    mv = mlflow.register_model(uri, name, tags={RUN_KEY_TAG: cfg.run_key})
    versions = find_versions(client, name, run_id)
    if len(versions) > 1:  # a concurrent attempt registered too: keep only the lowest version
        for extra in versions[1:]:
            client.delete_model_version(name, extra.version)
            log("Deleted a duplicate model version", level="warning", version=extra.version)
        return str(versions[0].version)
    return str(mv.version)


def _model_uri_for_run(client: Any, run_id: str) -> str | None:
    """A logged model of an earlier attempt of this run (the attempt died before registering)."""
    try:
        run = client.get_run(run_id)
        if run.data.tags.get("recops.stage") not in ("modelLogged", "registered"):
            return None
        logged = run.data.tags.get("recops.modelUri")
        return logged or f"runs:/{run_id}/{MODEL_ARTIFACT}"
    except Exception:
        return None


def run_training(cfg: TrainConfig) -> Outcome:
    """Run the whole job; raises ``TrainingError`` subclasses for the contract's exit codes."""
    check_reachable()
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    name = cfg.mlflow.registered_model_name
    result: dict[str, Any] = {"modelName": name, "runKey": cfg.run_key}
    attempt, ttl = new_attempt_id(), ttl_seconds()
    heartbeat: Heartbeat | None = None
    try:
        client = MlflowClient()
        exp_id = ensure_experiment(client, cfg.mlflow.experiment_name)
        result["experimentId"] = exp_id
        run = find_run(client, exp_id, cfg.run_key)
        if run is not None:
            run = _hold_run(client, run, attempt, ttl)
            heartbeat = _heartbeat(client, run.info.run_id, attempt, ttl)
        reused = False
        version: str | None = None
        holdout: Holdout | None = None
        if run is not None:
            run_id = run.info.run_id
            versions = find_versions(client, name, run_id)
            if versions:
                version = str(versions[0].version)
                reused = True
                log("Found the run and version of this runKey: skipped training", runId=run_id, version=version)
            else:
                uri = _model_uri_for_run(client, run_id)
                if uri is not None:
                    version = _register(client, mlflow, cfg, run_id, uri)
                    reused = True
                    log("Registered the model an earlier attempt had logged", runId=run_id, version=version)
            metrics, baseline = _metrics_from_run(client.get_run(run_id)) if reused else ({}, {})
            snapshot_version = run.data.tags.get("recops.snapshotVersion", "")
        if version is None:
            snap = load_snapshot(cfg.snapshot.uri, cfg.snapshot.version)
            snapshot_version = snap.version
            log("Loaded the snapshot", version=snap.version, granularity=snap.granularity, rows=len(snap.pairs))
            tags = {
                RUN_KEY_TAG: cfg.run_key,
                LEASE_TAG: lease_value(attempt, time.time()),
                "recops.snapshotVersion": snap.version,
                "recops.snapshotDigest": snap.digest,
                "recops.snapshotUri": snap.uri,
                "recops.algorithm": cfg.algorithm.name,
                **cfg.mlflow.tags,
            }
            run_name = cfg.mlflow.run_name or f"{cfg.algorithm.name}-{cfg.run_key[:40]}"
            kwargs: dict[str, Any] = (
                {"run_id": run.info.run_id} if run is not None else {"experiment_id": exp_id, "run_name": run_name}
            )
            with tempfile.TemporaryDirectory(prefix="recops-train-") as tmpdir, mlflow.start_run(**kwargs) as active:
                run_id = active.info.run_id
                mlflow.set_tags(tags)
                if run is None:
                    # a concurrent attempt may have created its own run for this key: the oldest wins
                    first = find_run(client, exp_id, cfg.run_key)
                    if first is not None and first.info.run_id != run_id:
                        mlflow.set_tag("recops.duplicateOf", first.info.run_id)
                        mlflow.end_run("KILLED")
                        client.delete_run(run_id)
                        raise DependencyUnavailable(
                            f"another attempt (run {first.info.run_id}) is training runKey {cfg.run_key!r}; "
                            "retry later",
                            reason="ConcurrentAttempt",
                        )
                if heartbeat is None:
                    heartbeat = _heartbeat(client, run_id, attempt, ttl)
                log("Started the MLflow run", runId=run_id, resumed=run is not None)
                out = _train_and_log(cfg, mlflow, run_id, snap, Path(tmpdir))
                version = _register(client, mlflow, cfg, run_id, out["model_uri"])
                mlflow.set_tag("recops.stage", "registered")
                mlflow.set_tag("recops.modelVersion", version)
                metrics, baseline, holdout = out["metrics"], out["baseline"], out["holdout"]
            log("Registered the model version", model=name, version=version)
        result.update({"runId": run_id, "modelVersion": version, "snapshotVersion": snapshot_version, "reused": reused})
        return _promote(
            cfg, client, run_id, version, metrics, baseline, result, _holdout_source(cfg, holdout, snapshot_version)
        )
    except MlflowException as exc:
        if is_connection_error(exc):
            raise DependencyUnavailable(
                f"MLflow became unreachable: {str(exc)[:300]}", reason="MLflowUnavailable"
            ) from exc
        raise
    except TrainingError:
        raise
    except Exception as exc:
        if is_connection_error(exc):
            raise DependencyUnavailable(
                f"MLflow became unreachable: {str(exc)[:300]}", reason="MLflowUnavailable"
            ) from exc
        raise
    finally:
        if heartbeat is not None:
            heartbeat.stop(release=True)


WAIT_FOR_OTHER_ATTEMPT_SECONDS = 1800.0


def _heartbeat(client: Any, run_id: str, attempt: str, ttl: float) -> Heartbeat:
    return Heartbeat(lambda value: client.set_tag(run_id, LEASE_TAG, value), attempt, ttl).start()


def _hold_run(client: Any, run: Any, attempt: str, ttl: float) -> Any:
    """Take the lease of a runKey's existing run and return the run read afresh. While another
    attempt holds a live lease, wait for it to finish or go silent (then its work is reused or
    resumed); after ``WAIT_FOR_OTHER_ATTEMPT_SECONDS`` give up with exit 4 (retry later)."""
    run_id = run.info.run_id
    started = time.monotonic()
    waiting_logged = False
    while True:
        holder = live_holder(run.data.tags.get(LEASE_TAG), time.time(), ttl)
        if holder == attempt:
            return run
        if holder is None:
            client.set_tag(run_id, LEASE_TAG, lease_value(attempt, time.time()))
            time.sleep(CLAIM_PAUSE_SECONDS)  # a rival claiming at the same moment: the last writer wins
        else:
            if not waiting_logged:
                log("Waiting: another attempt is training this runKey", runId=run_id, holder=holder)
                waiting_logged = True
            if time.monotonic() - started > WAIT_FOR_OTHER_ATTEMPT_SECONDS:
                raise DependencyUnavailable(
                    f"another attempt ({holder}) has been training runKey {run.data.tags.get(RUN_KEY_TAG)!r} "
                    f"in run {run_id} for over {WAIT_FOR_OTHER_ATTEMPT_SECONDS:.0f} s; retry later",
                    reason="ConcurrentAttempt",
                )
            time.sleep(min(2.0, ttl / 6))
        run = client.get_run(run_id)


CHAMPION_VERSION_TAG = "recops.champion.version"
CHAMPION_BASIS_TAG = "recops.champion.basis"
OVERLAP_METRIC = "champion_holdout_overlap"


def _holdout_source(cfg: TrainConfig, holdout: Holdout | None, snapshot_version: str) -> Callable[[], Holdout]:
    """The run's holdout: the one just evaluated, or (a rerun that skipped training) rebuilt from the
    snapshot version the run trained on."""

    def get() -> Holdout:
        if holdout is not None:
            return holdout
        snap = load_snapshot(cfg.snapshot.uri, snapshot_version or None)
        return temporal_holdout(snap, cfg.evaluation.holdout_days, cfg.algorithm.weighting)

    return get


def _run_or_none(client: Any, run_id: str | None) -> Any | None:
    """The run, or None when it was deleted (a connection error propagates)."""
    if not run_id:
        return None
    try:
        return client.get_run(run_id)
    except Exception as exc:
        if is_connection_error(exc):
            raise
        return None


def _champion_on_holdout(
    cfg: TrainConfig, client: Any, run_id: str, champ: Any, get_holdout: Callable[[], Holdout]
) -> ChampionScore:
    """The champion's metric on this run's holdout (see ``promotion``): logged by an earlier attempt of
    this run for the same champion version, its own run's metric when that run evaluated this very
    holdout, or re-scored from the registered version."""
    metric, version = cfg.promotion.metric, str(champ.version)
    run = client.get_run(run_id)
    if run.data.tags.get(CHAMPION_VERSION_TAG) == version and f"champion_{metric}" in run.data.metrics:
        return ChampionScore(
            version,
            value=float(run.data.metrics[f"champion_{metric}"]),
            basis=run.data.tags.get(CHAMPION_BASIS_TAG, "rescored"),
            overlap=run.data.metrics.get(OVERLAP_METRIC),
        )
    champ_run = _run_or_none(client, champ.run_id)
    if (
        champ_run is not None
        and metric in champ_run.data.metrics
        and same_holdout(champ_run.data.params, run.data.params)
    ):
        score = ChampionScore(version, value=float(champ_run.data.metrics[metric]), basis="sameHoldout")
    else:
        try:
            holdout = get_holdout()
        except InvalidInput as exc:
            return ChampionScore(version, problem="HoldoutUnavailable", detail=exc.message)
        name = cfg.mlflow.registered_model_name
        with tempfile.TemporaryDirectory(prefix="recops-champion-") as tmp:
            score = score_champion(
                version,
                lambda: load_model_version(name, version, Path(tmp)),
                holdout,
                metric,
                cfg.evaluation.max_users,
                cfg.seed,
            )
    client.set_tag(run_id, CHAMPION_VERSION_TAG, version)
    client.set_tag(run_id, CHAMPION_BASIS_TAG, score.basis)
    if score.problem:
        client.set_tag(run_id, "recops.champion.problem", f"{score.problem}: {score.detail}"[:4000])
        log(
            "Could not score the champion", level="warning", version=version, reason=score.problem, message=score.detail
        )
        return score
    assert score.value is not None
    client.log_metric(run_id, f"champion_{metric}", score.value)
    if score.overlap is not None:
        client.log_metric(run_id, OVERLAP_METRIC, score.overlap)
    log("Scored the champion on this holdout", version=version, basis=score.basis, value=round(score.value, 5))
    return score


def _promote(
    cfg: TrainConfig,
    client: Any,
    run_id: str,
    version: str,
    metrics: dict[str, float],
    baseline: dict[str, float],
    result: dict[str, Any],
    get_holdout: Callable[[], Holdout],
) -> Outcome:
    p = cfg.promotion
    metric = p.metric
    name = cfg.mlflow.registered_model_name
    if metric not in metrics or metric not in baseline:
        raise GateRefused(
            f"run {run_id} has no metric {metric!r} logged; cannot decide promotion", reason="MetricMissing"
        )
    champ = champion_version(client, name, p.alias)
    champion: ChampionScore | None = None
    if champ is not None:
        champion = ChampionScore(str(champ.version))
        if p.policy == "ifBetter" and champion.version != str(version):
            champion = _champion_on_holdout(cfg, client, run_id, champ, get_holdout)
    margin, relative = p.margin_value()
    promote, reason, sentence = decide_promotion(
        policy=p.policy,
        metric=metric,
        value=float(metrics[metric]),
        baseline_value=float(baseline[metric]),
        champion=champion,
        margin=margin,
        relative=relative,
        this_version=version,
    )
    if promote and reason != "AlreadyChampion":
        client.set_registered_model_alias(name, p.alias, version)
        log("Moved the alias", alias=p.alias, version=version, reason=reason)
    client.set_tag(run_id, "recops.promotion", f"{reason}: {sentence}"[:4000])
    client.set_model_version_tag(name, version, "recops.promotion", reason)
    result.update(
        {
            "metrics": result_metrics(metrics, metric),
            "baselineMetrics": result_metrics(baseline, metric),
            "promoted": bool(promote),
            "promotionReason": sentence,
            "promotionDecision": reason,
            "alias": p.alias,
            "championVersion": champion.version if champion else None,
            "champion": champion.to_result(metric)
            if champion and (champion.value is not None or champion.problem)
            else None,
        }
    )
    if promote or p.policy == "never":
        result.update(
            ok=True,
            reason="Promoted" if promote else "Registered",
            message=f"Registered {name} version {version}; "
            + ("moved alias " + p.alias if promote else "alias unchanged")
            + f": {sentence}",
        )
        return Outcome(0, result)
    result.update(
        ok=False,
        reason="PromotionRefused",
        message=f"Registered {name} version {version} but did not move alias {p.alias}: {sentence}",
    )
    return Outcome(GateRefused.exit_code, result)

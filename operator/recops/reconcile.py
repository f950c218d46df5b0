"""Level-based, idempotent reconcile per kind: gather -> pure build/decide -> apply -> status.

Called by the kopf handlers in `main.py` on create, update, resume and on a timer, so a deleted or edited
child is restored within one resync interval. Status is written only when it changed; a condition whose
status flips becomes a Kubernetes Event.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from recops import faults, kube, metrics, mlflow_rest
from recops.api.base import Backend
from recops.api.driftmonitor import DriftMonitorSpec, DriftMonitorStatus
from recops.api.featurepipeline import FeaturePipelineSpec, FeaturePipelineStatus
from recops.api.recommenderdeployment import RecommenderDeploymentSpec, RecommenderDeploymentStatus
from recops.api.trainingrun import TrainingRunSpec, TrainingRunStatus
from recops.backends.aws import EcsBackend, SageMakerBackend
from recops.backends.base import (
    BackendUnavailable,
    BatchBackend,
    JobObservation,
    JobRequest,
    ServingBackend,
    ServingRequest,
)
from recops.backends.kubernetes import KubernetesBackend
from recops.backends.local import LocalBackend, MissingSecret
from recops.conditions import Verdict, apply_verdicts, now_rfc3339, status_patch, transitions
from recops.config import Config
from recops.controllers import driftmonitor as dm
from recops.controllers import featurepipeline as fp
from recops.controllers import recommenderdeployment as rd
from recops.controllers import trainingrun as tr
from recops.controllers.common import Owner
from recops.controllers.references import ObjectNeed, SecretNeed, check_objects, check_secrets
from recops.controllers.schedule import due_run_name, request_run_name

RUN_REQUEST_ANNOTATION = "recops.dev/run-requested"
KIND_PLURALS = {"FeaturePipeline": "featurepipelines", "TrainingRun": "trainingruns",
                "RecommenderDeployment": "recommenderdeployments", "DriftMonitor": "driftmonitors"}

EventPoster = Callable[[Mapping[str, Any], str, str, str], None]


@dataclass
class Context:
    """What reconcilers share: settings, backends and the event poster."""

    config: Config
    kubernetes: KubernetesBackend
    local: LocalBackend
    post_event: EventPoster
    logger: logging.Logger
    ecs: EcsBackend | None = None
    sagemaker: SageMakerBackend | None = None
    # Change handlers and resyncs of one object can run concurrently: one lock per object serialises them,
    # and the status last written stands in for the (possibly older) body the second one was given. Re-entrant:
    # a resync reads the object fresh under the lock, then reconciles (main._resync).
    locks: dict[str, threading.RLock] = field(default_factory=dict)
    written: dict[str, dict[str, Any]] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def lock_for(self, uid: str) -> threading.RLock:
        with self._guard:
            return self.locks.setdefault(uid, threading.RLock())

    def forget(self, uid: str) -> None:
        with self._guard:
            self.locks.pop(uid, None)
            self.written.pop(uid, None)

    def backend_verdict(self, backend: str) -> Verdict:
        if backend not in self.config.enabled_backends:
            return Verdict.fail("BackendUnavailable",
                                f"spec.backend: {backend!r} is not enabled in this operator (enabled: "
                                f"{', '.join(sorted(self.config.enabled_backends))}); choose one of those or "
                                f"enable it with RECOPS_BACKENDS")
        missing = self.config.missing_settings(backend)
        if missing:
            return Verdict.fail("BackendUnavailable", f"spec.backend: the {backend} backend is enabled but not "
                                f"configured: set {', '.join(missing)} in the operator's environment (docs/AWS.md)")
        return Verdict.ok("BackendAvailable", f"backend {backend} is available")

    def backend_for(self, name: str) -> Any:
        found = {Backend.KUBERNETES: self.kubernetes, Backend.LOCAL: self.local, Backend.ECS: self.ecs,
                 Backend.SAGEMAKER: self.sagemaker}.get(name)  # type: ignore[call-overload]
        if found is None:
            raise BackendUnavailable(f"spec.backend: {name!r} is not enabled in this operator (RECOPS_BACKENDS)")
        return found

    def batch_backend(self, name: str) -> BatchBackend:
        return self.backend_for(name)  # type: ignore[no-any-return]

    def serving_backend(self, name: str) -> ServingBackend:
        return self.backend_for(name)  # type: ignore[no-any-return]


# -- shared edges ---------------------------------------------------------------------------------------------------

def _secrets_verdict(namespace: str, needs: list[SecretNeed]) -> Verdict:
    found = {n.secret: kube.secret_keys(namespace, n.secret) for n in needs}
    return check_secrets(needs, found)


def _objects(namespace: str, needs: list[ObjectNeed]) -> tuple[Verdict, dict[str, dict[str, Any]]]:
    bodies: dict[str, dict[str, Any]] = {}
    found: dict[tuple[str, str], bool] = {}
    for need in needs:
        obj = kube.get("recops.dev/v1alpha1", need.kind, namespace, need.name)
        found[(need.kind, need.name)] = obj is not None
        if obj is not None:
            bodies[need.kind] = obj
    return check_objects(needs, found), bodies


def write_status(ctx: Context, body: Mapping[str, Any], patch: MutableMapping[str, Any],
                 verdicts: Mapping[str, Verdict], fields: Mapping[str, Any]) -> None:
    """Merge conditions and fields into status; patch only what changed; post Events on transitions."""
    uid = body["metadata"]["uid"]
    current = {**dict(body.get("status") or {}), **ctx.written.get(uid, {})}
    generation = int(body["metadata"].get("generation", 1))
    conditions = apply_verdicts(current.get("conditions"), verdicts, generation, now_rfc3339())
    desired = {**fields, "observedGeneration": generation, "conditions": conditions}
    changes = status_patch(current, desired)
    if not changes:
        return
    # Check the status against its schema here, inside the handler: a status the API server would refuse
    # must fail loudly and be retried, not be lost in kopf's patching after the handler returned.
    STATUS_MODELS[str(body["kind"])].model_validate({**current, **changes})
    patch.setdefault("status", {}).update(changes)
    ctx.written[uid] = {**current, **changes}
    for type_, old, new in transitions(current.get("conditions") or [], conditions):
        verdict = verdicts.get(type_)
        if verdict is None or (old is None and new == "Unknown"):
            continue
        kind = "Warning" if (new == "False" and type_ in ("Ready", "Succeeded", "ModelLoaded")) or \
            (type_ == "DriftDetected" and new == "True") else "Normal"
        ctx.post_event(body, kind, verdict.reason, f"{type_} is {new}: {verdict.message}"[:1000])


def _invalid_spec(ctx: Context, body: Mapping[str, Any], patch: MutableMapping[str, Any], summary: str,
                  exc: ValidationError) -> None:
    first = exc.errors()[0]
    where = "spec." + ".".join(str(p) for p in first["loc"])
    verdict = Verdict.fail("InvalidSpec", f"{where}: {first['msg'].removeprefix('Value error, ')}")
    write_status(ctx, body, patch, {summary: verdict}, {})


def _parse(model: type[Any], body: Mapping[str, Any]) -> Any:
    return model.model_validate(body.get("spec") or {})


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _run_record(name: str, obs: JobObservation) -> dict[str, Any]:
    record: dict[str, Any] = {"name": name, "result": obs.state}
    if obs.result and not obs.result.get("ok") and obs.result.get("reason") == "QualityGateFailed":
        record["result"] = "QualityFailed"
    if obs.started_at:
        record["startedAt"] = obs.started_at
    if obs.finished_at:
        record["finishedAt"] = obs.finished_at
        if obs.started_at:
            record["durationSeconds"] = int((_utc(obs.finished_at) - _utc(obs.started_at)).total_seconds())
    message = (obs.result or {}).get("message") or obs.message
    if message:
        record["message"] = str(message)[:1000]
    if obs.attempts:
        record["attempts"] = obs.attempts
    return record


# -- FeaturePipeline ------------------------------------------------------------------------------------------------

def featurepipeline(ctx: Context, body: Mapping[str, Any], patch: MutableMapping[str, Any]) -> None:
    try:
        spec: FeaturePipelineSpec = _parse(FeaturePipelineSpec, body)
    except ValidationError as exc:
        _invalid_spec(ctx, body, patch, "Ready", exc)
        return
    owner = Owner.from_body("FeaturePipeline", body)
    backend = ctx.backend_verdict(spec.backend)
    refs = _secrets_verdict(owner.namespace, fp.secret_needs(spec))
    status = dict(body.get("status") or {})
    last_obs: tuple[str, JobObservation] | None = None
    children_ready = False
    request_token = (body["metadata"].get("annotations") or {}).get(RUN_REQUEST_ANNOTATION)
    extra: dict[str, Any] = {}
    if backend.is_true and refs.is_true:
        run_base = fp.cronjob_name(owner)
        if spec.backend == Backend.KUBERNETES:
            children = fp.build_children(spec, owner)
            for child in children:
                kube.apply(child)
            children_ready = True
            if request_token and request_token != status.get("lastRunRequest"):
                job = _job_from_cronjob(children[1], request_run_name(run_base, request_token))
                kube.apply(job)
                extra["lastRunRequest"] = request_token
            jobs = kube.list_objects("batch/v1", "Job", owner.namespace,
                                     f"recops.dev/featurepipeline={owner.name}")
            if jobs:
                newest = max(jobs, key=lambda j: j["metadata"]["creationTimestamp"])
                last_obs = (newest["metadata"]["name"], ctx.kubernetes.observe_job(newest))
        else:
            children_ready = True
            try:
                impl = ctx.batch_backend(spec.backend)
                last_name = (status.get("lastRun") or {}).get("name")
                running = bool(last_name and (obs := impl.observe(owner, last_name)) and
                               obs.state in ("Pending", "Running"))
                name, marks = None, {}
                if request_token and request_token != status.get("lastRunRequest"):
                    name, marks = request_run_name(run_base, request_token), {"lastRunRequest": request_token}
                elif not running:
                    created = _utc(body["metadata"]["creationTimestamp"])
                    name = due_run_name(run_base, spec.schedule, dt.datetime.now(dt.UTC), created,
                                        status.get("lastScheduledRun"), spec.suspend)
                    marks = {"lastScheduledRun": name} if name else {}
                if name and not (running and spec.concurrency_policy == "Forbid"):
                    try:
                        impl.submit(JobRequest(owner=owner, name=name, program=fp.PROGRAM,
                                               config=fp.job_config(spec, owner), image=spec.image,
                                               plain_env=fp.plain_env(spec), secret_env=tuple(fp.secret_env(spec)),
                                               resources=spec.resources,
                                               deadline_seconds=spec.active_deadline_seconds,
                                               backoff_limit=spec.backoff_limit))
                        last_name = name
                        extra.update(marks)  # recorded once submitted: a refused submit is tried again
                    except MissingSecret as exc:
                        refs = Verdict.fail("SecretNotFound", str(exc))
                elif name:
                    extra.update(marks)  # skipped (Forbid while running): that slot is done
                if last_name and (obs := impl.observe(owner, last_name)):
                    last_obs = (last_name, obs)
            except BackendUnavailable as exc:
                backend = Verdict.fail("BackendUnavailable", str(exc))
    last_run = _run_record(*last_obs) if last_obs else None
    result = last_obs[1].result if last_obs and last_obs[1].state in ("Succeeded", "Failed") else None
    verdicts, fields = fp.decide(fp.Observed(backend=backend, references=refs, children_ready=children_ready,
                                             last_run=last_run, result=result))
    if "latestSnapshot" not in fields and status.get("latestSnapshot"):
        fields["latestSnapshot"] = status["latestSnapshot"]  # a failed run keeps the last good snapshot
    write_status(ctx, body, patch, verdicts, {**fields, **extra})


def _job_from_cronjob(cronjob: Mapping[str, Any], name: str) -> dict[str, Any]:
    template = cronjob["spec"]["jobTemplate"]
    meta = dict(cronjob["metadata"])
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {**{k: meta[k] for k in ("namespace", "ownerReferences")}, "name": name,
                         "labels": dict(template["metadata"]["labels"]),
                         "annotations": dict(template["metadata"].get("annotations") or {})},
            "spec": template["spec"]}


# -- TrainingRun ----------------------------------------------------------------------------------------------------

def trainingrun(ctx: Context, body: Mapping[str, Any], patch: MutableMapping[str, Any]) -> None:
    try:
        spec: TrainingRunSpec = _parse(TrainingRunSpec, body)
    except ValidationError as exc:
        _invalid_spec(ctx, body, patch, "Succeeded", exc)
        return
    owner = Owner.from_body("TrainingRun", body)
    status = dict(body.get("status") or {})
    if _finished(status, "Succeeded"):
        return  # a finished run is a record: nothing to reconcile
    backend = ctx.backend_verdict(spec.backend)
    objects, found = _objects(owner.namespace, tr.object_needs(spec))
    secrets = _secrets_verdict(owner.namespace, tr.secret_needs(spec))
    refs = objects if not objects.is_true else secrets
    snapshot, snapshot_uri = Verdict.unknown("NotResolved"), None
    job_state, result, job_message, attempts = None, None, "", None
    name = tr.job_name(owner)
    fields: dict[str, Any] = {}
    if backend.is_true and refs.is_true:
        pipeline = found.get("FeaturePipeline")
        snapshot, snapshot_uri = tr.resolve_snapshot(spec, (pipeline or {}).get("status"))
        if status.get("snapshotUri"):
            snapshot, snapshot_uri = Verdict.ok("SnapshotResolved"), status["snapshotUri"]
        if snapshot.is_true and snapshot_uri:
            try:
                mlflow_rest.check(spec.mlflow.tracking_uri, ctx.config.http_timeout_seconds)
            except mlflow_rest.MLflowUnavailable as exc:
                snapshot = Verdict.unknown("MLflowUnavailable", f"spec.mlflow.trackingUri: {exc}; retrying")
        if snapshot.is_true and snapshot_uri:
            fields["snapshotUri"] = snapshot_uri
            fields["jobName"] = name
            pipeline_spec = (pipeline or {}).get("spec")
            env, secrets = tr.snapshot_access(spec, pipeline_spec)
            obs = None
            try:
                backend_impl = ctx.batch_backend(spec.backend)
                try:
                    backend_impl.submit(JobRequest(
                        owner=owner, name=name, program=tr.PROGRAM, config=tr.job_config(spec, owner, snapshot_uri),
                        image=spec.image, plain_env=env, secret_env=tuple(secrets),
                        children=tuple(tr.build_children(spec, owner, snapshot_uri, pipeline_spec)),
                        resources=spec.resources, deadline_seconds=spec.active_deadline_seconds,
                        backoff_limit=spec.backoff_limit))
                except MissingSecret as exc:
                    refs = Verdict.fail("SecretNotFound", str(exc))
                obs = backend_impl.observe(owner, name)
            except BackendUnavailable as exc:
                backend = Verdict.fail("BackendUnavailable", str(exc))
            if obs:
                job_state, result, job_message, attempts = obs.state, obs.result, obs.message, obs.attempts
                if obs.started_at:
                    fields["startedAt"] = obs.started_at
                if obs.finished_at:
                    fields["completedAt"] = obs.finished_at
    verdicts, decided = tr.decide(tr.Observed(backend=backend, references=refs, snapshot=snapshot,
                                              job_state=job_state, result=result, job_message=job_message,
                                              attempts=attempts))
    run = decided.get("mlflowRun")
    if run and run.get("experimentId") and not run.get("url"):
        run["url"] = f"{spec.mlflow.tracking_uri.rstrip('/')}/#/experiments/{run['experimentId']}/runs/{run['runId']}"
    write_status(ctx, body, patch, verdicts, {**fields, **decided})


def _finished(status: Mapping[str, Any], type_: str) -> bool:
    for cond in status.get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") in ("True", "False") and \
                cond.get("reason") not in ("InvalidSpec", "BackendUnavailable"):
            return True
    return False


# -- RecommenderDeployment ------------------------------------------------------------------------------------------

def recommenderdeployment(ctx: Context, body: Mapping[str, Any], patch: MutableMapping[str, Any]) -> None:
    try:
        spec: RecommenderDeploymentSpec = _parse(RecommenderDeploymentSpec, body)
    except ValidationError as exc:
        _invalid_spec(ctx, body, patch, "Ready", exc)
        return
    owner = Owner.from_body("RecommenderDeployment", body)
    backend = ctx.backend_verdict(spec.backend)
    refs = _secrets_verdict(owner.namespace, rd.secret_needs(spec))
    model = Verdict.unknown("Pending", "no replica has loaded the model yet")
    fields: dict[str, Any] = {}
    desired_version = None
    if backend.is_true and refs.is_true:
        try:
            desired_version = (spec.model.version or mlflow_rest.version_for_alias(
                spec.model.tracking_uri, spec.model.name, spec.model.alias or "", ctx.config.http_timeout_seconds))
            if desired_version is None:
                model = Verdict.fail("ModelNotFound", f"spec.model: no version of {spec.model.name!r} has alias "
                                     f"{spec.model.alias!r} in MLflow yet; promote one with a TrainingRun")
        except mlflow_rest.MLflowUnavailable as exc:
            model = Verdict.unknown("MLflowUnavailable", f"spec.model.trackingUri: {exc}")
        if desired_version:
            fields["desiredVersion"] = desired_version
    obs = None
    selector = ",".join(f"{k}={v}" for k, v in sorted(rd.selector_labels(owner, rd.COMPONENT).items()))
    if backend.is_true and refs.is_true and desired_version:
        env = rd.server_env(spec, owner)
        if spec.backend == Backend.KUBERNETES:
            children = rd.build_children(spec, owner, monitoring_crds=kube.has_kind("monitoring.coreos.com/v1",
                                                                                    "ServiceMonitor"))
            _pin_version(children[0], desired_version)
            for child in children:
                kube.apply(child)
            obs = ctx.kubernetes.observe_serving(owner, owner.name)
            if obs:
                complete = obs.updated_replicas >= obs.desired_replicas and obs.ready_replicas >= 1
                obs = obs.__class__(**{**obs.__dict__, "url": f"http://{rd.service_name(spec, owner)}."
                                                              f"{owner.namespace}.svc",
                                       "served_version": desired_version if complete else
                                       (body.get("status") or {}).get("servedVersion"),
                                       "model_loaded": obs.ready_replicas >= 1})
        else:
            replicas = spec.replicas if spec.autoscaling is None else spec.autoscaling.min_replicas
            if spec.backend == Backend.LOCAL:
                replicas = min(replicas, 1)  # one local process at most
            try:
                impl = ctx.serving_backend(spec.backend)
                try:
                    impl.apply(ServingRequest(owner=owner, name=f"serve-{owner.name}", env=env,
                                              secret_env=tuple(rd.secret_env(spec)), replicas=replicas,
                                              port=spec.port, image=spec.image, resources=spec.resources,
                                              version=desired_version))
                except MissingSecret as exc:
                    refs = Verdict.fail("SecretNotFound", str(exc))
                except BackendUnavailable as exc:  # still observe: what runs keeps serving
                    backend = Verdict.fail("BackendUnavailable", str(exc))
                obs = impl.observe_serving(owner, f"serve-{owner.name}", desired_replicas=replicas)
            except BackendUnavailable as exc:
                backend = Verdict.fail("BackendUnavailable", str(exc))
    if obs is not None:
        if obs.model_loaded:
            model = Verdict.ok("ModelVerified", f"serving version {obs.served_version or desired_version}")
        elif obs.message:
            model = Verdict.fail("ModelNotLoaded", obs.message)
    desired_replicas = obs.desired_replicas if obs else (spec.replicas if spec.autoscaling is None else 0)
    verdicts, decided = rd.decide(rd.Observed(
        backend=backend, references=refs, desired_replicas=desired_replicas,
        replicas=obs.replicas if obs else 0, ready_replicas=obs.ready_replicas if obs else 0,
        updated_replicas=obs.updated_replicas if obs else 0, served_version=obs.served_version if obs else None,
        model_loaded=model, url=obs.url if obs else None, selector=selector))
    write_status(ctx, body, patch, verdicts, {**fields, **decided})


def _pin_version(deployment: dict[str, Any], version: str) -> None:
    """Roll out when the alias moves: the resolved version is part of the pod template."""
    template = deployment["spec"]["template"]
    template["metadata"].setdefault("annotations", {})["recops.dev/model-version"] = version
    container = template["spec"]["containers"][0]
    container["env"].append({"name": "RECOPS_MODEL_VERSION", "value": version})


# -- DriftMonitor ---------------------------------------------------------------------------------------------------

def driftmonitor(ctx: Context, body: Mapping[str, Any], patch: MutableMapping[str, Any]) -> None:
    try:
        spec: DriftMonitorSpec = _parse(DriftMonitorSpec, body)
    except ValidationError as exc:
        _invalid_spec(ctx, body, patch, "Ready", exc)
        return
    owner = Owner.from_body("DriftMonitor", body)
    status = dict(body.get("status") or {})
    backend = ctx.backend_verdict(spec.backend)
    refs, found = _objects(owner.namespace, dm.object_needs(spec))
    fields: dict[str, Any] = {}
    waiting: Verdict | None = None
    result: Mapping[str, Any] | None = None
    if backend.is_true and refs.is_true:
        for child in dm.build_children(spec, owner, monitoring_crds=kube.has_kind("monitoring.coreos.com/v1",
                                                                                  "PrometheusRule")):
            kube.apply(child)
        deployment = found["RecommenderDeployment"]
        pipeline = found.get("FeaturePipeline")
        target = dm.Target(deployment_spec=deployment.get("spec") or {},
                           served_version=(deployment.get("status") or {}).get("servedVersion"),
                           pipeline_spec=(pipeline or {}).get("spec"))
        config = dm.check_config(spec, owner, target)
        if config is None:
            waiting = Verdict.unknown("WaitingForReference", "the target serves no model version yet, or it has no "
                                      "payload logging and no FeaturePipeline to read the current window from")
        else:
            name, extra = _due_check(spec, owner, body, status)
            fields.update(extra)
            last = status.get("lastCheck")
            backend_impl = ctx.batch_backend(spec.backend)
            if name:
                env, secrets = dm.check_env(target)
                try:
                    backend_impl.submit(JobRequest(owner=owner, name=name, program=dm.PROGRAM, config=config,
                                                   image=dm.DRIFT_IMAGE, plain_env=env, secret_env=tuple(secrets),
                                                   children=tuple(dm.check_children(owner, name, config, env,
                                                                                     secrets)),
                                                   backoff_limit=dm.CHECK_BACKOFF_LIMIT))
                    last = name
                    fields["lastCheck"] = name
                except MissingSecret as exc:
                    refs = Verdict.fail("SecretNotFound", str(exc))
            obs = backend_impl.observe(owner, last) if last else None
            if obs and obs.state in ("Succeeded", "Failed"):
                result = obs.result or {"ok": False, "reason": "CheckFailed",
                                        "message": obs.message or "the drift check failed without a result"}
                fields["referenceVersion"] = target.served_version
                export_drift_metrics(owner, result)
                if result.get("drifted"):
                    fields.update(_maybe_retrain(ctx, spec, owner, status, str(last), pipeline))
            elif status.get("lastCheckTime"):
                result = None  # the previous check's status fields stay as they are
    verdicts, decided = dm.decide(dm.Observed(backend=backend, references=refs, result=result, waiting=waiting))
    write_status(ctx, body, patch, verdicts, {**decided, **fields})


def _due_check(spec: DriftMonitorSpec, owner: Owner, body: Mapping[str, Any], status: Mapping[str, Any]
               ) -> tuple[str | None, dict[str, Any]]:
    """The check that should run now (scheduled or requested by annotation), if any."""
    base = dm.check_base_name(owner)
    token = (body["metadata"].get("annotations") or {}).get(RUN_REQUEST_ANNOTATION)
    if token and token != status.get("lastRunRequest"):
        return request_run_name(base, token), {"lastRunRequest": token}
    created = _utc(body["metadata"]["creationTimestamp"])
    name = due_run_name(base, spec.schedule, dt.datetime.now(dt.UTC), created, status.get("lastScheduledCheck"),
                        False)
    return name, ({"lastScheduledCheck": name} if name else {})


def _maybe_retrain(ctx: Context, spec: DriftMonitorSpec, owner: Owner, status: Mapping[str, Any], check: str,
                   pipeline: Mapping[str, Any] | None) -> dict[str, Any]:
    """Start (at most) one retraining for a drifted check, after refreshing features when asked."""
    runs = list(status.get("retrainingRuns") or [])
    if any(r.get("check") == check for r in runs):
        return {}
    started = [_utc(r["createdAt"]) for r in runs if r.get("createdAt")]
    allowed = dm.retrain_verdict(spec, dt.datetime.now(dt.UTC), started)
    if not allowed.is_true:
        return {"retrainingBlocked": allowed.message}
    if spec.on_drift.refresh_features == "Enabled" and pipeline is not None:
        pipeline_status = pipeline.get("status") or {}
        if pipeline_status.get("lastRunRequest") != check:
            kube.patch_annotations("recops.dev/v1alpha1", "FeaturePipeline", owner.namespace,
                                   pipeline["metadata"]["name"], {RUN_REQUEST_ANNOTATION: check})
            return {"retrainingBlocked": "waiting for the FeaturePipeline to refresh the features"}
        if (pipeline_status.get("lastRun") or {}).get("result") in ("Running", "Pending", None):
            return {"retrainingBlocked": "waiting for the FeaturePipeline to refresh the features"}
    run = dm.retraining_run(spec, owner, check)
    kube.create_if_absent(run)
    ctx.post_event({"apiVersion": "recops.dev/v1alpha1", "kind": "DriftMonitor",
                    "metadata": {"name": owner.name, "namespace": owner.namespace, "uid": owner.uid}},
                   "Normal", "RetrainingStarted", f"started TrainingRun {run['metadata']['name']} after drift")
    record = {"name": run["metadata"]["name"], "createdAt": now_rfc3339(), "check": check}
    return {"retrainingRuns": [*runs, record][-20:], "retrainingBlocked": None}


def export_drift_metrics(owner: Owner, result: Mapping[str, Any]) -> None:
    labels = {"namespace": owner.namespace, "monitor": owner.name}
    metrics.DRIFT_DETECTED.labels(**labels).set(1 if result.get("drifted") else 0)
    if result.get("samples") is not None:
        metrics.DRIFT_SAMPLES.labels(**labels).set(float(result["samples"]))
    metrics.DRIFT_LAST_CHECK.labels(**labels).set(dt.datetime.now(dt.UTC).timestamp())
    for feature in result.get("features") or []:
        try:
            score = float(feature.get("score"))
        except (TypeError, ValueError):
            continue
        metrics.DRIFT_SCORE.labels(**labels, feature=str(feature.get("name")),
                                   method=str(feature.get("method"))).set(score)


STATUS_MODELS = {"FeaturePipeline": FeaturePipelineStatus, "TrainingRun": TrainingRunStatus,
                 "RecommenderDeployment": RecommenderDeploymentStatus, "DriftMonitor": DriftMonitorStatus}

Reconciler = Callable[[Context, Mapping[str, Any], MutableMapping[str, Any]], None]


def run(ctx: Context, plural: str, body: Mapping[str, Any], patch: MutableMapping[str, Any]) -> None:
    """One reconcile of one object, serialised per object."""
    kind = next(k for k, p in KIND_PLURALS.items() if p == plural)
    ctx.logger.debug("Reconciling %s %s/%s.", kind, body["metadata"].get("namespace"), body["metadata"]["name"])
    with ctx.lock_for(body["metadata"]["uid"]):
        faults.status_written(ctx.written.get(body["metadata"]["uid"]), body.get("status"))  # after a status write
        try:
            RECONCILERS[plural](ctx, body, patch)
        except Exception:
            metrics.RECONCILES.labels(kind=kind, outcome="error").inc()
            raise
        metrics.RECONCILES.labels(kind=kind, outcome="ok").inc()


RECONCILERS: dict[str, Reconciler] = {
    "featurepipelines": featurepipeline,
    "trainingruns": trainingrun,
    "recommenderdeployments": recommenderdeployment,
    "driftmonitors": driftmonitor,
}


def cleanup(ctx: Context, plural: str, body: Mapping[str, Any]) -> None:
    """On delete: stop local processes and remove AWS resources; cluster children go with their owner references.

    Under the object's lock: a resync that read the object just before its deletion may still be creating
    what this removes (an ECS service created after the cleanup looked for it was left behind). A failing
    AWS call raises, so kopf retries and the finalizer stays until the cleanup is done.
    """
    uid = body["metadata"]["uid"]
    with ctx.lock_for(uid):
        _cleanup(ctx, plural, body)
    ctx.forget(uid)


def _cleanup(ctx: Context, plural: str, body: Mapping[str, Any]) -> None:
    kind = next(k for k, p in KIND_PLURALS.items() if p == plural)
    owner = Owner.from_body(kind, body)
    backend = (body.get("spec") or {}).get("backend") or Backend.KUBERNETES
    if backend == Backend.KUBERNETES:
        return
    if not (verdict := ctx.backend_verdict(backend)).is_true:  # this operator cannot have started anything there
        ctx.logger.warning("Skipped the %s cleanup of %s %s/%s: the backend is not enabled or not configured in this "
                           "operator.", backend, kind, owner.namespace, owner.name)
        # The finalizer lets go (nothing would ever clean up here), but the user is told what was not done.
        ctx.post_event(body, "Warning", "CleanupSkipped",
                       f"nothing on the {backend} backend could be cleaned up because this operator has that backend "
                       f"unconfigured ({verdict.message}); remove anything an earlier operator ran there by hand"
                       [:1000])
        return
    impl = ctx.backend_for(backend)
    if plural == "recommenderdeployments":
        impl.delete(owner, f"serve-{owner.name}")
        return
    if plural == "trainingruns":
        impl.cancel(owner, tr.job_name(owner))
    elif plural == "featurepipelines":
        last = ((body.get("status") or {}).get("lastRun") or {}).get("name")
        if last:
            impl.cancel(owner, last)
    impl.release(owner)

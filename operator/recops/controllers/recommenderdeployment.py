"""RecommenderDeployment: desired serving children and status, as pure functions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from recops.api.base import Toggle
from recops.api.recommenderdeployment import RecommenderDeploymentSpec
from recops.conditions import Verdict
from recops.controllers.common import (
    CONTAINER_SECURITY_CONTEXT,
    POD_SECURITY_CONTEXT,
    Owner,
    SecretEnv,
    child_meta,
    resources,
    s3_env,
    selector_labels,
)
from recops.controllers.references import SecretNeed

COMPONENT = "recops-model-server"
PROGRAM = "recops-serve"


def service_name(spec: RecommenderDeploymentSpec, owner: Owner) -> str:
    return spec.service_name or owner.name


def model_uri(spec: RecommenderDeploymentSpec) -> str:
    ref = spec.model
    return f"models:/{ref.name}@{ref.alias}" if ref.alias else f"models:/{ref.name}/{ref.version}"


def secret_needs(spec: RecommenderDeploymentSpec) -> list[SecretNeed]:
    needs = []
    if spec.model.token_secret_ref:
        ref = spec.model.token_secret_ref
        needs.append(SecretNeed("spec.model.tokenSecretRef", ref.name, ref.key))
    if spec.payload_logging and spec.payload_logging.s3.credentials_secret_ref:
        name = spec.payload_logging.s3.credentials_secret_ref.name
        needs += [SecretNeed("spec.payloadLogging.s3.credentialsSecretRef", name, k)
                  for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
    return needs


def secret_env(spec: RecommenderDeploymentSpec) -> list[SecretEnv]:
    env = []
    if spec.model.token_secret_ref:
        ref = spec.model.token_secret_ref
        env.append(SecretEnv("MLFLOW_TRACKING_TOKEN", ref.name, ref.key))
    if spec.payload_logging and spec.payload_logging.s3.credentials_secret_ref:
        name = spec.payload_logging.s3.credentials_secret_ref.name
        env += [SecretEnv(k, name, k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
    return env


def server_env(spec: RecommenderDeploymentSpec, owner: Owner) -> dict[str, str]:
    """The model server's settings (env prefix RECOPS_, see model-server/)."""
    env = {
        "MLFLOW_TRACKING_URI": spec.model.tracking_uri,
        "RECOPS_MODEL_URI": model_uri(spec),
        "RECOPS_DEPLOYMENT": f"{owner.namespace}/{owner.name}",
        "RECOPS_DEFAULT_K": str(spec.serving.default_k),
        "RECOPS_MAX_K": str(spec.serving.max_k),
        "RECOPS_MAX_CONCURRENCY": str(spec.serving.max_concurrency),
        "RECOPS_RELOAD_INTERVAL_SECONDS": str(spec.serving.reload_interval_seconds),
        "RECOPS_PORT": str(spec.port),
    }
    if spec.payload_logging:
        env["RECOPS_PAYLOAD_LOG_URI"] = spec.payload_logging.uri
        env["RECOPS_PAYLOAD_SAMPLE_PERCENT"] = str(spec.payload_logging.sample_percent)
        env.update(s3_env(spec.payload_logging.s3.endpoint_url, spec.payload_logging.s3.region))
    return env


def build_deployment(spec: RecommenderDeploymentSpec, owner: Owner) -> dict[str, Any]:
    labels = selector_labels(owner, COMPONENT)
    meta = child_meta(owner, owner.name, COMPONENT)
    env = [{"name": k, "value": v} for k, v in sorted(server_env(spec, owner).items())]
    env += [s.as_env_var() for s in secret_env(spec)]
    probe_port = {"port": "http"}
    container = {
        "name": "server",
        "image": spec.image,
        "command": [PROGRAM],
        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        "env": env,
        "resources": resources(spec.resources),
        "securityContext": CONTAINER_SECURITY_CONTEXT,
        "readinessProbe": {"httpGet": {"path": "/readyz", **probe_port}, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/healthz", **probe_port}, "periodSeconds": 10,
                          "failureThreshold": 6},
        "startupProbe": {"httpGet": {"path": "/healthz", **probe_port}, "periodSeconds": 2,
                         "failureThreshold": 150},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 (an emptyDir)
    }
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "minReadySeconds": 5,
            "revisionHistoryLimit": 5,
            "template": {
                "metadata": {"labels": dict(meta["labels"]),
                             "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(spec.port)}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": POD_SECURITY_CONTEXT,
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}}],
                },
            },
        },
    }
    if spec.autoscaling is None:
        deployment["spec"]["replicas"] = spec.replicas
    return deployment


def build_service(spec: RecommenderDeploymentSpec, owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_meta(owner, service_name(spec, owner), COMPONENT),
        "spec": {"selector": selector_labels(owner, COMPONENT),
                 "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]},
    }


def build_pdb(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": child_meta(owner, owner.name, COMPONENT),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(owner, COMPONENT)}},
    }


def build_hpa(spec: RecommenderDeploymentSpec, owner: Owner) -> dict[str, Any] | None:
    if spec.autoscaling is None:
        return None
    auto = spec.autoscaling
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": child_meta(owner, owner.name, COMPONENT),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": owner.name},
            "minReplicas": auto.min_replicas,
            "maxReplicas": auto.max_replicas,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": auto.target_cpu_utilization_percent}}}],
        },
    }


def build_service_monitor(spec: RecommenderDeploymentSpec, owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": child_meta(owner, owner.name, COMPONENT),
        "spec": {
            "selector": {"matchLabels": selector_labels(owner, COMPONENT)},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}],
        },
    }


def alert_rules(spec: RecommenderDeploymentSpec, owner: Owner) -> list[dict[str, Any]]:
    """Serving alerts on the model server's metrics, scoped to this deployment's Service."""
    mon = spec.monitoring
    # The ServiceMonitor's targets carry the namespace and service labels.
    sel = f'namespace="{owner.namespace}",service="{service_name(spec, owner)}"'
    ann = {"runbook_url": "https://recops.dev/runbooks/serving"}
    return [
        {"alert": "RecopsServingLatencyHigh",
         "expr": f"histogram_quantile(0.99, sum by (le) (rate(recops_request_duration_seconds_bucket{{{sel}}}[5m])))"
                 f" > {mon.latency_p99_threshold_ms / 1000}",
         "for": "10m", "labels": {"severity": "warning"},
         "annotations": {**ann, "summary": f"p99 latency of {owner.name} above {mon.latency_p99_threshold_ms} ms",
                         "description": "The model server's 99th percentile latency has been above the threshold "
                                        "for 10 minutes: check CPU saturation, replicas and the model size."}},
        {"alert": "RecopsServingErrorRateHigh",
         "expr": f"100 * sum(rate(recops_requests_total{{{sel},status=~\"5..\"}}[5m])) / "
                 f"sum(rate(recops_requests_total{{{sel}}}[5m])) > {mon.error_rate_threshold_percent}",
         "for": "5m", "labels": {"severity": "critical"},
         "annotations": {**ann, "summary": f"5xx rate of {owner.name} above {mon.error_rate_threshold_percent}%",
                         "description": "More requests than the threshold fail with a server error."}},
        {"alert": "RecopsServingFallbackRateHigh",
         "expr": f"100 * sum(rate(recops_fallback_recommendations_total{{{sel}}}[15m])) / "
                 f"sum(rate(recops_recommendations_total{{{sel}}}[15m])) > {mon.fallback_rate_threshold_percent}",
         "for": "15m", "labels": {"severity": "warning"},
         "annotations": {**ann, "summary": f"cold-start fallbacks of {owner.name} above "
                                           f"{mon.fallback_rate_threshold_percent}%",
                         "description": "Most requests are for users the model does not know: retrain on "
                                        "fresher features."}},
        {"alert": "RecopsModelNotReady",
         "expr": f"max(recops_model_ready{{{sel}}}) == 0 or absent(recops_model_ready{{{sel}}})",
         "for": "5m", "labels": {"severity": "critical"},
         "annotations": {**ann, "summary": f"{owner.name} has no verified model loaded",
                         "description": "The server could not load or verify the registered model version."}},
    ]


def build_prometheus_rule(spec: RecommenderDeploymentSpec, owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": child_meta(owner, owner.name, COMPONENT),
        "spec": {"groups": [{"name": f"recops-serving-{owner.namespace}-{owner.name}",
                             "rules": alert_rules(spec, owner)}]},
    }


def build_children(spec: RecommenderDeploymentSpec, owner: Owner, *, monitoring_crds: bool
                   ) -> list[dict[str, Any]]:
    """Desired children on the kubernetes backend."""
    children = [build_deployment(spec, owner), build_service(spec, owner)]
    if spec.replicas > 1 or spec.autoscaling is not None:
        children.append(build_pdb(owner))
    hpa = build_hpa(spec, owner)
    if hpa:
        children.append(hpa)
    if monitoring_crds and spec.monitoring.service_monitor == Toggle.ENABLED:
        children.append(build_service_monitor(spec, owner))
    if monitoring_crds and spec.monitoring.alert_rules == Toggle.ENABLED:
        children.append(build_prometheus_rule(spec, owner))
    return children


@dataclass(frozen=True)
class Observed:
    backend: Verdict
    references: Verdict
    desired_replicas: int
    replicas: int
    ready_replicas: int
    updated_replicas: int
    served_version: str | None
    model_loaded: Verdict
    url: str | None
    selector: str


def decide(observed: Observed) -> tuple[dict[str, Verdict], dict[str, Any]]:
    status: dict[str, Any] = {
        "replicas": observed.replicas,
        "readyReplicas": observed.ready_replicas,
        "ready": f"{observed.ready_replicas}/{observed.desired_replicas}",
        "selector": observed.selector,
    }
    if observed.url:
        status["url"] = observed.url
    if observed.served_version:
        status["servedVersion"] = observed.served_version
    rolling = observed.updated_replicas < observed.desired_replicas or observed.replicas > observed.desired_replicas
    progressing = (Verdict.ok("RollingOut", "a new revision is rolling out") if rolling
                   else Verdict.fail("RolloutComplete", "every replica runs the desired revision"))
    if not observed.backend.is_true:
        ready = observed.backend
    elif not observed.references.is_true:
        ready = observed.references
    elif observed.served_version is None and not observed.model_loaded.is_true and observed.ready_replicas == 0:
        ready = (observed.model_loaded if observed.model_loaded.status == "False"
                 else Verdict.unknown(observed.model_loaded.reason, observed.model_loaded.message))
    elif observed.desired_replicas == 0:
        ready = Verdict.ok("ScaledToZero", "scaled to zero replicas")
    elif observed.ready_replicas < 1:
        ready = Verdict.fail("NoReadyReplicas", "no replica is ready yet")
    elif not observed.model_loaded.is_true:
        ready = observed.model_loaded
    else:
        ready = Verdict.ok("Serving", f"{observed.ready_replicas}/{observed.desired_replicas} replicas ready")
    return {"Ready": ready, "ModelLoaded": observed.model_loaded, "Progressing": progressing}, status

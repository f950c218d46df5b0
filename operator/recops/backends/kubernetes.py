"""The default backend: Jobs and Deployments in the cluster, applied with server-side apply."""

from __future__ import annotations

import json
from typing import Any

from recops import kube
from recops.backends.base import JobObservation, JobRequest, ServingObservation, ServingRequest
from recops.controllers.common import Owner
from recops.faults import crash_point


def _condition_time(obj: dict[str, Any], type_: str) -> str | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return str(cond.get("lastTransitionTime") or "") or None
    return None


def parse_result(message: str) -> dict[str, Any] | None:
    """A job program's result document from its termination message (see docs/CONTRACTS.md)."""
    try:
        value = json.loads(message)
    except (ValueError, TypeError):
        return None
    return value if isinstance(value, dict) else None


class KubernetesBackend:
    name = "kubernetes"

    def submit(self, request: JobRequest) -> None:
        for child in request.children:
            kube.apply(child)
        crash_point("job-submitted")

    def observe(self, owner: Owner, name: str) -> JobObservation | None:
        job = kube.get("batch/v1", "Job", owner.namespace, name)
        if job is None:
            return None
        return self.observe_job(job)

    def observe_job(self, job: dict[str, Any]) -> JobObservation:
        status = job.get("status") or {}
        started = status.get("startTime")
        meta = job["metadata"]
        messages = kube.pod_termination_messages(meta["namespace"], f"job-name={meta['name']}")
        result = next((r for _, _, m in messages if (r := parse_result(m)) is not None), None)
        # Pods the Job ran: each failed one was an attempt (retried up to spec.backoffLimit).
        attempts = sum(int(status.get(k) or 0) for k in ("failed", "succeeded", "active")) or None
        if _condition_time(job, "Complete") or _condition_time(job, "SuccessCriteriaMet"):
            return JobObservation("Succeeded", started, status.get("completionTime") or
                                  _condition_time(job, "Complete"), result, attempts=attempts)
        failed_at = _condition_time(job, "Failed")
        if failed_at:
            reason = next((c.get("message", "") for c in status.get("conditions") or []
                           if c.get("type") == "Failed"), "")
            return JobObservation("Failed", started, failed_at, result, reason, attempts=attempts)
        return JobObservation("Running" if status.get("active") else "Pending", started, None, result,
                              attempts=attempts)

    def cancel(self, owner: Owner, name: str) -> None:
        kube.delete("batch/v1", "Job", owner.namespace, name)

    def release(self, owner: Owner) -> None:
        """Nothing to do: children carry owner references and go with their owner."""

    def apply(self, request: ServingRequest) -> None:
        for child in request.children:
            kube.apply(child)

    def observe_serving(self, owner: Owner, name: str, desired_replicas: int = 1) -> ServingObservation | None:
        deployment = kube.get("apps/v1", "Deployment", owner.namespace, name)
        if deployment is None:
            return None
        spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
        return ServingObservation(
            desired_replicas=int(spec.get("replicas") or 0),
            replicas=int(status.get("replicas") or 0),
            ready_replicas=int(status.get("readyReplicas") or 0),
            updated_replicas=int(status.get("updatedReplicas") or 0),
            url=None,
        )

    def delete(self, owner: Owner, name: str) -> None:
        kube.delete("apps/v1", "Deployment", owner.namespace, name)

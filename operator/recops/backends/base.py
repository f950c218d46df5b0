"""The execution-backend interface: the reconcile logic never talks to a compute platform directly.

Batch work (feature, training and drift jobs): submit / observe / cancel.
Serving (model servers): apply / observe / delete.
Every call is idempotent: a job is named from its owner (uid + generation), so a retry or an operator
restart finds the work already submitted instead of starting it twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from recops.api.base import ResourceRequirements
from recops.controllers.common import Owner, SecretEnv


class BackendUnavailable(Exception):
    """This backend cannot do it now: not enabled or not configured here, or its platform refused or failed the
    call. The message names the setting, field or platform error; reconcile reports it as the condition reason
    `BackendUnavailable` and tries again on the next resync."""


@dataclass(frozen=True)
class JobRequest:
    """One run of a job program."""

    owner: Owner
    name: str
    program: str
    config: Mapping[str, Any]
    image: str
    plain_env: Mapping[str, str] = field(default_factory=dict)
    secret_env: tuple[SecretEnv, ...] = ()
    children: tuple[Mapping[str, Any], ...] = ()  # kubernetes: the ConfigMap + Job manifests
    resources: ResourceRequirements | None = None  # ecs: sizes the Fargate task
    deadline_seconds: int | None = None  # ecs, sagemaker: stop the run after this long
    # Retries after a retryable failure (local, ecs, sagemaker; kubernetes: the Job's own backoffLimit).
    backoff_limit: int = 0


@dataclass(frozen=True)
class JobObservation:
    """What a backend knows of a job: state, timings and the program's result document."""

    state: str  # "Pending" | "Running" | "Succeeded" | "Failed"
    started_at: str | None = None
    finished_at: str | None = None
    result: Mapping[str, Any] | None = None
    message: str = ""
    attempts: int | None = None  # attempts made so far (1 + retries), when the backend knows


@dataclass(frozen=True)
class ServingRequest:
    owner: Owner
    name: str
    env: Mapping[str, str]
    secret_env: tuple[SecretEnv, ...] = ()
    replicas: int = 1
    port: int = 8080
    children: tuple[Mapping[str, Any], ...] = ()
    image: str = ""  # ecs, sagemaker: the server image
    resources: ResourceRequirements | None = None  # ecs: sizes the Fargate task
    version: str | None = None  # ecs, sagemaker: the model version to pin (a new version rolls out)


@dataclass(frozen=True)
class ServingObservation:
    desired_replicas: int
    replicas: int
    ready_replicas: int
    updated_replicas: int
    url: str | None
    served_version: str | None = None
    model_loaded: bool | None = None
    message: str = ""


class BatchBackend(Protocol):
    name: str

    def submit(self, request: JobRequest) -> None: ...

    def observe(self, owner: Owner, name: str) -> JobObservation | None: ...

    def cancel(self, owner: Owner, name: str) -> None: ...

    def release(self, owner: Owner) -> None:
        """On delete of the owner: remove what the backend keeps for it (task definitions, result objects)."""


class ServingBackend(Protocol):
    name: str

    def apply(self, request: ServingRequest) -> None: ...

    def observe_serving(self, owner: Owner, name: str, desired_replicas: int = 1) -> ServingObservation | None: ...

    def delete(self, owner: Owner, name: str) -> None: ...



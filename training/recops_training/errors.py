"""Errors of the training job, each mapped to an exit code of the job contract (docs/CONTRACTS.md)."""

from __future__ import annotations


class TrainingError(Exception):
    """Base class: carries the CamelCase reason and the process exit code."""

    exit_code = 1
    reason = "Unexpected"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason:
            self.reason = reason


class InvalidInput(TrainingError):
    """Invalid config or input: permanent, the operator must not retry (exit 2)."""

    exit_code = 2
    reason = "InvalidConfig"


class GateRefused(TrainingError):
    """A gate refused the result (exit 3)."""

    exit_code = 3
    reason = "GateRefused"


class DependencyUnavailable(TrainingError):
    """MLflow or S3 unreachable: retry later (exit 4)."""

    exit_code = 4
    reason = "DependencyUnavailable"


class ChampionUnavailable(TrainingError):
    """The current champion version could not be loaded to be scored (the gate refuses, exit 3)."""

    exit_code = 3
    reason = "ChampionUnavailable"

"""Errors of the drift check, each mapped to an exit code of the job contract (docs/CONTRACTS.md)."""

from __future__ import annotations


class DriftCheckError(Exception):
    """Base class: carries the CamelCase reason and the process exit code."""

    exit_code = 1
    reason = "Unexpected"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason:
            self.reason = reason


class InvalidInput(DriftCheckError):
    """Invalid config or input (missing profile, malformed logs): permanent, do not retry (exit 2)."""

    exit_code = 2
    reason = "InvalidConfig"


class DependencyUnavailable(DriftCheckError):
    """MLflow or S3 unreachable: retry later (exit 4)."""

    exit_code = 4
    reason = "DependencyUnavailable"

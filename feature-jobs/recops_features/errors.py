"""Errors that end a job run, each with its exit code and CamelCase reason (see docs/CONTRACTS.md)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_INVALID = 2
EXIT_GATE = 3
EXIT_UNAVAILABLE = 4


class JobError(Exception):
    """A failure the job reports in its result: ``reason`` is CamelCase, ``message`` names the input and the fix."""

    exit_code: int = EXIT_UNEXPECTED

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class InvalidInput(JobError):
    """Invalid config or input data: permanent, retrying will not help (exit 2)."""

    exit_code = EXIT_INVALID


class DependencyUnavailable(JobError):
    """S3 or PostgreSQL could not be reached or refused us temporarily: retry later (exit 4)."""

    exit_code = EXIT_UNAVAILABLE


class GateFailed(JobError):
    """A quality gate refused the snapshot; nothing new was published (exit 3)."""

    exit_code = EXIT_GATE

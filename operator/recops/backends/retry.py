"""The job retry policy every backend follows (docs/CONTRACTS.md, "Retries").

A run gets `1 + backoffLimit` attempts. Exit codes 2 (invalid config or input) and 3 (a gate refused the result)
are final: retrying cannot change them. Every other failure (4 a dependency is unavailable, 1 unexpected, a
signal) is tried again after a capped exponential backoff, as Kubernetes does for a Job's failed pods (there:
`backoffLimit` + `controllers.common.POD_FAILURE_POLICY`; here: the local runner and the AWS runner).

Standard library only: `aws_runner` runs this inside the job images.
"""

from __future__ import annotations

import time
from collections.abc import Callable

FINAL_EXIT_CODES = frozenset({2, 3})
FIRST_DELAY_SECONDS = 5.0
MAX_DELAY_SECONDS = 60.0


def retryable(code: int) -> bool:
    """Whether a run that ended with this exit code may succeed when tried again."""
    return code != 0 and code not in FINAL_EXIT_CODES


def retry_delay(failed_attempts: int, first: float = FIRST_DELAY_SECONDS, cap: float = MAX_DELAY_SECONDS) -> float:
    """Seconds to wait after the n-th failed attempt: first, 2 x first, 4 x first ... at most `cap`."""
    return float(min(cap, first * 2 ** max(0, failed_attempts - 1)))


def attempt_text(attempt: int, backoff_limit: int) -> str:
    return f"attempt {attempt} of {backoff_limit + 1}"


def run_with_retries(
    run_once: Callable[[int], int],
    backoff_limit: int,
    *,
    first_delay: float = FIRST_DELAY_SECONDS,
    deadline: float | None = None,
    on_retry: Callable[[int, int, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[int, int]:
    """Run `run_once(attempt)` (attempt counts from 1) until it succeeds, ends with a final exit code, or has had
    `backoff_limit` retries; no retry starts after `deadline` (a `clock()` value). Returns (exit code, attempts).
    `on_retry(attempt, code, delay)` is called before each wait."""
    attempt = 1
    while True:
        code = run_once(attempt)
        if not retryable(code) or attempt > backoff_limit:
            return code, attempt
        delay = retry_delay(attempt, first_delay)
        if deadline is not None and clock() + delay >= deadline:
            return code, attempt
        if on_retry is not None:
            on_retry(attempt, code, delay)
        sleep(delay)
        attempt += 1

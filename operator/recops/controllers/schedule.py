"""When scheduled work is due, for backends without a CronJob (local): pure, clock passed in."""

from __future__ import annotations

import datetime as dt
import hashlib

from croniter import croniter


def latest_slot(schedule: str, now: dt.datetime) -> dt.datetime:
    """The most recent time at or before `now` at which the schedule fires."""
    itr = croniter(schedule, now + dt.timedelta(seconds=1))
    previous: dt.datetime = itr.get_prev(dt.datetime)
    return previous


def due_run_name(base: str, schedule: str, now: dt.datetime, created: dt.datetime, last_run: str | None,
                 suspended: bool) -> str | None:
    """The name of the scheduled run that should exist now, or None.

    The first run happens right after creation; later ones at each schedule slot. The name is derived
    from the slot, so a retry or a restarted operator finds the same run instead of starting another.
    """
    if suspended:
        return None
    slot = latest_slot(schedule, now)
    if slot < created:
        slot = created
    name = f"{base}-{int(slot.timestamp()) // 60}"
    return None if name == last_run else name


def request_run_name(base: str, token: str) -> str:
    """The run for an on-demand request token (the `recops.dev/run-requested` annotation)."""
    return f"{base}-req-{hashlib.sha256(token.encode()).hexdigest()[:10]}"


def period_seconds(schedule: str) -> int:
    """The interval between two consecutive firings of a schedule (its first two in 2026)."""
    itr = croniter(schedule, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    first: dt.datetime = itr.get_next(dt.datetime)
    second: dt.datetime = itr.get_next(dt.datetime)
    return int((second - first).total_seconds())


def duration_seconds(text: str) -> int:
    """'90s', '15m', '6h', '7d' (the API's DURATION_PATTERN) -> seconds."""
    return int(text[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[text[-1]]

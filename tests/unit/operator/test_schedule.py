from __future__ import annotations

import datetime as dt

from recops.controllers.schedule import due_run_name, request_run_name

UTC = dt.UTC


def test_first_run_right_after_creation_then_each_slot() -> None:
    created = dt.datetime(2026, 1, 1, 10, 17, tzinfo=UTC)
    first = due_run_name("p", "0 3 * * *", created + dt.timedelta(seconds=5), created, None, False)
    assert first is not None
    assert due_run_name("p", "0 3 * * *", created + dt.timedelta(hours=1), created, first, False) is None
    nxt = due_run_name("p", "0 3 * * *", dt.datetime(2026, 1, 2, 3, 0, 30, tzinfo=UTC), created, first, False)
    assert nxt is not None and nxt != first
    # The same slot always gives the same name: a restarted operator does not start it twice.
    assert nxt == due_run_name("p", "0 3 * * *", dt.datetime(2026, 1, 2, 4, 0, tzinfo=UTC), created, first, False)


def test_suspend_and_requests() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=UTC)
    assert due_run_name("p", "@daily", now, now, None, True) is None
    assert request_run_name("p", "a") == request_run_name("p", "a") != request_run_name("p", "b")

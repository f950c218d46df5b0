"""Job retries on the local backend (issue #9), on the real lab: the operator a real subprocess against the lab's
real kube-apiserver, the feature job a real process reading the lab's real PostgreSQL and its S3 endpoint (moto in
server mode: an EMULATOR of S3, in memory).

* S3 is down for a FeaturePipeline run's first attempt and back before its retry: the run succeeds on attempt 2 of
  3 (spec.backoffLimit 2), the status says so (`lastRun.attempts: 2`), and what it published is whole. The
  operator is SIGKILLed and restarted while the run waits for its retry: the runner, in its own session, goes on
  and the restarted operator observes it.
* A final failure (exit code 3: the quality gate refused the snapshot) is not retried: one attempt, and the run
  directory's `exit.json` is written right after it.
* PostgreSQL stopped and started alone with the lab's per-component `down`/`up` keeps its password and its data.

The S3 emulator keeps objects in memory, so its restart loses them (moto has no persistence: recops/lab/README.md);
the test seeds the clickstream again while the run waits for its retry, and it checks
that the seeding finished before the retry started. The local backend's first retry waits
RECOPS_LOCAL_RETRY_DELAY_SECONDS (30 s here, 5 s by default) to leave room for that.

Uses the lab (fixed ports): `flock /tmp/recops-lab.lock .venv/bin/pytest tests/reliability/test_job_retries.py`.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.kube import conditions
from fixtures.operator import wait_for
from fixtures.outages import (
    World,
    create,
    job_run_dir,
    lab_info,
    lab_pipeline,
    outage_world,
    published,
    seed,
    start,
    stop,
)

pytestmark = [pytest.mark.integration, pytest.mark.lab("k8s", "postgres", "s3"), pytest.mark.timeout(900)]

BUCKET = "recops-retries"
RETRY_DELAY = 30
RESULTS: list[str] = []


@pytest.fixture(scope="module")
def world(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with outage_world(cluster, tmp_path_factory.mktemp("retries"), "retry", BUCKET, 11,
                      RECOPS_LOCAL_RETRY_DELAY_SECONDS=str(RETRY_DELAY)) as w:
        yield w
    if RESULTS:
        print("\n" + "\n".join(RESULTS))


def _read(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def _utc(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()


def test_feature_run_with_s3_down_on_its_first_attempt_succeeds_on_the_retry(world: World) -> None:
    k, name, output = world.k, "fp-retry", world.tmp / "snapshots-retry"
    endpoint = lab_info(world.lab).s3_endpoint
    port = stop(world.lab, "s3")
    stopped = time.monotonic()
    try:
        created = create(k, lab_pipeline(name, BUCKET, output, endpoint, backoff_limit=2))
        run_dir = job_run_dir(world, created["metadata"]["uid"])
        # The first attempt fails (S3 is unreachable) and the runner waits for its retry.
        waiting = wait_for(lambda: (a := _read(run_dir / "attempt.json")).get("retryAt") and a, 180,
                           "the first attempt to fail and the retry to be scheduled", interval=0.2)
        first_failed = time.monotonic() - stopped
    finally:
        start_seconds = start(world.lab, "s3", port)
    seed(world.lab, world.data, BUCKET, ("s3",))  # the emulator lost its objects (see the module docstring)
    seeded_at = time.time()
    first = _read(run_dir / "result.json")  # still attempt 1's: the runner moves it aside when attempt 2 starts
    seen = wait_for(lambda: (o := k.get_json("fp", name)).get("status", {}).get("lastRun", {}).get("message", "")
                    .startswith("attempt 1 of 3 ended with exit code 4") and o, 30,
                    "the status to say the run waits for attempt 2", interval=0.5)
    # The operator dies (SIGKILL) while the run waits for its retry; the runner, in its own session, goes on, and
    # the restarted operator observes it from the run directory.
    world.op.stop(signal.SIGKILL)
    world.op.start()
    done = wait_for(lambda: (o := k.get_json("fp", name)).get("status", {}).get("latestSnapshot") and
                    conditions(o)["Ready"]["status"] == "True" and o, 240,
                    "the retried run to publish a snapshot", interval=0.5)
    ended = _read(run_dir / "exit.json")
    last = done["status"]["lastRun"]
    assert waiting["attempt"] == 1 and waiting["of"] == 3 and waiting["exitCodes"] == [4], waiting
    assert first.get("reason") == "S3Unavailable" and "S3" in first.get("message", ""), first
    assert seen["status"]["lastRun"]["result"] == "Running" and seen["status"]["lastRun"]["attempts"] == 1
    assert seeded_at < _utc(waiting["retryAt"]), "S3 was not seeded again before the retry: the test is not valid"
    assert (ended["exitCode"], ended["attempts"], ended["exitCodes"]) == (0, 2, [4, 0]), ended
    assert (last["result"], last["attempts"]) == ("Succeeded", 2), last
    assert _read(run_dir / "result.attempt-1.json").get("reason") == "S3Unavailable"
    (version,) = published(output)
    assert done["status"]["latestSnapshot"]["version"] == version
    assert "Retrying the job: attempt 1 of 3 ended with exit code 4" in (run_dir / "log.txt").read_text()
    assert world.op.proc is not None and world.op.proc.poll() is None, "the operator exited"
    assert world.op.logs().count("Started the Recops operator") == 2  # killed once while the run waited
    RESULTS.append(f"s3 down for attempt 1: it failed {first_failed:.1f}s after the stop ({first['reason']}); "
                   f"status said {seen['status']['lastRun']['message']!r}; S3 back in {start_seconds:.1f}s and "
                   f"seeded again; the operator was SIGKILLed and restarted during the wait; attempt 2 published "
                   f"{version[:12]}; lastRun.attempts={last['attempts']}")


def test_a_refusing_quality_gate_is_final_and_not_retried(world: World) -> None:
    k, name, output = world.k, "fp-gate", world.tmp / "snapshots-gate"
    doc = lab_pipeline(name, BUCKET, output, lab_info(world.lab).s3_endpoint, backoff_limit=2, min_rows=10_000_000)
    run_dir = job_run_dir(world, create(k, doc)["metadata"]["uid"])
    ended = wait_for(lambda: _read(run_dir / "exit.json"), 180, "the gated run to end", interval=0.2)
    done = wait_for(lambda: (o := k.get_json("fp", name)).get("status", {}).get("lastRun", {}).get("result")
                    == "QualityFailed" and o, 60, "the status to report the refused gate", interval=0.5)
    last = done["status"]["lastRun"]
    assert (ended["exitCode"], ended["attempts"], ended["exitCodes"]) == (3, 1, [3]), ended
    assert last["attempts"] == 1, last
    assert conditions(done)["QualityPassed"]["status"] == "False"
    assert conditions(done)["QualityPassed"]["reason"] == "QualityGateFailed"
    assert "Retrying" not in (run_dir / "log.txt").read_text()
    assert not list(run_dir.glob("result.attempt-*.json"))
    assert published(output) == []
    RESULTS.append(f"quality gate refused (exit 3): 1 attempt, not retried; QualityPassed=False "
                   f"{conditions(done)['QualityPassed']['message']!r}")


def test_postgres_restarted_alone_keeps_its_password_and_data(world: World) -> None:
    import psycopg

    dsn = lab_info(world.lab).postgres_dsn
    marker = uuid.uuid4().hex
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS recops_restart_check (marker text)")
        conn.execute("INSERT INTO recops_restart_check VALUES (%s)", (marker,))
    port = stop(world.lab, "postgres")
    start_seconds = start(world.lab, "postgres", port)
    assert lab_info(world.lab).postgres_dsn == dsn, "the restart changed the DSN (password or port)"
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        rows = conn.execute("SELECT count(*) FROM recops_restart_check WHERE marker = %s", (marker,)).fetchone()
        profiles = conn.execute("SELECT count(*) FROM user_profiles").fetchone()
        conn.execute("DROP TABLE recops_restart_check")
    assert rows == (1,)
    assert profiles is not None and profiles[0] == len(world.data.profiles)
    RESULTS.append(f"postgres stopped and started alone in {start_seconds:.1f}s: same DSN, the row written before "
                   f"and {profiles[0]} seeded profiles still there")

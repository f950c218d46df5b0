"""The job retry policy (issue #9): 1 + backoffLimit attempts, exit codes 2 and 3 never retried, the same on every
backend. Pure parts, plus the local and AWS runners with a real (tiny) program as a subprocess."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from recops.api import FeaturePipelineSpec, TrainingRunSpec
from recops.api.base import ResourceRequirements
from recops.backends import aws, aws_runner, local_runner
from recops.backends.base import JobRequest
from recops.backends.local import LocalBackend, job_observation_from_exit, running_message
from recops.backends.retry import FINAL_EXIT_CODES, retry_delay, retryable, run_with_retries
from recops.conditions import Verdict
from recops.config import Config
from recops.controllers import driftmonitor, featurepipeline, trainingrun
from recops.controllers.common import POD_FAILURE_POLICY, Owner

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
OWNER = Owner(kind="FeaturePipeline", name="shop", namespace="team-a", uid="uid-1", generation=2)


# -- the policy ------------------------------------------------------------------------------------------------------

def test_only_failures_other_than_invalid_input_and_a_refusing_gate_are_retryable() -> None:
    assert [c for c in (0, 1, 2, 3, 4, -9, 137) if retryable(c)] == [1, 4, -9, 137]


def test_kubernetes_pod_failure_policy_fails_the_job_on_exactly_the_final_exit_codes() -> None:
    (rule,) = POD_FAILURE_POLICY["rules"]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["operator"] == "In"
    assert set(rule["onExitCodes"]["values"]) == FINAL_EXIT_CODES


def test_backoff_doubles_from_the_first_delay_up_to_its_cap() -> None:
    assert [retry_delay(n) for n in (1, 2, 3, 4, 5, 6)] == [5, 10, 20, 40, 60, 60]
    assert [retry_delay(n, first=0.5, cap=1.5) for n in (1, 2, 3)] == [0.5, 1.0, 1.5]


def _scripted(codes: list[int]) -> tuple[list[int], Any]:
    ran: list[int] = []

    def run_once(attempt: int) -> int:
        ran.append(attempt)
        return codes[attempt - 1]

    return ran, run_once


@pytest.mark.parametrize(("codes", "limit", "expected", "waits"), [
    ([4, 0], 2, (0, 2), [5.0]),              # a dependency was back for the retry
    ([4, 1, 4, 0], 2, (4, 3), [5.0, 10.0]),  # 1 + backoffLimit attempts, then the last code counts
    ([2, 0], 5, (2, 1), []),                 # invalid input: final
    ([4, 3, 0], 5, (3, 2), [5.0]),           # a gate refused on the retry: final
    ([0], 3, (0, 1), []),
    ([4, 0], 0, (4, 1), []),                 # backoffLimit 0: never retried
])
def test_run_with_retries(codes: list[int], limit: int, expected: tuple[int, int], waits: list[float]) -> None:
    slept: list[float] = []
    retried: list[tuple[int, int, float]] = []
    ran, run_once = _scripted(codes)
    got = run_with_retries(run_once, limit, sleep=slept.append, on_retry=lambda *a: retried.append(a))
    assert got == expected
    assert slept == waits and [r[2] for r in retried] == waits
    assert ran == list(range(1, expected[1] + 1))


def test_no_retry_starts_after_the_deadline() -> None:
    now = [0.0]
    ran, run_once = _scripted([4, 4, 4, 0])
    got = run_with_retries(run_once, 5, deadline=12.0, sleep=lambda s: now.__setitem__(0, now[0] + s),
                           clock=lambda: now[0])
    assert got == (4, 2)  # waited 5 s (t=5), the next wait of 10 s would end after the deadline
    assert now[0] == 5.0 and ran == [1, 2]


# -- the local runner: a real program, run as a subprocess -------------------------------------------------------------

def _program(tmp_path: Path, body: str) -> list[str]:
    """A job program that counts its runs in a file next to it, then runs `body` (run = that count)."""
    path = tmp_path / "fake-job.py"
    path.write_text("import json, sys\nfrom pathlib import Path\nargs = sys.argv[1:]\n"
                    "result = args[args.index('--result-file') + 1]\n"
                    "counter = Path(__file__).with_name('runs')\n"
                    "run = int(counter.read_text()) + 1 if counter.exists() else 1\n"
                    "counter.write_text(str(run))\n"
                    "print(json.dumps({'msg': f'Started run {run}'}), file=sys.stderr)\n" + body)
    return [sys.executable, str(path), "run", "--config", "c.json", "--result-file", str(tmp_path / "result.json")]


FLAKY = ("ok = run > 1\njson.dump({'ok': ok, 'reason': 'Done' if ok else 'S3Unavailable', 'message': f'run {run}'}, "
         "open(result, 'w'))\nsys.exit(0 if ok else 4)")


def test_local_runner_retries_a_retryable_exit_and_records_the_attempts(tmp_path: Path) -> None:
    argv = [str(tmp_path), "--backoff-limit", "2", "--first-delay", "0.05", "--", *_program(tmp_path, FLAKY)]
    assert local_runner.main(argv) == 0
    ended = json.loads((tmp_path / "exit.json").read_text())
    assert ended["exitCode"] == 0 and ended["attempts"] == 2 and ended["exitCodes"] == [4, 0]
    assert json.loads((tmp_path / "result.json").read_text())["message"] == "run 2"
    assert json.loads((tmp_path / "result.attempt-1.json").read_text())["reason"] == "S3Unavailable"
    log = (tmp_path / "log.txt").read_text()
    assert log.index("Started run 1") < log.index("Retrying the job: attempt 1 of 3 ended with exit code 4") \
        < log.index("Started run 2")
    obs = job_observation_from_exit(ended, "2026-01-01T00:00:00Z", None)
    assert (obs.state, obs.attempts) == ("Succeeded", 2) and "after 2 attempts (exit codes 4, 0)" in obs.message


@pytest.mark.parametrize("code", sorted(FINAL_EXIT_CODES))
def test_local_runner_never_retries_a_final_exit_code(tmp_path: Path, code: int) -> None:
    body = f"json.dump({{'ok': False, 'reason': 'QualityGateFailed', 'message': 'no'}}, open(result, 'w'))\n" \
           f"sys.exit({code})"
    assert local_runner.main([str(tmp_path), "--backoff-limit", "3", "--first-delay", "0.05", "--",
                              *_program(tmp_path, body)]) == 0
    ended = json.loads((tmp_path / "exit.json").read_text())
    assert (ended["exitCode"], ended["attempts"]) == (code, 1)
    assert (tmp_path / "runs").read_text() == "1"
    assert "Retrying" not in (tmp_path / "log.txt").read_text()


def test_local_runner_gives_up_after_backoff_limit_retries(tmp_path: Path) -> None:
    assert local_runner.main([str(tmp_path), "--backoff-limit", "1", "--first-delay", "0.05", "--",
                              *_program(tmp_path, "sys.exit(4)")]) == 0
    ended = json.loads((tmp_path / "exit.json").read_text())
    assert (ended["exitCode"], ended["attempts"], ended["exitCodes"]) == (4, 2, [4, 4])
    obs = job_observation_from_exit(ended, None, None)
    assert obs.state == "Failed" and obs.attempts == 2


def test_an_old_runners_exit_record_counts_as_one_attempt() -> None:
    obs = job_observation_from_exit({"exitCode": 4, "finishedAt": "2026-01-01T00:00:00Z"}, None, None)
    assert (obs.state, obs.attempts, obs.message) == ("Failed", 1, "exit code 4")


def test_running_message_says_which_attempt_and_when_the_next_starts() -> None:
    assert running_message({}) == ""
    assert running_message({"attempt": 1, "of": 3, "exitCodes": []}) == "attempt 1 of 3"
    assert running_message({"attempt": 1, "of": 3, "exitCodes": [4], "retryAt": "2026-01-01T00:00:05Z"}) == \
        "attempt 1 of 3 ended with exit code 4; attempt 2 of 3 starts at 2026-01-01T00:00:05Z"


def test_local_backend_observes_a_running_retry_from_the_run_directory(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path, lambda *_: None)
    run_dir = tmp_path / OWNER.namespace / OWNER.uid / "run-1"
    run_dir.mkdir(parents=True)
    (run_dir / "pid").write_text(str(os.getpid()))  # a live process: the runner is still there
    (run_dir / "attempt.json").write_text(json.dumps({"attempt": 1, "of": 3, "exitCodes": [4],
                                                      "retryAt": "2026-01-01T00:00:05Z"}))
    (run_dir / "result.json").write_text(json.dumps({"ok": False, "reason": "S3Unavailable", "message": "down"}))
    obs = backend.observe(OWNER, "run-1")
    assert obs is not None and (obs.state, obs.attempts, obs.result) == ("Running", 1, None)  # not the run's result
    assert obs.message.startswith("attempt 1 of 3 ended with exit code 4; attempt 2 of 3 starts at")
    (run_dir / "attempt.json").write_text(json.dumps({"attempt": 2, "of": 3, "exitCodes": [4]}))
    obs = backend.observe(OWNER, "run-1")
    assert obs is not None and (obs.state, obs.attempts, obs.message) == ("Running", 2, "attempt 2 of 3")


def test_local_backend_retry_delay_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOPS_LOCAL_RETRY_DELAY_SECONDS", "30")
    assert LocalBackend(Path("/nonexistent"), lambda *_: None).first_retry_delay == 30.0
    monkeypatch.delenv("RECOPS_LOCAL_RETRY_DELAY_SECONDS")
    assert LocalBackend(Path("/nonexistent"), lambda *_: None).first_retry_delay == 5.0


# -- AWS: the runner inside the job retries; the requests carry the limit ----------------------------------------------

def _executable(tmp_path: Path, body: str) -> str:
    command = _program(tmp_path, body)
    path = Path(command[1])
    path.write_text(f"#!{sys.executable}\n" + path.read_text())
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_aws_runner_retries_and_reports_attempts_in_the_result(tmp_path: Path) -> None:
    code, body = aws_runner.run_attempts(_executable(tmp_path, FLAKY), "{}", {}, None, 2, first_delay=0.05)
    assert (code, body["ok"], body["message"], body["attempts"]) == (0, True, "run 2", 2)
    assert aws.result_attempts(body) == 2 and aws.result_attempts({"ok": True}) is None


def test_aws_runner_does_not_retry_a_refusing_gate(tmp_path: Path) -> None:
    program = _executable(tmp_path, "json.dump({'ok': False, 'reason': 'PromotionRefused', 'message': 'no'}, "
                                    "open(result, 'w'))\nsys.exit(3)")
    code, body = aws_runner.run_attempts(program, "{}", {}, None, 3, first_delay=0.05)
    assert (code, body["reason"], body["attempts"]) == (3, "PromotionRefused", 1)
    assert (tmp_path / "runs").read_text() == "1"


def _job(backoff_limit: int) -> JobRequest:
    return JobRequest(owner=OWNER, name="run-1", program="recops-train", config={"a": 1},
                      image="ghcr.io/recops/training:0.1.0", resources=ResourceRequirements(), deadline_seconds=600,
                      backoff_limit=backoff_limit)


def test_ecs_and_sagemaker_requests_carry_the_backoff_limit_to_the_runner() -> None:
    config = Config(enabled_backends=frozenset({"ecs", "sagemaker"}), aws_region="eu-west-1",
                    aws_result_uri="s3://results/recops", sagemaker_role_arn="arn:aws:iam::1:role/sm")
    env = {e["name"]: e["value"] for e in
           aws.run_overrides(_job(2), "s3://r/x.json", "")["containerOverrides"][0]["environment"]}
    assert env["RECOPS_BACKOFF_LIMIT"] == "2"
    assert aws.training_job_request(config, _job(1))["Environment"]["RECOPS_BACKOFF_LIMIT"] == "1"
    assert "RECOPS_BACKOFF_LIMIT" not in aws.training_job_request(config, _job(0))["Environment"]


# -- kubernetes: the rendered Jobs carry the spec's backoffLimit and the pod failure policy ----------------------------

def _spec(file: str, **changes: Any) -> dict[str, Any]:
    return {**yaml.safe_load((EXAMPLES / file).read_text())["spec"], **changes}


def _job_spec(children: list[dict[str, Any]]) -> dict[str, Any]:
    child = next(c for c in children if c["kind"] in ("Job", "CronJob"))
    return dict(child["spec"]["jobTemplate"]["spec"] if child["kind"] == "CronJob" else child["spec"])


def test_kubernetes_jobs_carry_the_specs_backoff_limit_and_the_pod_failure_policy() -> None:
    fp = FeaturePipelineSpec.model_validate(_spec("featurepipeline.yaml", backoffLimit=5))
    tr = TrainingRunSpec.model_validate(_spec("trainingrun.yaml", backoffLimit=4))
    fp_job = _job_spec(featurepipeline.build_children(fp, OWNER))
    tr_job = _job_spec(trainingrun.build_children(tr, OWNER, "s3://b/snap/abc"))
    dm_job = _job_spec(driftmonitor.check_children(OWNER, "check-1", {}, {}, []))
    assert [fp_job["backoffLimit"], tr_job["backoffLimit"], dm_job["backoffLimit"]] == \
        [5, 4, driftmonitor.CHECK_BACKOFF_LIMIT]
    assert fp_job["podFailurePolicy"] == tr_job["podFailurePolicy"] == dm_job["podFailurePolicy"] == \
        POD_FAILURE_POLICY
    assert all(j["template"]["spec"]["restartPolicy"] == "Never" for j in (fp_job, tr_job, dm_job))


# -- status ------------------------------------------------------------------------------------------------------------

def test_training_status_reports_attempts_and_the_running_attempt() -> None:
    ok = Verdict.ok("Ok")
    conditions, status = trainingrun.decide(trainingrun.Observed(
        backend=ok, references=ok, snapshot=ok, job_state="Running", result=None,
        job_message="attempt 1 of 2 ended with exit code 4; attempt 2 of 2 starts at 2026-01-01T00:00:05Z",
        attempts=1))
    assert status["attempts"] == 1
    assert conditions["Succeeded"].reason == "Running" and "attempt 2 of 2 starts" in conditions["Succeeded"].message
    _, status = trainingrun.decide(trainingrun.Observed(backend=ok, references=ok, snapshot=ok, job_state="Succeeded",
                                                        result={"ok": True, "message": "trained"}, attempts=2))
    assert status["attempts"] == 2

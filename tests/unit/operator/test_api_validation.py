"""Value checks of the API types: pydantic and the CRD's CEL rule use the same regex and the same message.

The CEL rules themselves are compiled and run by the lab's kube-apiserver in
tests/integration/operator/test_api_server.py and tests/reliability/test_bad_input.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from croniter import croniter
from pydantic import ValidationError
from recops import crdgen
from recops.api.base import CRON_MESSAGE, CRON_PATTERN, CRON_RANGE_MESSAGE, FRACTION_PATTERN
from recops.api.driftmonitor import DRIFT_SHARE_MESSAGE, DriftMonitorSpec
from recops.api.featurepipeline import FeaturePipelineSpec
from recops.api.trainingrun import Evaluation

VALID_CRON = ["0 3 * * *", "*/15 * * * *", "@daily", "@hourly", "59 23 31 12 6", "0 0 1 JAN MON-FRI",
              "0-30/5 1,2,3 ? * *", "5/10 */2 1-15 1-6 0,6", "0 9 * * SAT"]
INVALID_CRON = ["61 * * * *", "0 25 * * *", "0 0 0 * *", "0 0 32 * *", "0 0 * 13 *", "0 0 * * 7", "*/0 * * * *",
                "*/15 * * *", "* * * * * *", "every hour", "@every 1h", "0 3 * * *\n", "0 0 L * *"]


def _spec_property(plural: str, name: str) -> dict[str, Any]:
    crd = yaml.safe_load(crdgen.render_all()[f"recops.dev_{plural}.yaml"])
    return dict(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][name])


@pytest.mark.parametrize("schedule", VALID_CRON)
def test_valid_schedules_are_accepted_and_parse(schedule: str) -> None:
    assert FeaturePipelineSpec.model_validate(_fp(schedule)).schedule == schedule
    croniter(schedule)  # the local backend's scheduler (controllers/schedule.py) reads what the schema lets in


@pytest.mark.parametrize("schedule", INVALID_CRON)
def test_invalid_schedules_are_refused_with_the_message(schedule: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(CRON_MESSAGE)):
        FeaturePipelineSpec.model_validate(_fp(schedule))


@pytest.mark.parametrize("schedule", ["30-10 * * * *", "0 5-1 * * *", "0 0 20-3/2 * *", "0,30-10 * * * *"])
def test_backward_ranges_are_refused_with_the_message(schedule: str) -> None:
    """In range but backwards: croniter would wrap it, CronJob refuses it; the operator refuses it (InvalidSpec)."""
    with pytest.raises(ValidationError, match=re.escape(CRON_RANGE_MESSAGE)):
        FeaturePipelineSpec.model_validate(_fp(schedule))


def _fp(schedule: str) -> dict[str, Any]:
    return {"schedule": schedule, "sources": {"clickstream": {"uri": "s3://shop/events"}},
            "output": {"uri": "s3://shop/snapshots"}}


@pytest.mark.parametrize("plural", ["featurepipelines", "driftmonitors"])
def test_schedule_rule_in_the_crd_is_the_pydantic_check(plural: str) -> None:
    prop = _spec_property(plural, "schedule")
    assert prop["x-kubernetes-validations"] == [{"rule": f"self.matches('{CRON_PATTERN}')", "message": CRON_MESSAGE}]
    assert prop["maxLength"] == 128 and "pattern" not in prop  # bounded CEL cost; one message, not two
    assert "such as '0 3 * * *'" in CRON_MESSAGE and CRON_MESSAGE.startswith("schedule ")


@pytest.mark.parametrize(("value", "ok"), [("0", True), ("0.3", True), ("1", True), ("1.0", True), ("1.5", False),
                                           ("2", False), ("-0.1", False), (".5", False), ("0.3x", False)])
def test_drift_share_is_a_fraction(value: str, ok: bool) -> None:
    spec = {"target": {"deploymentRef": {"name": "rd"}}, "driftShare": value}
    if ok:
        assert DriftMonitorSpec.model_validate(spec).drift_share == value
    else:
        with pytest.raises(ValidationError, match=re.escape(DRIFT_SHARE_MESSAGE)):
            DriftMonitorSpec.model_validate(spec)
    prop = _spec_property("driftmonitors", "driftShare")
    assert prop["x-kubernetes-validations"][0]["rule"] == f"self.matches('{FRACTION_PATTERN}')"
    assert prop["maxLength"] == 32


@pytest.mark.parametrize(("k", "ok"), [([1, 1000], True), ([0], False), ([-5], False), ([1001], False)])
def test_evaluation_cutoffs_are_within_recops_train_bounds(k: list[int], ok: bool) -> None:
    if ok:
        assert Evaluation.model_validate({"k": k}).k == k
    else:
        with pytest.raises(ValidationError, match=r"k\.0"):
            Evaluation.model_validate({"k": k})
    items = _spec_property("trainingruns", "evaluation")["properties"]["k"]["items"]
    assert (items["minimum"], items["maximum"]) == (1, 1000)

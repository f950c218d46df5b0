"""The promotion decision, a pure function."""

from __future__ import annotations

from decimal import Decimal

from recops_training.tracking import decide_promotion


def decide(value, baseline=0.1, champion=None, margin="0", relative=False, policy="ifBetter", version="3"):
    return decide_promotion(
        policy=policy,
        metric="ndcg_at_10",
        value=value,
        baseline_value=baseline,
        champion=champion,
        margin=Decimal(margin),
        relative=relative,
        this_version=version,
    )


def test_no_champion_beats_baseline():
    ok, reason, msg = decide(0.2)
    assert ok and reason == "NoChampion" and "0.2000" in msg


def test_worse_than_baseline_is_refused_even_without_champion():
    ok, reason, msg = decide(0.09)
    assert not ok and reason == "WorseThanBaseline" and "popularity baseline 0.1000" in msg
    ok, reason, _ = decide(0.1)  # equal is not better
    assert not ok


def test_champion_and_margin():
    champ = {"version": "2", "value": 0.20}
    assert decide(0.205, champion=champ, margin="0.01")[:2] == (False, "NotBetterThanChampion")
    assert decide(0.215, champion=champ, margin="0.01")[:2] == (True, "BeatChampion")
    assert decide(0.2, champion=champ)[0] is False  # equal to the champion is not better
    assert decide(0.2001, champion=champ)[0] is True
    assert decide(0.203, champion=champ, margin="2", relative=True)[0] is False
    assert decide(0.205, champion=champ, margin="2", relative=True)[0] is True


def test_champion_beaten_but_baseline_not():
    ok, reason, _ = decide(0.15, baseline=0.16, champion={"version": "2", "value": 0.1})
    assert not ok and reason == "WorseThanBaseline"


def test_rerun_of_the_champion_is_idempotent():
    ok, reason, _ = decide(0.15, champion={"version": "3", "value": 0.15}, version="3")
    assert ok and reason == "AlreadyChampion"


def test_policies():
    assert decide(0.01, policy="always")[:2] == (True, "PolicyAlways")
    assert decide(0.5, policy="never")[:2] == (False, "PolicyNever")


def test_champion_without_metric():
    ok, reason, _ = decide(0.2, champion={"version": "1", "value": None})
    assert ok and reason == "ChampionNotComparable"

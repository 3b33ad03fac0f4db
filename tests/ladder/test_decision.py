"""The climb rule and the negative-transfer flags on predictions with known accuracies."""

from __future__ import annotations

import json

import numpy as np
import pytest

from peft_ladder.config import LadderConfig
from peft_ladder.ladder.decision import (
    ClimbRule,
    RungPredictions,
    best_rung,
    deploy_choice,
    judge,
    transfer_flags,
)
from peft_ladder.ladder.note import SCHEMA_PATH, note_schema
from peft_ladder.ladder.stats import Interval

N = 400
LABELS = np.random.default_rng(0).integers(0, 4, N)


def rung(rung_id: str, accuracy: float, strategy: str | None = None, seed: int = 0) -> RungPredictions:
    """Predictions right on exactly round(accuracy * N) examples, chosen at random."""
    rng = np.random.default_rng(seed)
    preds = (LABELS + 1) % 4
    right = rng.choice(N, int(round(accuracy * N)), replace=False)
    preds[right] = LABELS[right]
    return RungPredictions(rung_id, strategy or rung_id, [preds])


def climb(cfg: LadderConfig, *rungs: RungPredictions) -> ClimbRule:
    rule = ClimbRule(cfg, LABELS)
    for r in rungs:
        if rule.state.stopped and not cfg.run_all:
            break
        rule.observe(r)
    rule.finish()
    return rule


CFG = LadderConfig(bootstrap_samples=500).for_task("single_label")


def test_a_gain_inside_the_noise_ends_the_climb_as_uncertain():
    rule = climb(CFG, rung("linear_probe", 0.90), rung("lora", 0.91, seed=1), rung("full", 0.99, seed=2))
    assert rule.state.best.id == "linear_probe"
    assert (rule.state.stop_reason, rule.state.stopped_at) == ("uncertain", "lora")
    assert [c.candidate for c in rule.state.comparisons] == ["lora"]  # full never ran
    c = rule.state.comparisons[0]
    assert c.outcome == "uncertain" and c.interval.low <= CFG.min_gain < c.interval.high


def test_a_reliably_smaller_gain_stops_the_climb():
    rule = climb(CFG, rung("linear_probe", 0.90), rung("lora", 0.80, seed=1), rung("full", 0.99, seed=2))
    assert (rule.state.best.id, rule.state.stop_reason, rule.state.stopped_at) == ("linear_probe", "stop", "lora")
    assert rule.state.comparisons[0].interval.high < CFG.min_gain


@pytest.mark.parametrize(
    ("low", "high", "outcome"),
    [
        (0.02, 0.05, "climb"),
        (0.011, 0.2, "climb"),
        (-0.05, 0.009, "stop"),
        (0.0, 0.05, "uncertain"),
        (-0.1, 0.1, "uncertain"),
    ],
)
def test_three_outcomes_against_the_threshold(low, high, outcome):
    assert judge(Interval((low + high) / 2, low, high, 0.95, 100, 1), 0.01) == outcome


def test_escalates_while_each_rung_clearly_beats_the_best_simpler_one():
    rule = climb(
        CFG,
        rung("linear_probe", 0.50),
        rung("lora", 0.80, seed=1),
        rung("partial_unfreeze", 0.95, seed=2),
        rung("full", 0.95, seed=3),
    )
    assert rule.state.best.id == "partial_unfreeze"
    assert rule.state.stopped_at == "full"
    assert all(c.outcome == "climb" and c.interval.low > CFG.min_gain for c in rule.state.comparisons[:2])


def test_top_of_ladder_and_target():
    rule = climb(CFG, rung("linear_probe", 0.5), rung("full", 0.9, seed=1))
    assert (rule.state.best.id, rule.state.stop_reason) == ("full", "top_of_ladder")
    rule = climb(LadderConfig(bootstrap_samples=500, target=0.85), rung("linear_probe", 0.9), rung("lora", 0.99))
    assert (rule.state.stop_reason, rule.state.stopped_at, rule.state.best.id) == (
        "target_reached",
        "linear_probe",
        "linear_probe",
    )
    assert not rule.state.comparisons


def test_min_gain_demands_a_practically_large_gain():
    cfg = LadderConfig(bootstrap_samples=500, min_gain=0.1)
    rule = climb(cfg, rung("linear_probe", 0.80), rung("lora", 0.87, seed=1))
    assert rule.state.best.id == "linear_probe"  # significant, but below the practical threshold
    assert rule.state.comparisons[0].interval.low > 0


def test_run_all_never_changes_the_recommendation():
    cfg = LadderConfig(bootstrap_samples=500, run_all=True)
    rule = climb(cfg, rung("linear_probe", 0.60), rung("lora", 0.61, seed=1), rung("full", 0.95, seed=2))
    assert rule.state.stopped_at == "lora"
    assert rule.state.best.id == "linear_probe"  # full's gain, seen only with --all, is a comparison
    after = [c for c in rule.state.comparisons if c.kind == "after_stop"]
    assert [c.candidate for c in after] == ["full"] and after[0].interval.low > 0.2


def test_flags_negative_transfer_and_a_rung_worse_than_the_probe():
    probe, full = rung("linear_probe", 0.70), rung("full", 0.40, seed=1)
    rule = climb(CFG, probe, full)
    flags, comparisons = transfer_flags(rule, [probe, full], rung("scratch", 0.95, seed=2), None, [])
    kinds = {f.kind: f for f in flags}
    assert kinds["worse_than_probe"].rung == "full" and kinds["worse_than_probe"].interval.high < 0
    # The flag rests on the best pretrained rung that ran, the probe here.
    assert kinds["negative_transfer"].interval.low > 0 and kinds["negative_transfer"].rung == "linear_probe"
    assert {c.kind for c in comparisons} == {"vs_scratch"}
    # full's step from the probe already is the comparison with it: the flag rests on that climb row.
    assert kinds["worse_than_probe"].basis == ("full", "linear_probe", "climb")
    assert kinds["negative_transfer"].basis == ("scratch", "linear_probe", "vs_scratch")
    assert "reliably better than" in kinds["negative_transfer"].message

    # Scratch within the noise of the best rung: "scratch competitive", not "negative transfer".
    flags, _ = transfer_flags(rule, [probe, full], rung("scratch", 0.71, seed=3), None, [])
    assert [f.kind for f in flags if f.kind != "worse_than_probe"] == ["scratch_competitive"]
    # Scratch clearly worse: no transfer flag.
    flags, _ = transfer_flags(rule, [probe, full], rung("scratch", 0.30, seed=4), None, [])
    assert [f.kind for f in flags] == ["worse_than_probe"]


def test_flag_words_follow_the_interval_and_a_control_that_beats_every_rung_is_deployed():
    probe, lora = rung("linear_probe", 0.20), rung("lora", 0.22, seed=1)
    rule = climb(CFG, probe, lora)
    baseline = rung("pixels", 0.99, seed=8)
    flags, comparisons = transfer_flags(rule, [probe, lora], rung("scratch", 0.60, seed=9), baseline, ["full"])
    for flag in flags:
        if flag.kind in ("negative_transfer", "beats_recommended"):
            # Far better with an interval above zero: "reliably better", never "not reliably worse".
            assert flag.interval.low > 0 and "reliably better than" in flag.message
            assert "not reliably" not in flag.message.split(",")[0]
    estimates = {"linear_probe": 0.20, "lora": 0.22, "scratch": 0.60, "pixels": 0.99}
    best = best_rung(rule, [probe, lora]).id
    deploy = deploy_choice(rule.state.best.id, best, comparisons, estimates, ["full"])
    assert (deploy.kind, deploy.id) == ("baseline", "pixels") and deploy.basis.reference == best
    assert f"`{rule.state.best.id}`" in deploy.why  # the pretrained rung to use if pretraining is required
    # Without a control above every rung, the rung the climb recommends is what to deploy.
    flags, comparisons = transfer_flags(rule, [probe, lora], rung("scratch", 0.21, seed=10), None, [])
    deploy = deploy_choice(rule.state.best.id, best, comparisons, estimates, [])
    assert (deploy.kind, deploy.id) == ("rung", rule.state.best.id)


def test_a_cut_short_scratch_makes_every_comparison_with_it_a_lower_bound():
    probe, lora = rung("linear_probe", 0.50), rung("lora", 0.52, seed=1)
    rule = climb(CFG, probe, lora)
    why = "still improving when its step cap ended it"
    flags, comparisons = transfer_flags(
        rule, [probe, lora], rung("scratch", 0.51, seed=2), None, [], scratch_lower_bound=why
    )
    assert all(c.lower_bound for c in comparisons if c.kind == "vs_scratch")
    competitive = next(f for f in flags if f.kind == "scratch_competitive")
    assert competitive.lower_bound and "lower bound" in competitive.message and why in competitive.message


def test_cheap_baseline_flags_and_skipped_rungs_are_named():
    probe, lora = rung("linear_probe", 0.80), rung("lora", 0.70, seed=1)
    rule = climb(CFG, probe, lora)
    flags, _ = transfer_flags(rule, [probe, lora], None, rung("tfidf", 0.81, seed=5), ["full"])
    kinds = {f.kind: f for f in flags}
    assert "baseline_competitive" in kinds and "negative_transfer" not in kinds
    flags, _ = transfer_flags(rule, [probe, lora], None, rung("tfidf", 0.99, seed=6), ["full"])
    negative = next(f for f in flags if f.kind == "negative_transfer")
    assert "full" in negative.message  # a skipped deeper rung could change it, and the note says so
    flags, _ = transfer_flags(rule, [probe, lora], None, rung("tfidf", 0.40, seed=7), [])
    assert not {"baseline_competitive", "negative_transfer"} & {f.kind for f in flags}


def test_the_committed_schema_is_the_generated_one():
    """Regenerate with `python -m peft_ladder.ladder.note --write-schema` after changing the note models."""
    assert json.loads(SCHEMA_PATH.read_text()) == note_schema()


@pytest.mark.parametrize(
    "rungs, message",
    [
        ([{"name": "scratch"}], "control"),
        ([{"name": "lora"}, {"name": "lora"}], "used twice"),
        ([{"name": "lora", "lr": -1}], "greater than 0"),
        ([{"name": "nope"}], "nope"),
        ([{"name": "lora", "id": "x/../../.."}], "plain name"),
        ([{"name": "lora", "r": 0}], "r"),
    ],
)
def test_bad_rungs_are_rejected_with_the_rung_named(rungs, message):
    with pytest.raises(ValueError, match=message):
        LadderConfig(rungs=rungs)

"""The climb rule and the negative-transfer flags on predictions with known accuracies."""

from __future__ import annotations

import json

import numpy as np
import pytest

from peft_ladder.config import LadderConfig
from peft_ladder.ladder.decision import ClimbRule, RungPredictions
from peft_ladder.ladder.note import SCHEMA_PATH, note_schema

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


CFG = LadderConfig(bootstrap_samples=500)


def test_stops_when_the_next_gain_is_inside_the_noise():
    rule = climb(CFG, rung("linear_probe", 0.90), rung("lora", 0.91, seed=1), rung("full", 0.99, seed=2))
    assert rule.state.best.id == "linear_probe"
    assert (rule.state.stop_reason, rule.state.stopped_at) == ("no_reliable_gain", "lora")
    assert [c.candidate for c in rule.state.comparisons] == ["lora"]  # full never ran
    c = rule.state.comparisons[0].interval
    assert c.low <= 0 < c.high


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
    assert all(c.interval.low > 0 for c in rule.state.comparisons[:2])


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


def test_run_all_keeps_comparing_after_the_stop():
    cfg = LadderConfig(bootstrap_samples=500, run_all=True)
    rule = climb(cfg, rung("linear_probe", 0.60), rung("lora", 0.61, seed=1), rung("full", 0.95, seed=2))
    assert rule.state.stopped_at == "lora"
    assert rule.state.best.id == "full"  # a reliable gain seen with --all is not ignored


def test_flags_negative_transfer_and_a_rung_worse_than_the_probe():
    probe, full = rung("linear_probe", 0.70), rung("full", 0.40, seed=1)
    rule = climb(CFG, probe, full)
    flags, comparisons = rule.flags([probe, full], rung("scratch", 0.95, seed=2))
    kinds = {f.kind: f for f in flags}
    assert kinds["worse_than_probe"].rung == "full" and kinds["worse_than_probe"].interval.high < 0
    assert kinds["negative_transfer"].interval.low > 0
    assert {c.kind for c in comparisons} == {"vs_probe", "vs_scratch"}

    # Scratch within the noise of the best rung: "scratch competitive", not "negative transfer".
    flags, _ = rule.flags([probe, full], rung("scratch", 0.71, seed=3))
    assert [f.kind for f in flags if f.kind != "worse_than_probe"] == ["scratch_competitive"]
    # Scratch clearly worse: no transfer flag.
    flags, _ = rule.flags([probe, full], rung("scratch", 0.30, seed=4))
    assert [f.kind for f in flags] == ["worse_than_probe"]


def test_the_committed_schema_is_the_generated_one():
    """Regenerate with `python -m peft_ladder.ladder.note --write-schema` after changing the note models."""
    assert json.loads(SCHEMA_PATH.read_text()) == note_schema()


@pytest.mark.parametrize(
    "rungs, message",
    [
        ([{"name": "scratch"}], "control"),
        ([{"name": "lora"}, {"name": "lora"}], "used twice"),
        ([{"name": "lora", "lr": -1}], "positive"),
        ([{"name": "nope"}], "nope"),
    ],
)
def test_bad_rungs_are_rejected_with_the_rung_named(rungs, message):
    with pytest.raises(ValueError, match=message):
        LadderConfig(rungs=rungs)

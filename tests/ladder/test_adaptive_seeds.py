"""Adaptive seeds: an undecided climb step trains both rungs again (stochastic ones only, up to the cap), and
the comparison is recomputed over every seed; a decided step costs no extra run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from peft_ladder.config import LadderConfig, RungSpec
from peft_ladder.ladder.decision import ClimbRule
from peft_ladder.ladder.rung import RungRun, seed_until_decided
from peft_ladder.ladder.trial import TrialResult

N = 2000
LABELS = np.random.default_rng(0).integers(0, 4, N)
CFG = LadderConfig(bootstrap_samples=400)


def predictions(accuracy: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(100 + seed)
    preds = (LABELS + 1) % 4
    right = rng.choice(N, int(round(accuracy * N)), replace=False)
    preds[right] = LABELS[right]
    return preds


def trial(rung: str, accuracy: float, seed: int) -> TrialResult:
    preds = predictions(accuracy, seed)
    return TrialResult(
        rung, 1e-3, 1e-3, seed, Path("."), {}, {"decision_predictions": preds, "decision_labels": LABELS}
    )


def run(rung: str, accuracies: list[float], stochastic: bool = True) -> tuple[RungRun, list[float]]:
    """A rung that ran its first seed; the rest of `accuracies` are what its next seeds would reach."""
    spec = RungSpec(name="full" if stochastic else "linear_probe", id=rung)
    first = trial(rung, accuracies[0], 0)
    return RungRun(spec, "rung", Path("."), [first], [first], stochastic=stochastic), accuracies[1:]


def grower(pending: dict[str, list[float]], max_seeds: int, calls: list[str]):
    def add_seed(r: RungRun) -> bool:
        if not r.stochastic or len(r.seeded) >= max_seeds:
            return False
        r.seeded.append(trial(r.id, pending[r.id].pop(0), len(r.seeded)))
        calls.append(r.id)
        return True

    return add_seed


def test_an_undecided_step_grows_both_stochastic_rungs_to_the_cap():
    reference, ref_next = run("lora", [0.80, 0.80, 0.80])
    candidate, cand_next = run("full", [0.81, 0.81, 0.81])
    rule = ClimbRule(CFG, LABELS)
    rule.observe(reference.predictions("decision"))
    first = rule.compare(candidate.predictions("decision"))
    assert first.outcome == "uncertain"
    calls: list[str] = []
    final = seed_until_decided(
        rule, candidate, reference, first, grower({"lora": ref_next, "full": cand_next}, 3, calls)
    )
    assert calls == ["full", "lora", "full", "lora"]
    assert (final.interval.seeds, final.interval.reference_seeds) == (3, 3)
    assert final.outcome == "uncertain"  # a gain of 0.01 sits on the threshold: no seed count decides it


def test_a_deterministic_reference_never_gets_seeds():
    reference, _ = run("linear_probe", [0.80], stochastic=False)
    candidate, cand_next = run("lora", [0.81, 0.82, 0.80])
    rule = ClimbRule(CFG, LABELS)
    rule.observe(reference.predictions("decision"))
    calls: list[str] = []
    first = rule.compare(candidate.predictions("decision"))
    final = seed_until_decided(rule, candidate, reference, first, grower({"lora": cand_next}, 3, calls))
    assert calls == ["lora", "lora"] and len(reference.seeded) == 1
    assert (final.interval.seeds, final.interval.reference_seeds) == (3, 1)


def decided(ref_acc: float, cand_acc: float, seeds: int = 3, **kwargs):
    reference, ref_next = run("lora", [ref_acc] * seeds)
    candidate, cand_next = run("full", [cand_acc] * seeds)
    rule = ClimbRule(CFG, LABELS)
    rule.observe(reference.predictions("decision"))
    first = rule.compare(candidate.predictions("decision"))
    calls: list[str] = []
    grow = grower({"lora": ref_next, "full": cand_next}, seeds, calls)
    return first, seed_until_decided(rule, candidate, reference, first, grow, **kwargs), calls


def test_a_stop_trains_nothing_more():
    first, final, calls = decided(0.90, 0.60)
    assert first.outcome == final.outcome == "stop" and calls == []


def test_a_climb_is_confirmed_with_every_seed_before_it_is_taken():
    first, final, calls = decided(0.60, 0.90)
    assert first.outcome == final.outcome == "climb" and len(calls) == 4
    assert (final.interval.seeds, final.interval.reference_seeds) == (3, 3)
    # Without confirmation a first-seed climb is taken as it is.
    first, final, calls = decided(0.60, 0.90, confirm_climb=False)
    assert final.outcome == "climb" and calls == []

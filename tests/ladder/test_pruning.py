"""The pruning rules of the LR search (`peft_ladder/ladder/pruning.py`), on made-up per-row selection losses:
a trial is stopped only when it is behind an earlier one at the same step AND cannot catch up by its cap at
its recent rate, each by more than the noise of the paired per-row difference."""

from __future__ import annotations

import numpy as np
import pytest

from peft_ladder.ladder.pruning import Curve, Pruner
from peft_ladder.ladder.rung import search_order

ROWS = 200
NOISE = np.random.default_rng(0).normal(0, 0.3, ROWS)  # per-row spread, the same rows every evaluation


def rows(mean: float) -> np.ndarray:
    return np.clip(mean + NOISE, 0.0, None) + (mean - np.clip(mean + NOISE, 0.0, None).mean())


def curve(label: str, means: list[float], every: int = 10, final: bool = True) -> Curve:
    steps = np.arange(len(means)) * every
    return Curve(label, steps, np.stack([rows(m) for m in means]), final)


def running(means: list[float], every: int = 10) -> list[tuple[int, np.ndarray]]:
    return [(i * every, rows(m)) for i, m in enumerate(means)]


# An earlier LR that went from the probe's 1.0 down to 0.5 by step 100 and flattened there.
EARLIER = curve("lr 1.0e-03", [1.0, 0.8, 0.7, 0.62, 0.56, 0.52, 0.5, 0.5, 0.5, 0.5, 0.5])


def test_a_flat_trial_far_behind_is_pruned_at_the_first_look():
    pruner = Pruner([EARLIER], [], after=0)
    reason = pruner(running([1.0, 0.99, 0.985, 0.98]), max_steps=100)
    assert reason and "lr 1.0e-03" in reason


def test_a_slow_starter_that_improves_fast_enough_goes_on():
    # Behind at step 30 (0.85 against 0.62), but 0.05 per 10 steps would reach 0.5 well before step 100.
    pruner = Pruner([EARLIER], [], after=0)
    assert pruner(running([1.0, 0.95, 0.9, 0.85]), max_steps=100) is None


def test_a_trial_level_with_the_earlier_one_is_never_pruned():
    pruner = Pruner([EARLIER], [], after=0)
    assert pruner(running([1.0, 0.8, 0.7, 0.62, 0.56, 0.52, 0.5]), max_steps=100) is None
    # Flat 0.1 above it on every row is clearly worse (a paired gap with no noise): pruned.
    assert Pruner([EARLIER], [], after=0)(running([1.0, 0.8, 0.7, 0.62, 0.6, 0.6, 0.6]), max_steps=100)


def test_gaps_inside_the_noise_are_not_pruned():
    # Two rows only: the standard error of the paired gap is huge, so nothing is ever "clearly" behind.
    few = Curve("lr 1.0e-03", np.array([0, 10]), np.array([[0.1, 0.9], [0.1, 0.1]]), True)
    assert Pruner([few], [], after=0)([(0, np.array([1.0, 0.1])), (10, np.array([0.9, 0.2]))], max_steps=100) is None


def test_a_pruned_earlier_trial_says_nothing_past_its_last_step():
    # The earlier trial was itself pruned at step 20: past it, it is no same-step competitor.
    cut = curve("lr 3.0e-03", [1.0, 0.8, 0.7], final=False)
    assert not cut.covers(30) and cut.covers(20)
    # ... but as a model it reached 0.7, which a flat trial at 0.98 cannot reach either: pruned.
    assert Pruner([cut], [], after=0)(running([1.0, 0.99, 0.985]), max_steps=100)
    assert Pruner([cut], [], after=0)(running([1.0, 0.99, 0.985, 0.98]), max_steps=100) is None


def test_against_another_budget_only_the_catch_up_test_applies():
    # The scratch control against the solved probe (one point, final): far behind, but falling fast enough to
    # come level by its cap, it keeps its budget; once it flattens short of the probe it stops.
    probe = curve("linear_probe", [0.4])
    falling = running([1.4, 1.3, 1.2, 1.1, 1.0], every=30)
    assert Pruner([], [probe], after=0)(falling, max_steps=360) is None
    flat = running([1.4, 1.3, 1.25, 1.24, 1.235], every=30)
    assert Pruner([], [probe], after=0)(flat, max_steps=360)


def test_no_look_before_half_the_cap():
    # Under LP-FT a higher LR can sit at the probe's loss while its weights settle, then go lowest: the default
    # job's best LoRA LR had not beaten its start by step 30 of 120. Before half its cap nothing is pruned.
    stuck = running([1.0, 1.0, 1.0, 1.0])
    assert Pruner([EARLIER], [])(stuck, max_steps=120) is None
    assert Pruner([EARLIER], [])(running([1.0] * 7), max_steps=120)  # step 60: half the cap, still stuck


@pytest.mark.parametrize(
    "lrs, first",
    [([3e-4, 1e-3, 3e-3], 1e-3), ([1e-3, 3e-3, 1e-2, 3e-2], 3e-3), ([5e-4], 5e-4)],
)
def test_the_search_runs_the_grid_middle_first_then_outwards(lrs, first):
    order = search_order(lrs)
    assert order[0] == first and sorted(order) == sorted(lrs)
    middle = np.log(first)
    assert [abs(np.log(lr) - middle) for lr in order] == sorted(abs(np.log(lr) - middle) for lr in order)

"""The budget policy (`peft_ladder/budget.py`): step caps, the minimum budget, evaluation points, patience, and
what `converged` means. Pure functions on the config: no model."""

from __future__ import annotations

import itertools

import pytest

from peft_ladder.budget import StepBudget, StoppingState, convergence, observe
from peft_ladder.config import TrainConfig


def plan(steps_per_epoch: int, **train) -> StepBudget:
    return StepBudget.plan(TrainConfig(**train), steps_per_epoch)


@pytest.mark.parametrize("steps_per_epoch", [1, 2, 3, 6, 40, 500])
@pytest.mark.parametrize("epochs", [1, 3, 50])
@pytest.mark.parametrize("warmup_ratio", [0.0, 0.06, 0.3])
def test_no_trial_can_stop_inside_its_warmup_or_before_its_steps_at_peak(steps_per_epoch, epochs, warmup_ratio):
    budget = plan(steps_per_epoch, epochs=epochs, warmup_ratio=warmup_ratio)
    at_peak = max(20, steps_per_epoch)
    assert budget.warmup_steps == int(warmup_ratio * budget.max_steps)  # the schedule's own warmup
    assert budget.min_steps == budget.warmup_steps + at_peak <= budget.max_steps
    assert budget.max_steps >= epochs * steps_per_epoch
    assert budget.raised == (budget.max_steps > epochs * steps_per_epoch)
    # The evaluations: the start, every eval_every steps, the cap.
    points = [s for s in range(budget.max_steps + 1) if budget.evaluates_at(s)]
    assert points[0] == 0 and points[-1] == budget.max_steps
    assert budget.eval_every == min(max(steps_per_epoch, 10), 200)


def test_a_short_epoch_is_evaluated_every_ten_steps_and_a_long_one_every_epoch():
    assert plan(2, epochs=50).eval_every == 10
    assert plan(40, epochs=3).eval_every == 40
    assert plan(3, epochs=50, early_stopping={"eval_every_steps": 4}).eval_every == 4


def run_losses(budget: StepBudget, losses: list[float], enabled: bool = True) -> tuple[StoppingState, int]:
    """Feed one loss per evaluation point until the budget stops; returns the state and the last step."""
    state = StoppingState()
    points = (s for s in range(budget.max_steps + 1) if budget.evaluates_at(s))
    step = 0
    for step, loss in zip(points, itertools.chain(losses, itertools.repeat(losses[-1]))):
        observe(state, budget, loss, step, enabled=enabled)
        if state.stopped:
            break
    return state, step


def test_patience_is_spent_only_after_the_minimum_budget():
    budget = plan(2, epochs=50, warmup_ratio=0.06)  # 100 steps, warmup 6, minimum 26, evaluation every 10
    # The loss rises through warmup (the LR spike), then falls and flattens.
    state, step = run_losses(budget, [1.0, 1.2, 1.3, 1.25, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7])
    assert state.stopped and step >= budget.min_steps
    assert state.best_step == 50 and state.bad_evals == budget.patience
    record = convergence(state, budget, step, restored=True)
    assert record.converged and not record.cut_short and record.stop_reason == "patience"


def test_a_trial_still_improving_at_the_cap_is_cut_short_never_converged():
    budget = plan(3, epochs=20)
    losses = [1.0 - 0.01 * i for i in range(100)]
    state, step = run_losses(budget, losses)
    assert not state.stopped and step == budget.max_steps
    record = convergence(state, budget, step, restored=False)
    assert record.still_improving and record.cut_short and not record.converged
    assert record.stop_reason == "budget"


def test_a_loss_that_flattened_before_the_cap_is_converged_with_stopping_off():
    budget = plan(3, epochs=20)
    state, step = run_losses(budget, [1.0, 0.5, 0.4] + [0.4] * 20, enabled=False)
    assert not state.stopped and step == budget.max_steps
    record = convergence(state, budget, step, restored=True)
    assert record.converged and not record.cut_short and record.stop_reason == "budget"


def test_a_start_that_is_never_beaten_is_the_best():
    budget = plan(4, epochs=20)
    state, _ = run_losses(budget, [0.3, 0.9, 0.8, 0.7, 0.6, 0.6])
    assert state.best_step == 0 and state.stopped


def test_stopping_state_round_trips_through_strict_json():
    import json

    state = StoppingState()
    again = StoppingState.from_dict(json.loads(json.dumps(state.to_dict(), allow_nan=False)))
    assert again == state


def test_a_cap_soon_after_the_best_is_cut_short_but_not_still_improving():
    budget = plan(10, epochs=6, warmup_ratio=0.06)  # 60 steps, minimum 23, evaluation every 10
    state, step = run_losses(budget, [0.607, 0.60, 0.53, 0.59, 0.518, 0.522, 0.520])  # the default job's LoRA
    assert step == budget.max_steps and state.best_step == 40 and state.bad_evals == 2
    record = convergence(state, budget, step, restored=True)
    assert record.cut_short and not record.still_improving and not record.converged

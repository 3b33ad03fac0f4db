"""The budget policy of one trial, in optimizer steps: how long it may train, when it is evaluated, and when
early stopping may end it. One place, so a reader sees every rule whole.

Why steps and not epochs: with few labels an epoch is 2-6 optimizer steps, so "patience 2 epochs" ended
trials inside their LR warmup and called them converged (a LoRA rung trained 6 steps, all in warmup; a partial
unfreeze stopped at step 18 with its selection accuracy still rising). The rules:

1. The cap is `train.epochs` x steps per epoch, raised when smaller than the minimum budget.
2. The minimum budget is the warmup plus `min_steps_at_peak` steps at the peak LR (at least one epoch): no
   trial stops before it.
3. Evaluation on the selection rows happens every `eval_every` steps (every epoch, but no more often than
   every 10 steps and at least every 200), once before the first update (the starting point: under LP-FT
   the probe), and at the cap.
4. Patience counts evaluations after the minimum budget without an improvement of `min_delta`.
5. `converged` means the loss flattened: patience ran out after the minimum, or the cap came after `patience`
   evaluations without improvement. A trial the cap ended while it still improved is `still_improving` and
   `cut_short`; the two verdicts never meet.
6. A search rule may end a trial after its minimum budget (`pruned`, with the reason; the ladder's
   `pruning.py`): it is `cut_short`, never `converged`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from peft_ladder.results import Convergence

if TYPE_CHECKING:
    from peft_ladder.config import TrainConfig

EVAL_EVERY_MIN = 10  # steps: a 2-step epoch evaluated each epoch would spend patience 3 in 6 steps
EVAL_EVERY_MAX = 200  # steps: a long epoch still gets a look (and a chance to stop) this often


def warmup_steps(total: int, ratio: float) -> int:
    """Warmup length of a phase of `total` steps (the schedule's own rule: `schedule.py`)."""
    return int(ratio * total)


@dataclass(frozen=True)
class StepBudget:
    """The main phase's budget of one trial.

    Attributes:
        steps_per_epoch: optimizer steps in one pass over the training rows.
        max_steps: the cap.
        warmup_steps: steps of linear LR warmup at the start of the main phase.
        min_steps: no stop before this main-phase step (warmup + steps at peak LR).
        eval_every: main-phase steps between evaluations.
        patience: evaluations after `min_steps` without improvement before stopping.
        min_delta: the smallest loss decrease that counts as an improvement.
        raised: the cap was raised from `train.epochs` to reach the minimum.
    """

    steps_per_epoch: int
    max_steps: int
    warmup_steps: int
    min_steps: int
    eval_every: int
    patience: int
    min_delta: float
    raised: bool = False

    @classmethod
    def plan(cls, train: TrainConfig, steps_per_epoch: int) -> StepBudget:
        es = train.early_stopping
        cap = train.epochs * steps_per_epoch
        at_peak = max(es.min_steps_at_peak, steps_per_epoch)
        max_steps = cap
        while max_steps - warmup_steps(max_steps, train.warmup_ratio) < at_peak:
            max_steps = max(max_steps + 1, math.ceil(at_peak / (1 - train.warmup_ratio)))
        warmup = warmup_steps(max_steps, train.warmup_ratio)
        if es.eval_every_steps == "auto":
            eval_every = min(max(steps_per_epoch, EVAL_EVERY_MIN), EVAL_EVERY_MAX)
        else:
            eval_every = es.eval_every_steps
        return cls(
            steps_per_epoch=steps_per_epoch,
            max_steps=max_steps,
            warmup_steps=warmup,
            min_steps=min(max_steps, warmup + at_peak),
            eval_every=eval_every,
            patience=es.patience,
            min_delta=es.min_delta,
            raised=max_steps > cap,
        )

    def evaluates_at(self, main_step: int) -> bool:
        """Whether the selection rows are evaluated after this main-phase step (0: before the first update)."""
        return main_step == 0 or main_step % self.eval_every == 0 or main_step == self.max_steps

    def describe(self) -> str:
        epochs = self.max_steps / self.steps_per_epoch
        raised = " (raised from train.epochs to reach the minimum)" if self.raised else ""
        return (
            f"budget: at most {self.max_steps} steps ({epochs:.1f} epochs of {self.steps_per_epoch}){raised}; "
            f"warmup {self.warmup_steps}; no stop before step {self.min_steps}; evaluation every {self.eval_every} "
            f"steps; patience {self.patience} evaluations"
        )


@dataclass
class StoppingState:
    """Early stopping's state (saved in every checkpoint through `TrainState`)."""

    best_loss: float = math.inf
    best_step: int = 0
    patience_loss: float = math.inf  # the last loss that improved by min_delta
    bad_evals: int = 0  # evaluations after the minimum budget without such an improvement
    stopped: bool = False
    pruned: str | None = None  # why a search rule (the ladder's `pruning.py`) ended the trial early

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> StoppingState:
        values = {k: (math.inf if v is None and k.endswith("loss") else v) for k, v in state.items()}
        return cls(**values)


def observe(state: StoppingState, budget: StepBudget, loss: float, main_step: int, *, enabled: bool) -> bool:
    """Record one evaluation's selection loss; returns whether it is the best so far (its weights to keep).

    Patience is spent only after the minimum budget; before it, an evaluation without improvement is free.
    """
    best = loss < state.best_loss
    if best:
        state.best_loss, state.best_step = loss, main_step
    if loss < state.patience_loss - budget.min_delta:
        state.patience_loss, state.bad_evals = loss, 0
    elif main_step >= budget.min_steps:
        state.bad_evals += 1
    if enabled and state.bad_evals >= budget.patience and main_step >= budget.min_steps:
        state.stopped = main_step < budget.max_steps
    return best


# How a stepped trial's main phase ended, in the note's and the log's words. "patience" alone read as a
# contradiction beside "best at step 350 of 350": the loss was still inching down, by less than min_delta.
# "flattened": patience ran out, each evaluation under min_delta better than the last that counted.
ENDING_WORDS = {"patience": "flattened", "budget": "the cap"}


def describe_ending(stopping: Convergence | dict[str, Any]) -> str:
    """'best at step 60; stopped at step 90 of 120 (flattened)' for a stepped trial's `Convergence`."""
    c = stopping if isinstance(stopping, dict) else stopping.model_dump()
    reason = ENDING_WORDS.get(c["stop_reason"], c["stop_reason"])
    return f"best at step {c['best_step']}; stopped at step {c['steps_run']} of {c['max_steps']} ({reason})"


def convergence(state: StoppingState, budget: StepBudget, steps_run: int, *, restored: bool) -> Convergence:
    """How the main phase ended, by the rules in this module's docstring.

    At the cap without a flattened loss the trial is cut short: patience had no chance to judge it. It is
    `still_improving` when its last evaluation was an improvement past its start; otherwise it had fewer than
    `patience` evaluations since its best (or never beat its start): more steps may or may not help, so it is
    cut short all the same, never converged.
    """
    flattened = state.bad_evals >= budget.patience and steps_run >= budget.min_steps and not state.pruned
    reason = "pruned" if state.pruned else "patience" if state.stopped else "budget"
    cut_short = not flattened
    return Convergence(
        method="steps",
        converged=flattened,
        still_improving=cut_short and not state.pruned and state.bad_evals == 0 and state.best_step > 0,
        stop_reason=reason,
        cut_short=cut_short,
        max_steps=budget.max_steps,
        min_steps=budget.min_steps,
        warmup_steps=budget.warmup_steps,
        eval_every=budget.eval_every,
        steps_run=steps_run,
        best_step=state.best_step,
        best_loss=state.best_loss if math.isfinite(state.best_loss) else None,
        restored_best=restored,
        steps_per_epoch=budget.steps_per_epoch,
        pruned_because=state.pruned,
    )

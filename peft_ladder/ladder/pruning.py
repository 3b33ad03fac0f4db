"""When a trial of the LR search (or the scratch control) stops early because it cannot matter.

Trials run one after another, the most likely LR first, so every later trial is judged against finished
ones. At each evaluation past its minimum budget (never inside warmup) and past `after` of its step cap, a trial
is pruned when, against some earlier trial,

1. it is behind now: its best selection loss so far is worse than the earlier trial's best at the same step
   (successive halving's comparison: the same steps, the same schedule position), and
2. it cannot catch up: even if it kept improving at its recent rate until its cap (a straight line, which
   over-states what a flattening curve will do), it would still end worse than the earlier trial's best.

Why not look earlier: under LP-FT a higher LR first sits at (or above) the probe's loss while the new weights
settle, then falls lowest. On the default job the LR that ended best (LoRA 1.5e-3) had not beaten its start
by step 30 of 120; a look there pruned it. Half the cap is successive halving's first rung at reduction 2.

"Worse" means by more than `z` standard errors of the paired per-row loss difference on the selection rows
(and more than `min_delta`, early stopping's own threshold). The selection rows decide; the decision rows are
never read here. Against a trial of another budget (the scratch control against the best pretrained rung) only
the second test applies: the control keeps its budget while it could still come level with the rung.

Why not Optuna's `SuccessiveHalvingPruner`: with a handful of sequential trials it keeps a trial only while it
is the best of those that reached a rung (its own comment says so for the first `eta - 1`), with no notion of
noise; on 60-400 selection rows that drops LRs the rows cannot tell apart, and a slow starter (a low LR under
LP-FT) is dropped for being slow rather than for being worse. The two tests above are a dozen lines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Curve:
    """A trial's selection losses at its main-phase evaluations.

    Attributes:
        label: how the note and log name the trial ("lr 3.0e-04").
        steps: main-phase steps of the evaluations, ascending.
        losses: (evaluations, selection rows) per-row losses.
        final: the trial ran to its own end (patience or cap); a pruned trial's curve stops early.
    """

    label: str
    steps: np.ndarray
    losses: np.ndarray
    final: bool

    def best_upto(self, step: int) -> int | None:
        """The evaluation with the lowest mean loss among those at or before `step` (None: none yet)."""
        upto = np.flatnonzero(self.steps <= step)
        if len(upto) == 0:
            return None
        return int(upto[np.argmin(self.losses[upto].mean(1))])

    def covers(self, step: int) -> bool:
        """Whether the curve says where the trial stood at `step`: it got there, or it ended (flattened or
        capped) before it; a pruned trial never went further, so nothing is known past its last step."""
        return len(self.steps) > 0 and (self.final or self.steps[-1] >= step)


def paired_gap(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """mean(a - b) over the same rows, and its standard error."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else math.inf
    return float(d.mean()), se


@dataclass
class Pruner:
    """The two tests of this module's docstring for one running trial (an `Engine` pruner).

    Args:
        same_budget: earlier trials of the same search (tests 1 and 2).
        other_budget: trials of another budget (test 2 only).
        z: standard errors of the paired difference a gap must exceed.
        min_delta: and the loss gap must exceed this.
        after: share of its cap the running trial trains before any look (successive halving's first rung).
        lookback: evaluations over which the recent rate of improvement is measured.
    """

    same_budget: list[Curve]
    other_budget: list[Curve]
    z: float = 2.0
    min_delta: float = 1e-3
    after: float = 0.5
    lookback: int = 2
    reason: str | None = None

    def __call__(self, curve: Sequence[tuple[int, np.ndarray]], max_steps: int) -> str | None:
        """`curve`: the running trial's (main step, per-row selection losses) so far; a reason to stop, or None."""
        step = curve[-1][0]
        if step < self.after * max_steps:
            return None
        mine = Curve("this trial", np.array([s for s, _ in curve]), np.stack([np.asarray(r) for _, r in curve]), False)
        now = mine.best_upto(step)
        rows = mine.losses[now]
        projected = rows.mean() - self._rate(mine) * (max_steps - step)
        for other in [*self.same_budget, *self.other_budget]:
            same = any(other is c for c in self.same_budget)
            if same:
                if not other.covers(step):
                    continue
                there = other.best_upto(step)
                if there is None:
                    continue
                gap, se = paired_gap(rows, other.losses[there])
                if gap <= max(self.z * se, self.min_delta):
                    continue
            best = other.best_upto(int(other.steps[-1])) if len(other.steps) else None
            if best is None:
                continue
            reach, se = paired_gap(rows - (rows.mean() - projected), other.losses[best])
            if reach <= max(self.z * se, self.min_delta):
                continue
            self.reason = (
                f"selection loss {rows.mean():.4f} at step {step}"
                + (f", behind {other.label} at the same step ({other.losses[there].mean():.4f})" if same else "")
                + f"; at its recent rate it would reach {projected:.4f} by step {max_steps}, short of "
                f"{other.label}'s {other.losses[best].mean():.4f} by more than {self.z:g} standard errors"
            )
            return self.reason
        return None

    def _rate(self, mine: Curve) -> float:
        """Loss decrease per step of the best-so-far curve over the last `lookback` evaluations (0 if none)."""
        if len(mine.steps) < 2:
            return 0.0
        back = max(0, len(mine.steps) - 1 - self.lookback)
        then = mine.best_upto(int(mine.steps[back]))
        drop = mine.losses[then].mean() - mine.losses[mine.best_upto(int(mine.steps[-1]))].mean()
        return max(0.0, float(drop) / max(1, int(mine.steps[-1] - mine.steps[back])))

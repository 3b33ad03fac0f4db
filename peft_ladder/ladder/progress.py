"""`LadderProgress`: one line for the whole ladder (which phase, trials done of those planned, time left), above
the engine's per-trial bar, and one log line at each phase change for logs without a terminal.

The plan changes while the ladder runs: adaptive seeds and LR extensions add trials, early stopping ends trials
before their step cap, the climb's end skips the deeper rungs, and `--resume` finds trials already done. So the
plan is a set of counters the ladder updates (`plan`, `add_planned`, `skip`, `finish`, `trial_done`), and the
estimate is recomputed from them each time.

The estimate (`seconds_left`) counts trials only, on three assumptions:
1. A remaining trial runs the share of its step cap that the trials so far ran (early stopping), measured over
   every trained trial.
2. It runs at its rung's measured seconds per optimizer step (evaluations and setup included); a rung with no
   trained trial yet runs at the mean of all trained trials. Deeper rungs are slower per step, so the estimate
   is low until their first trial ends.
3. Its step cap is its rung's last one; a rung with no trial yet has the latest cap times its `cap_scale` (the
   scratch control's budget multiple).
A solved trial (no optimizer steps) takes its rung's mean time per trial, or none before one ran (a solved
probe takes seconds). Frozen evidence, the baseline and the note are not estimated: they are short beside the
trials. Before any trial has trained there is no estimate. A phase running in a second
process beside the others (`beside`: the scratch control) is not counted: it ends while they run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tqdm.auto import tqdm

logger = logging.getLogger(__name__)


@dataclass
class PhaseCount:
    """One phase's trials: planned, done, and what the trained ones measured.

    Attributes:
        name: the phase (a rung id, "scratch", "frozen evidence", ...).
        planned: trials planned (never below `done`).
        done: trials finished: trained, reused by --resume, or failed.
        cap_scale: this phase's step cap as a multiple of the rungs' (the scratch control's budget).
        solved: its trials are solved, not trained in steps (the L-BFGS probe).
        skipped: the ladder will not run it (the climb ended first).
        beside: its trials run in a second process beside the others (the control): not in the time left.
        measured: trained trials whose time counts (not reused, not failed).
        seconds, steps, cap_steps: their wall seconds, optimizer steps run and step caps, summed.
        cap: the step cap of its latest trained trial.
    """

    name: str
    planned: int = 0
    done: int = 0
    cap_scale: float = 1.0
    solved: bool = False
    skipped: bool = False
    beside: bool = False
    measured: int = 0
    seconds: float = 0.0
    steps: int = 0
    cap_steps: int = 0
    cap: int | None = None


class LadderProgress:
    """The ladder's progress line and its estimate of the time left.

    Args:
        phases: every phase in the order the ladder runs them.
        enabled: show the line (the main process; tqdm also hides it when the output is not a terminal).
        log: where the phase-change lines go (default: this module's logger, which writes above the bars).

    Example:
        >>> p = LadderProgress(["frozen evidence", "lora", "note"], enabled=False)
        >>> p.plan("lora", 3)
        >>> p.trial_done("lora", steps_run=50, max_steps=100, seconds=10.0)
        >>> p.seconds_left()  # 2 trials x 100-step cap x 50% of the cap run x 0.2 s per step
        20.0
    """

    def __init__(self, phases: Sequence[str], *, enabled: bool = True, log: Callable[[str], None] | None = None):
        self.phases = {name: PhaseCount(name) for name in phases}  # a repeated name is one phase
        self.current: str | None = None
        self.log = log or logger.info
        self._unit_cap: float | None = None  # the rungs' step cap (a cap divided by its phase's cap_scale)
        self.bar = tqdm(
            total=0,
            desc="ladder",
            unit="trial",
            position=0,  # the engine's per-trial bars take the next free line
            leave=True,
            dynamic_ncols=True,
            bar_format="{desc}: {n_fmt}/~{total_fmt} trials{postfix}",
            disable=None if enabled else True,  # None: tqdm hides it when the output is not a terminal
        )

    # ---- the plan ----------------------------------------------------------------------------------
    def plan(self, phase: str, trials: int, *, solved: bool = False, cap_scale: float = 1.0) -> None:
        """Set a phase's planned trials (its LR grid and fixed seeds), whether they are solved, and its cap scale."""
        p = self._phase(phase)
        p.planned, p.solved, p.cap_scale = max(trials, p.done), solved, cap_scale
        self._refresh()

    def add_planned(self, phase: str, trials: int = 1) -> None:
        """More trials in `phase` (an adaptive seed, an LR past the grid's edge)."""
        p = self._phase(phase)
        p.planned += trials
        p.skipped = False
        self._refresh()

    def skip(self, phase: str) -> None:
        """The ladder will not run what is left of `phase` (the climb ended before it)."""
        p = self._phase(phase)
        p.planned, p.skipped = p.done, True
        self._refresh()

    def beside(self, phase: str) -> None:
        """`phase` runs in a second process beside the others: its trials leave the time left (the ladder waits
        for it only if it is still running when the others are done)."""
        self._phase(phase).beside = True
        self._refresh()

    def finish(self, phase: str) -> None:
        """`phase` has run all it will for now: trials planned but not run (a rung that failed) are dropped."""
        p = self._phase(phase)
        p.planned = p.done
        self._refresh()

    # ---- what ran ----------------------------------------------------------------------------------
    def start(self, phase: str) -> None:
        """Enter `phase`, and say so in one log line."""
        self._phase(phase)
        self.current = phase
        self._refresh()
        self.log(self.summary())

    def trial_done(
        self,
        phase: str,
        *,
        steps_run: int | None,
        max_steps: int | None,
        seconds: float,
        reused: bool = False,
        failed: bool = False,
    ) -> None:
        """A trial of `phase` finished.

        Args:
            phase: its rung's phase (an adaptive seed of an earlier rung counts there, not in the current phase).
            steps_run: main-phase optimizer steps it trained; None when solved.
            max_steps: its step cap; None when solved.
            seconds: its wall time.
            reused: found finished by --resume: done, but its (near zero) time says nothing about speed.
            failed: it diverged: done, but its steps are not known.
        """
        p = self._phase(phase)
        p.done += 1
        p.planned = max(p.planned, p.done)  # a trial beyond the plan (an LR extension) joins it
        if not (reused or failed):
            p.measured += 1
            p.seconds += seconds
            if steps_run is not None and max_steps:
                p.steps += steps_run
                p.cap_steps += max_steps
                p.cap = max_steps
                self._unit_cap = max_steps / p.cap_scale
        self._refresh()

    def close(self) -> None:
        self.bar.close()

    # ---- the numbers -------------------------------------------------------------------------------
    @property
    def planned(self) -> int:
        return sum(p.planned for p in self.phases.values())

    @property
    def done(self) -> int:
        return sum(p.done for p in self.phases.values())

    def seconds_left(self) -> float | None:
        """The estimated seconds of the trials still planned (module docstring: what it assumes), or None
        before any trial has trained."""
        phases = list(self.phases.values())
        stepped = [p for p in phases if p.steps > 0]
        steps, cap_steps = sum(p.steps for p in stepped), sum(p.cap_steps for p in stepped)
        mean_rate = sum(p.seconds for p in stepped) / steps if steps else None  # seconds per step
        share_run = steps / cap_steps if cap_steps else None  # the share of its cap a trial runs
        if not any(p.measured for p in phases):
            return None
        left = 0.0
        for p in phases:
            remaining = p.planned - p.done
            if remaining <= 0 or p.beside:
                continue
            if p.solved:
                left += remaining * (p.seconds / p.measured if p.measured else 0.0)
                continue
            rate = p.seconds / p.steps if p.steps else mean_rate
            cap = p.cap if p.cap is not None else None if self._unit_cap is None else self._unit_cap * p.cap_scale
            if rate is None or cap is None or share_run is None:
                return None  # only solved trials so far: nothing says how long a step takes
            left += remaining * rate * cap * share_run
        return left

    def summary(self) -> str:
        """One line: the phase, its place among the phases, the trial count, and the time left."""
        names = list(self.phases)
        head = "ladder"
        if self.current is not None:
            head += f": phase {names.index(self.current) + 1}/{len(names)} {self.current}"
        p = self.phases.get(self.current) if self.current is not None else None
        if p is not None and p.planned > p.done:
            head += f" (trial {self.done + 1} of ~{self.planned})"
        elif self.planned:
            head += f" ({self.done} of ~{self.planned} trials done)"
        return f"{head}; {self._left_words()}"

    def _left_words(self) -> str:
        if self.planned and self.planned == self.done:
            return "no trials left"
        if self.current is not None and self.phases[self.current].beside:  # the others are done: only it is left
            return "waiting for it to finish in its second process"
        left = self.seconds_left()
        words = "time left not known until a trial has trained" if left is None else f"about {_duration(left)} left"
        beside = [p.name for p in self.phases.values() if p.beside and p.planned > p.done]  # not current: above
        return words + (f", besides {' and '.join(beside)} in a second process" if beside else "")

    def _phase(self, phase: str) -> PhaseCount:
        # A phase the plan did not name joins it at the end: a progress line never stops a ladder.
        return self.phases.setdefault(phase, PhaseCount(phase))

    def _refresh(self) -> None:
        if self.bar.disable:
            return
        names = list(self.phases)
        where = f" {names.index(self.current) + 1}/{len(names)} {self.current}" if self.current else ""
        self.bar.set_description_str(f"ladder{where}", refresh=False)
        self.bar.total, self.bar.n = self.planned, self.done
        self.bar.set_postfix_str(self._left_words(), refresh=False)
        self.bar.refresh()


def _duration(seconds: float) -> str:
    """Rounded for a reader: '40 s', '7 min', '2.3 h'."""
    if seconds < 90:
        return f"{max(round(seconds), 1)} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"

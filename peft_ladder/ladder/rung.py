"""One rung of the ladder: its LR search (extended one grid step past an edge the best LR sits on), and its
training seeds at the chosen LR. Every choice here is made on the selection part of validation; the
decision part is only read by the climb rule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from peft_ladder.config import LRSearchConfig, RungSpec
from peft_ladder.engine import Diverged
from peft_ladder.ladder.decision import ClimbRule, Comparison, RungPredictions
from peft_ladder.ladder.trial import TrialResult, TrialRunner
from peft_ladder.strategies import get_strategy


@dataclass
class FailedTrial:
    """A trial that stopped because training diverged (or its solver failed), with the reason."""

    lr: float | None
    seed: int
    reason: str


class RungFailed(RuntimeError):
    """Every trial of a rung failed; the ladder records the rung as failed and goes on."""

    def __init__(self, rung: str, failures: list[FailedTrial]):
        super().__init__(f"every trial of {rung} failed: {failures[-1].reason}" if failures else f"{rung} failed")
        self.rung = rung
        self.failures = failures


@dataclass
class RungRun:
    """A rung that ran: every LR tried (first seed), the chosen trial, and its other seeds.

    Attributes:
        spec: the rung as run (partial_unfreeze's last_k filled in from the depth curve when not fixed).
        role: "rung" or "scratch".
        folder: the rung's folder (one sub-folder per trial).
        search: trials of the first seed, in the order run (extensions last).
        seeded: the chosen LR's trials, one per seed, the first seed's first.
        lr_edge: "low" / "high" when the chosen LR is still at an edge of what was searched.
        extended: LRs added past the grid's edge.
        stochastic: whether another seed trains a different model (the solved probe does not).
    """

    spec: RungSpec
    role: str
    folder: Path
    search: list[TrialResult]
    seeded: list[TrialResult]
    lr_edge: str | None = None
    extended: list[float] = field(default_factory=list)
    stochastic: bool = True
    failures: list[FailedTrial] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def chosen(self) -> TrialResult:
        return self.seeded[0]

    def predictions(self, split: str) -> RungPredictions:
        return RungPredictions(self.id, self.spec.name, [t.preds(split) for t in self.seeded])


class RungRunner:
    """Runs rungs through a `TrialRunner` with the ladder's LR search and seeds.

    Args:
        trials: the trial runner.
        output_dir: the ladder's folder (rungs live under `rungs/`).
        search: the LR grid and its extension rule.
        metric: what the selection part ranks trials by.
        base_head_lr: the recipe's head LR (deeper rungs keep at least this for the head).
    """

    def __init__(self, trials: TrialRunner, output_dir: Path, search: LRSearchConfig, metric: str, base_head_lr: float):
        self.trials = trials
        self.output_dir = output_dir
        self.search = search
        self.metric = metric
        self.base_head_lr = base_head_lr

    def run(
        self,
        index: int,
        spec: RungSpec,
        role: str,
        seed: int,
        head_state: dict[str, torch.Tensor] | None = None,
    ) -> RungRun:
        strategy = get_strategy(spec.name)
        folder = self.output_dir / "rungs" / f"{index:02d}_{spec.id}"
        solved = spec.options.get("solver") == "lbfgs"
        if solved:  # a convex problem solved to convergence: nothing to search, no seed changes it
            trial = self.trials.run(
                spec, folder / f"solved_seed{seed}", role=role, lr=None, seed=seed, head_lr=self.base_head_lr
            )
            return RungRun(spec, role, folder, [trial], [trial], stochastic=False)
        if strategy.trains_backbone:
            base = spec.lr or strategy.default_lr or self.trials.config.train.backbone_lr
        else:
            base = spec.lr or self.base_head_lr
        failures: list[FailedTrial] = []
        run_one = self._runner(spec, role, folder, seed, head_state, failures)
        tried = [base * m for m in self.search.multipliers]
        search = [t for t in map(run_one, tried) if t is not None]
        if not search:
            raise RungFailed(spec.id, failures)
        extended: list[float] = []
        multipliers = self.search.multipliers
        if len(multipliers) > 1:
            low_step, high_step = multipliers[1] / multipliers[0], multipliers[-1] / multipliers[-2]
            for _ in range(self.search.extend):
                best, lrs = self._best(search), sorted(tried)
                if best.lr == lrs[-1] and lrs[-1] * high_step <= self.search.max_lr:
                    extended.append(lrs[-1] * high_step)
                elif best.lr == lrs[0]:
                    extended.append(lrs[0] / low_step)
                else:
                    break
                tried.append(extended[-1])
                trial = run_one(extended[-1])
                search += [trial] if trial is not None else []
        best = self._best(search)
        lrs = sorted(tried)  # a diverged LR bounds the search as well as a worse one does
        edge = None
        if len(lrs) > 1:
            edge = "high" if best.lr == lrs[-1] else "low" if best.lr == lrs[0] else None
        return RungRun(spec, role, folder, search, [best], edge, extended, failures=failures)

    def add_seed(
        self, run: RungRun, seed: int, head_state: dict[str, torch.Tensor] | None = None
    ) -> TrialResult | None:
        """Train the chosen LR once more with `seed` (adaptive seeds, or the recipe's list); None if it failed."""
        trial = self._runner(run.spec, run.role, run.folder, seed, head_state, run.failures)(run.chosen.lr)
        if trial is not None:
            run.seeded.append(trial)
        return trial

    def _runner(self, spec: RungSpec, role: str, folder: Path, seed: int, head_state, failures: list[FailedTrial]):
        def run_one(lr: float) -> TrialResult | None:
            try:
                return self.trials.run(
                    spec,
                    folder / f"lr{lr:.2e}_seed{seed}",
                    role=role,
                    lr=lr,
                    seed=seed,
                    head_lr=self.base_head_lr,
                    head_state=head_state,
                )
            except Diverged as err:  # recorded, and the search goes on without it
                failures.append(FailedTrial(lr, seed, str(err)))
                return None

        return run_one

    def _best(self, trials: list[TrialResult]) -> TrialResult:
        return max(trials, key=lambda t: t.selection_score(self.metric))  # ties: the first (the grid's order)


def seed_until_decided(
    rule: ClimbRule,
    candidate: RungRun,
    reference: RungRun,
    comparison: Comparison,
    add_seed: Callable[[RungRun], bool],
    report: Callable[[str], None] = lambda _: None,
    *,
    confirm_climb: bool = True,
) -> Comparison:
    """Adaptive seeds: while a climb step is uncertain, train both rungs once more (`add_seed` says whether
    a rung could take another), so the interval carries their run-to-run variation; stop when the step is
    decided or neither rung can grow. With `confirm_climb`, a "climb" also keeps adding seeds until neither
    rung can grow: one lucky run must not push the ladder deeper (the failure this tool exists to prevent),
    while a "stop" needs no confirmation (it keeps the simpler rung)."""
    while comparison.outcome == "uncertain" or (confirm_climb and comparison.outcome == "climb"):
        grown = [add_seed(run) for run in (candidate, reference)]
        if not any(grown):
            break
        rule.state.best = reference.predictions("decision")
        comparison = rule.compare(candidate.predictions("decision"))
        iv = comparison.interval
        report(
            f"ladder: {candidate.id} vs {reference.id} was undecided; with {len(candidate.seeded)} and "
            f"{len(reference.seeded)} seeds: {iv.estimate:+.4f} [{iv.low:+.4f}, {iv.high:+.4f}] -> {comparison.outcome}"
        )
    return comparison

"""One rung of the ladder: its LR search (extended past an edge the best LR sits on alone), the choice among
LRs the selection rows cannot tell apart, and its training seeds at the chosen LR. Every choice here is made on
the selection part of validation; the decision part is only read by the climb rule."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from peft_ladder.backbones.families import Family
from peft_ladder.config import LRSearchConfig, RungSpec, ScratchConfig
from peft_ladder.engine import Diverged
from peft_ladder.ladder.decision import ClimbRule, Comparison, RungPredictions
from peft_ladder.ladder.pruning import Curve, Pruner
from peft_ladder.ladder.stats import bootstrap, point_estimate
from peft_ladder.ladder.trial import TrialResult, TrialRunner
from peft_ladder.metrics import higher_is_better
from peft_ladder.strategies import get_strategy

SELECTION = "validation"  # the selection part of validation (the decision part is held out from every choice)
# Replicates of the paired bootstrap that measures f1_macro's selection noise: a standard error, not a tail
# quantile, so a few hundred suffice; fixed seed, so the same trials always give the same choice.
TIE_BOOTSTRAP_SAMPLES = 500
ONE_SE = 0.6827  # the central share of a normal distribution within one standard deviation


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
        search: trials of the first seed, in the order run (the grid's middle first, extensions last); pruned
            ones included (`TrialResult.pruned`).
        seeded: the chosen LR's trials, one per seed, the first seed's first (`search`'s chosen member).
        lr_edge: "low" / "high" when the best LR sits alone (no other LR tied with it) at that edge of what was
            searched, even after the extension.
        extended: LRs added past the grid's edge.
        tied: the LRs tied with the best on the selection rows (`tied_with_best`); the chosen one is among them.
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
    tied: list[float] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def chosen(self) -> TrialResult:
        return self.seeded[0]

    def predictions(self, split: str) -> RungPredictions:
        return RungPredictions(self.id, self.spec.name, [t.preds(split) for t in self.seeded])


@dataclass(frozen=True)
class LRGrid:
    """What one rung searches: its LRs, how many grid steps it may go past an edge, and the ceiling.

    Attributes:
        lrs: the grid, ascending.
        extend: steps past the edge the best LR sits on alone, each the grid's own ratio at that end.
        max_lr: no extension goes above this; an upward step is cut to it (and skipped when the cut step would be
            under half a grid step: a trial that close to the top tells nothing new).
    """

    lrs: tuple[float, ...]
    extend: int
    max_lr: float

    def step_past(self, edge: str, tried: Sequence[float]) -> float | None:
        """The next LR past `edge` of what was `tried`, or None when there is none (one-LR grid, ceiling)."""
        if len(self.lrs) < 2:
            return None
        if edge == "low":
            return min(tried) / (self.lrs[1] / self.lrs[0])
        ratio, top = self.lrs[-1] / self.lrs[-2], max(tried)
        step = min(top * ratio, self.max_lr)
        return step if step > top and math.log(step / top) >= 0.5 * math.log(ratio) else None


def paired_noise(
    metric: str, a: np.ndarray, b: np.ndarray, labels: np.ndarray, tags: Sequence[str] | None = None
) -> tuple[float, float]:
    """How much better a is than b on the same rows (metric(a) - metric(b); for a lower-is-better metric,
    metric(b) - metric(a)), and the standard error of that difference.

    Accuracy: the per-row correctness differences d, SE = std(d, ddof=1) / sqrt(n) (identical predictions: 0).
    Other metrics: the half-width of a paired bootstrap's one-SE interval (fixed seed).
    """
    if metric == "accuracy":
        d = (a == labels).astype(np.float64) - (b == labels)
        se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else math.inf
        return float(d.mean()), se
    iv = bootstrap([a], labels, metric, [b], samples=TIE_BOOTSTRAP_SAMPLES, confidence=ONE_SE, seed=0, tags=tags)
    return iv.estimate, (iv.high - iv.low) / 2


def tied_with_best(trials: Sequence[TrialResult], metric: str, min_delta: float = 1e-3) -> list[TrialResult]:
    """The trials the selection rows cannot tell from the best one, ascending by LR (the best among them).

    Two looks, both at the noise they carry:
    1. The metric: a trial is level with the highest selection metric when their difference is within one
       standard error of the paired difference on the selection rows (`paired_noise`).
    2. The loss, among those: the lowest selection loss is better than the others by more than `min_delta`
       (early stopping's own threshold for "better"). On the default job a LoRA LR brought the selection loss
       from the probe's 0.607 to 0.544 while accuracy moved by one row in 199: that is a better model, not a tie.
       Differences below `min_delta` (1e-6..1e-4 between LRs that predict alike) are noise: ranking by them made
       a flat curve look like an optimum at the edge.
    """
    labels = np.asarray(trials[0].labels(SELECTION))
    # Token classification: the entity metrics read the tag names the trial recorded with its task.
    tags = (getattr(trials[0].results, "task", None) or {}).get("tags") or None
    ordered = sorted(trials, key=lambda t: t.lr if t.lr is not None else 0.0)
    sign = 1.0 if higher_is_better(metric) else -1.0  # rmse, mae: the lowest is the best
    scores = [sign * point_estimate([t.preds(SELECTION)], labels, metric, tags=tags) for t in ordered]
    best = ordered[int(np.argmax(scores))]
    level = []
    for t in ordered:
        diff, se = paired_noise(metric, np.asarray(best.preds(SELECTION)), np.asarray(t.preds(SELECTION)), labels, tags)
        if t is best or abs(diff) <= se:
            level.append(t)
    lowest = min(t.results.validation.loss for t in level)
    return [t for t in level if t.results.validation.loss <= lowest + min_delta]


def choose_among_tied(tied: Sequence[TrialResult], role: str) -> TrialResult:
    """The stated rule among LRs the selection rows cannot tell apart (`tied`, ascending by LR).

    Pretrained rungs: the lowest tied LR, the smallest move from the pretrained weights (the least drift for
    the same selection score). Scratch: the geometric middle of the tied set (its
    median by rank on a log-spaced grid, the lower of the two middles for an even count): random weights have no
    starting point worth staying near, and the middle of a plateau is furthest from both of its cliffs (too slow
    for the budget below, unstable above).
    """
    return tied[(len(tied) - 1) // 2] if role == "scratch" else tied[0]


class RungRunner:
    """Runs rungs through a `TrialRunner` with the ladder's LR search and seeds.

    Args:
        trials: the trial runner.
        output_dir: the ladder's folder (rungs live under `rungs/`).
        search: the pretrained rungs' LR grid, the extension rule (scratch takes its `extend` too) and the
            pruning of later LRs against earlier ones (`prune`, `prune_z`, `prune_after`).
        metric: what the selection part ranks trials by.
        base_head_lr: the recipe's head LR (deeper rungs keep at least this for the head).
        scratch: the control's grid and ceiling when set (`ladder.scratch`).
        family: the backbone's family: the control's grid and ceiling where `scratch` leaves them unset.
        min_delta: selection losses closer than this are a tie (`tied_with_best`; early stopping's threshold).
    """

    def __init__(
        self,
        trials: TrialRunner,
        output_dir: Path,
        search: LRSearchConfig,
        metric: str,
        base_head_lr: float,
        *,
        scratch: ScratchConfig | None = None,
        family: Family | None = None,
        min_delta: float = 1e-3,
    ):
        self.trials = trials
        self.output_dir = output_dir
        self.search = search
        self.metric = metric
        self.base_head_lr = base_head_lr
        self.scratch = scratch or ScratchConfig()
        self.family = family
        self.min_delta = min_delta

    def grid(self, spec: RungSpec, role: str) -> LRGrid:
        """Pretrained rungs: the rung's default LR x `lr_search.multipliers`, extended up to `lr_search.max_lr`.
        Scratch: `ladder.scratch.lrs` or the family's from-scratch grid, up to `ladder.scratch.max_lr` or the
        family's ceiling (random weights want higher LRs than fine-tuning)."""
        if role == "scratch":
            lrs, max_lr = self.scratch.lrs, self.scratch.max_lr
            if lrs is None or max_lr is None:
                if self.family is None:
                    raise ValueError(
                        "the scratch control's LR grid comes from the backbone family: pass `family` to RungRunner "
                        "or set ladder.scratch.lrs and ladder.scratch.max_lr"
                    )
                lrs = lrs if lrs is not None else list(self.family.scratch_lrs)
                max_lr = max_lr if max_lr is not None else self.family.scratch_max_lr
            return LRGrid(tuple(sorted(lrs)), self.search.extend, max_lr)
        strategy = get_strategy(spec.name)
        if strategy.trains_backbone:
            base = spec.lr or strategy.default_lr or self.trials.config.train.backbone_lr
        else:
            base = spec.lr or self.base_head_lr
        return LRGrid(tuple(base * m for m in self.search.multipliers), self.search.extend, self.search.max_lr)

    def run(
        self,
        index: int,
        spec: RungSpec,
        role: str,
        seed: int,
        head_state: dict[str, torch.Tensor] | None = None,
        *,
        futile_against: Sequence[TrialResult] = (),
    ) -> RungRun:
        """Search the rung's LRs (the grid's middle first; later LRs pruned against earlier ones) and choose.

        `futile_against`: trials of another budget a trial is stopped against once it cannot come level with
        them (the scratch control against the best pretrained rung; `pruning.py`'s second test)."""
        folder = rung_folder(self.output_dir, index, spec.id)
        solved = spec.options.get("solver") == "lbfgs"
        if solved:  # a convex problem solved to convergence: nothing to search, no seed changes it
            trial = self.trials.run(
                spec, folder / f"solved_seed{seed}", role=role, lr=None, seed=seed, head_lr=self.base_head_lr
            )
            return RungRun(spec, role, folder, [trial], [trial], stochastic=False)
        grid = self.grid(spec, role)
        failures: list[FailedTrial] = []
        run_one = self._runner(spec, role, folder, seed, head_state, failures)
        others = [t.curve() for t in futile_against]
        tried: list[float] = []  # a diverged or pruned LR bounds the search as well as a worse one does
        search: list[TrialResult] = []

        def search_at(lr: float) -> None:
            tried.append(lr)
            trial = run_one(lr, self._pruner(search, others))
            search.extend([trial] if trial is not None else [])

        for lr in search_order(grid.lrs):
            search_at(lr)
        if not search:
            raise RungFailed(spec.id, failures)
        extended: list[float] = []
        for _ in range(grid.extend):
            edge = _edge(tied_with_best(_choosable(search), self.metric, self.min_delta), tried)
            lr = grid.step_past(edge, tried) if edge else None
            if lr is None:
                break
            extended.append(lr)
            search_at(lr)
        tied = tied_with_best(_choosable(search), self.metric, self.min_delta)
        chosen = choose_among_tied(tied, role)
        edge = _edge(tied, tried)
        return RungRun(
            spec, role, folder, search, [chosen], edge, extended, failures=failures, tied=[t.lr for t in tied]
        )

    def _pruner(self, search: Sequence[TrialResult], others: list[Curve]) -> Pruner | None:
        """The pruning rules for the next trial of a search, against the trials already run (and `others`)."""
        same = [t.curve() for t in search] if self.search.prune else []
        if not same and not others:
            return None
        return Pruner(same, others, z=self.search.prune_z, min_delta=self.min_delta, after=self.search.prune_after)

    def add_seed(
        self, run: RungRun, seed: int, head_state: dict[str, torch.Tensor] | None = None
    ) -> TrialResult | None:
        """Train the chosen LR once more with `seed` (adaptive seeds, or the recipe's list); None if it failed or
        the rung is solved (no seed changes a converged convex fit)."""
        if not run.stochastic:
            return None
        trial = self._runner(run.spec, run.role, run.folder, seed, head_state, run.failures)(run.chosen.lr, None)
        if trial is not None:
            run.seeded.append(trial)
        return trial

    def _runner(self, spec: RungSpec, role: str, folder: Path, seed: int, head_state, failures: list[FailedTrial]):
        def run_one(lr: float, pruner: Pruner | None) -> TrialResult | None:
            try:
                return self.trials.run(
                    spec,
                    folder / f"lr{lr:.2e}_seed{seed}",
                    role=role,
                    lr=lr,
                    seed=seed,
                    head_lr=self.base_head_lr,
                    head_state=head_state,
                    pruner=pruner,
                )
            except Diverged as err:  # recorded, and the search goes on without it
                failures.append(FailedTrial(lr, seed, str(err)))
                return None

        return run_one


def rung_folder(output_dir: Path, index: int, rung_id: str) -> Path:
    """Where a rung's trials live: `rungs/<index>_<id>` under the ladder's folder."""
    return output_dir / "rungs" / f"{index:02d}_{rung_id}"


def search_order(lrs: Sequence[float]) -> list[float]:
    """The grid's middle first (the rung's default LR, the likeliest best), then outwards by log distance, the
    higher of two equally far first: every later LR is then judged against the strongest early competitors."""
    if not lrs:
        return []
    middle = math.log(sorted(lrs)[(len(lrs) - 1) // 2])
    return sorted(lrs, key=lambda lr: (round(abs(math.log(lr) - middle), 9), -lr))


def _choosable(search: Sequence[TrialResult]) -> list[TrialResult]:
    """The trials a choice is made among: those that ran to their own end (a pruned one is behind, and cut
    short); all of them when every one was pruned (the scratch control stopped for futility)."""
    finished = [t for t in search if not t.pruned]
    return finished or list(search)


def _edge(tied: Sequence[TrialResult], tried: Sequence[float]) -> str | None:
    """The end of what was tried ("high" / "low") that the best LR sits at alone; a diverged LR counts as tried.
    A tie with an interior LR is a flat curve, not evidence that the optimum lies further out."""
    if len(tied) != 1 or len(tried) < 2:
        return None
    lr = tied[0].lr
    return "high" if lr == max(tried) else "low" if lr == min(tried) else None


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

"""Turn what ran into the note's typed entries: one `RungEntry` per rung, the flags that read them, and the
comparisons on the test split (reported, never used to decide)."""

from __future__ import annotations

from typing import Any

import numpy as np

from peft_ladder.config import LadderConfig
from peft_ladder.data import Splits
from peft_ladder.ladder.decision import ClimbRule, Comparison, Flag, judge
from peft_ladder.ladder.note import RungEntry
from peft_ladder.ladder.rung import RungRun
from peft_ladder.ladder.stats import Interval, bootstrap
from peft_ladder.metrics import higher_is_better
from peft_ladder.results import Convergence, RunResult, SplitResult


def rung_entry(run: RungRun, cfg: LadderConfig, splits: Splits, metrics: list[str], head_from: str | None) -> RungEntry:
    """The note's record of a rung: its search, its decision-split interval, convergence, drift, slices."""
    labels = splits.task.label_array(splits.decision["labels"])
    preds = run.predictions("decision").predictions
    tags = splits.task.tags or None  # token classification: the entity metrics read the tag names
    interval = bootstrap(preds, labels, cfg.metric, samples=cfg.bootstrap_samples, confidence=cfg.confidence, tags=tags)
    slices = {}
    for name, rows in splits.decision_slices.items():
        if not rows:
            continue
        idx = np.asarray(rows)
        s = bootstrap(
            [p[idx] for p in preds],
            labels[idx],
            cfg.metric,
            samples=cfg.bootstrap_samples,
            confidence=cfg.confidence,
            tags=tags,
        )
        # A slice fails when it is reliably worse than the whole split (an error metric: reliably higher).
        fails = s.high < interval.estimate if higher_is_better(cfg.metric) else s.low > interval.estimate
        slices[name] = {"n": len(rows), "metric": s.to_dict(), "fails": fails}
    chosen = run.chosen.results
    kept = kept_record(chosen)
    main = main_phase(chosen)
    metric_keys = {"loss", *metrics}
    trainable = dict(chosen.trainable)
    trainable["frozen_parts"] = [p["part"] for p in trainable["parts"] if p["trainable"] == 0]
    extended, tied = set(run.extended), set(run.tied)
    unique = {id(t): t for t in [*run.search, *run.seeded]}.values()
    return RungEntry(
        id=run.id,
        strategy=run.spec.name,
        options={k: v for k, v in run.spec.options.items()},
        role=run.role,
        head_from=head_from,
        lr=run.chosen.lr,
        head_lr=run.chosen.head_lr,
        lr_search=[
            {
                "lr": t.lr,
                "metric": t.results.validation.value(cfg.metric),
                "loss": t.results.validation.loss,
                "seconds": t.results.train_seconds,
                "chosen": t is run.chosen,
                "extended": t.lr in extended,
                "tied": t.lr in tied,
                "steps": t.results.stopping.steps_run,
                "pruned": t.results.stopping.pruned_because,
            }
            for t in sorted(run.search, key=lambda t: t.lr or 0.0)  # ascending, whatever order they ran in
            if t.lr is not None
        ]
        + [
            {
                "lr": f.lr,
                "metric": None,
                "loss": None,
                "seconds": None,
                "chosen": False,
                "extended": f.lr in extended,
                "failed": f.reason,
            }
            for f in run.failures
            if f.lr is not None and f.seed == run.chosen.seed
        ],
        lr_edge=run.lr_edge,
        seeds=[t.seed for t in run.seeded],
        metric=interval.to_dict(),
        selection=_mean_metrics([t.results.splits["validation"] for t in run.seeded]),
        decision=_mean_metrics([t.results.splits["decision"] for t in run.seeded]),
        test=_mean_metrics([t.results.splits["test"] for t in run.seeded]) if "test" in chosen.splits else None,
        convergence=[t.results.stopping.model_dump() for t in run.seeded],
        trainable=trainable,
        drift=kept.get("drift") if kept else None,
        drift_per_epoch=[{**rec["drift"], "step": rec.get("main_step")} for rec in main if "drift" in rec],
        learning_curve=[
            {k: v for k, v in rec.items() if k in metric_keys or k == "main_step"}
            for rec in main
            if metric_keys & set(rec)
        ],
        slices=slices,
        train_seconds=sum(t.results.train_seconds for t in run.seeded),
        search_seconds=sum(t.results.train_seconds for t in unique),
        peak_memory=chosen.peak_memory,
        artifact=str(run.chosen.folder / "artifact"),
    )


def main_phase(results: RunResult) -> list[dict[str, Any]]:
    """The history records of the main phase (phase 2 under LP-FT), one per evaluation."""
    return [r for r in results.history if r.get("phase", 2) == 2]


def kept_record(results: RunResult) -> dict[str, Any] | None:
    """The history record of the evaluation whose weights the run ended with: the one at `best_step` when the
    best weights were restored, else the last. `main_step` 0 is the starting point, before any update."""
    history = main_phase(results)
    if not history:
        return None
    stop = results.stopping
    if stop.restored_best and stop.best_step is not None:
        at_best = [r for r in history if r.get("main_step") == stop.best_step]
        if at_best:
            return at_best[-1]
    return history[-1]


def lower_bound_reason(c: Convergence) -> str:
    """Why a trial's result is a lower bound, in words ("was still improving when ..."), for flags and notes."""
    if c.still_improving:
        return f"was still improving when its step cap ({c.max_steps} steps) ended it (raise train.epochs)"
    if c.stop_reason == "pruned":
        return f"was pruned by a search rule after {c.steps_run} steps"
    if c.stop_reason == "budget" and not c.best_step:
        return (
            f"had not beaten its starting point when its step cap ({c.max_steps} steps) ended it, with too few "
            "evaluations to call its loss flat (raise train.epochs)"
        )
    if c.stop_reason == "budget":
        return (
            f"was ended by its step cap ({c.max_steps} steps) {c.steps_run - c.best_step} steps after its best "
            f"(step {c.best_step}), before patience could call its loss flat (raise train.epochs)"
        )
    return f"was cut short ({c.stop_reason}) after {c.steps_run} of {c.max_steps} steps"


def scratch_lower_bound(entry: RungEntry | None) -> str | None:
    """Why the scratch control is a lower bound (any of its runs cut short or still improving), or None."""
    if entry is None:
        return None
    short = next((c for c in entry.convergence if c.still_improving or c.cut_short), None)
    return lower_bound_reason(short).removeprefix("was ") if short is not None else None


def _mean_metrics(records: list[SplitResult]) -> dict[str, float]:
    """Loss, metrics and rows of a split, averaged over seeds."""
    keys = ["loss", "n", *records[0].metrics]
    return {k: float(np.mean([r.n if k == "n" else r.value(k) for r in records])) for k in keys}


def training_flags(entries: list[RungEntry], recommended: str) -> list[Flag]:
    """Flags that read one rung at a time: LR at the edge of its search, trials that diverged, still improving
    when the budget ended, a solver that did not converge, drift past the thresholds, a slice that fails."""
    flags: list[Flag] = []
    for e in entries:
        failed = [t for t in e.lr_search if t.failed]
        if failed:
            flags.append(
                Flag(
                    "trials_failed",
                    e.id,
                    f"{e.id}: {len(failed)} trial(s) diverged (LR {', '.join(f'{t.lr:.1e}' for t in failed)}) and were "
                    "left out of its LR choice.",
                )
            )
        if e.lr_edge:  # only a best LR alone at the edge: a tie with an interior LR is a flat curve
            move = "ladder.scratch.lrs or ladder.scratch.max_lr" if e.role == "scratch" else "`lr` on the rung"
            flags.append(
                Flag(
                    "lr_at_edge",
                    e.id,
                    f"{e.id}'s best LR ({e.lr:.1e}) is the {e.lr_edge}est of those searched and beats every other "
                    f"beyond the selection noise, even after the search went past the grid: its optimum may lie "
                    f"further out (set {move} to move the grid).",
                )
            )
        short = next((c for c in e.convergence if c.still_improving or c.cut_short), None)
        if short is not None:
            flags.append(Flag("underfit", e.id, f"{e.id} {lower_bound_reason(short)}: its result is a lower bound."))
        if any(c.method == "lbfgs" and not c.converged for c in e.convergence):
            flags.append(Flag("not_converged", e.id, f"{e.id}'s solver stopped before the gradient vanished."))
        if e.drift and e.drift.warnings and e.role == "rung":
            flags.append(
                Flag(
                    "drift",
                    e.id,
                    f"{e.id} moved the backbone past the drift thresholds ({', '.join(e.drift.warnings)}).",
                )
            )
        if e.id == recommended:
            for name, result in e.slices.items():
                if result.fails:
                    flags.append(
                        Flag(
                            "slice_fails",
                            e.id,
                            f"slice {name!r} stays below the overall metric under the recommended rung.",
                            Interval(**result.metric.model_dump()),
                        )
                    )
    return flags


def test_comparisons(
    rule: ClimbRule, test_preds: dict[str, list[np.ndarray]], cfg: LadderConfig, labels: np.ndarray
) -> tuple[list[Comparison], list[Flag]]:
    """Every climb step again, on the test split: reported beside the decision, never used to make it. A test row
    carries no climb outcome, only whether it reaches the decision rows' verdict (`agrees`); a climb step the test
    split reliably contradicts is flagged.

    Args:
        test_preds: per rung id, its test predictions (one array per seed).
    """
    comparisons, flags = [], []
    for step in rule.state.comparisons:
        interval = bootstrap(
            test_preds[step.candidate],
            labels,
            cfg.metric,
            test_preds[step.reference],
            samples=cfg.bootstrap_samples,
            confidence=cfg.confidence,
            tags=rule.tags or None,
        )
        verdict = judge(interval, cfg.min_gain)
        agrees = None if "uncertain" in (verdict, step.outcome) else verdict == step.outcome
        row = Comparison(step.candidate, step.reference, "test", interval, agrees=agrees)
        comparisons.append(row)
        if agrees is False and step.kind == "climb":
            found = "a reliable gain above" if step.outcome == "climb" else "a gain reliably below"
            on_test = "reliably below it" if verdict == "stop" else "reliably above it"
            flags.append(
                Flag.on(
                    "test_contradicts",
                    step.candidate,
                    f"on the step from {step.reference} to {step.candidate}, the decision rows found {found} "
                    f"{cfg.min_gain}, the test split a gain {on_test}: the decision rows' verdict did not hold up.",
                    row,
                )
            )
    return comparisons, flags

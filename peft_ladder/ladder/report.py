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
from peft_ladder.results import RunResult, SplitResult


def rung_entry(run: RungRun, cfg: LadderConfig, splits: Splits, metrics: list[str], head_from: str | None) -> RungEntry:
    """The note's record of a rung: its search, its decision-split interval, convergence, drift, slices."""
    labels = np.asarray(splits.decision["labels"])
    preds = run.predictions("decision").predictions
    interval = bootstrap(preds, labels, cfg.metric, samples=cfg.bootstrap_samples, confidence=cfg.confidence)
    slices = {}
    for name, rows in splits.decision_slices.items():
        if not rows:
            continue
        idx = np.asarray(rows)
        s = bootstrap(
            [p[idx] for p in preds], labels[idx], cfg.metric, samples=cfg.bootstrap_samples, confidence=cfg.confidence
        )
        slices[name] = {"n": len(rows), "metric": s.to_dict(), "fails": s.high < interval.estimate}
    chosen = run.chosen.results
    kept = kept_record(chosen)
    metric_keys = {"loss", *metrics}
    trainable = dict(chosen.trainable)
    trainable["frozen_parts"] = [p["part"] for p in trainable["parts"] if p["trainable"] == 0]
    extended = set(run.extended)
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
            }
            for t in run.search
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
        drift_per_epoch=[rec["drift"] for rec in chosen.history if "drift" in rec],
        learning_curve=[{k: v for k, v in rec.items() if k in metric_keys} for rec in chosen.history],
        slices=slices,
        train_seconds=sum(t.results.train_seconds for t in run.seeded),
        search_seconds=sum(t.results.train_seconds for t in unique),
        peak_memory=chosen.peak_memory,
        artifact=str(run.chosen.folder / "artifact"),
    )


def kept_record(results: RunResult) -> dict[str, Any] | None:
    """The history record of the epoch whose weights the run ended with (the best one when restored)."""
    history = [r for r in results.history if r.get("phase", 2) == 2]
    if not history:
        return None
    stop = results.stopping
    if stop.best_epoch and stop.restored_best:
        return history[min(stop.best_epoch, len(history)) - 1]
    return history[-1]


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
        if e.lr_edge:
            flags.append(
                Flag(
                    "lr_at_edge",
                    e.id,
                    f"{e.id}'s best LR ({e.lr:.1e}) is the {e.lr_edge}est of those searched, even after the search "
                    f"went one step past the grid: its optimum may lie further out (set `lr` on the rung to move "
                    f"the grid).",
                )
            )
        if any(c.still_improving for c in e.convergence):
            flags.append(
                Flag(
                    "underfit",
                    e.id,
                    f"{e.id} was still improving when train.epochs ran out: its result is a lower bound (raise "
                    "train.epochs; early stopping ends it when it stops improving).",
                )
            )
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
    rule: ClimbRule, runs: dict[str, RungRun], cfg: LadderConfig, labels: np.ndarray
) -> tuple[list[Comparison], list[Flag]]:
    """Every climb step again, on the test split: reported beside the decision, never used to make it.
    A step the climb took that is reliably negative on test is flagged."""
    comparisons, flags = [], []
    for step in rule.state.comparisons:
        a, b = runs[step.candidate], runs[step.reference]
        interval = bootstrap(
            [t.preds("test") for t in a.seeded],
            labels,
            cfg.metric,
            [t.preds("test") for t in b.seeded],
            samples=cfg.bootstrap_samples,
            confidence=cfg.confidence,
        )
        comparisons.append(Comparison(step.candidate, step.reference, "test", interval, judge(interval, cfg.min_gain)))
        if step.outcome == "climb" and step.kind == "climb" and interval.high < 0:
            flags.append(
                Flag(
                    "test_contradicts",
                    step.candidate,
                    f"validation chose {step.candidate} over {step.reference}, but on the test split it is reliably "
                    "worse: the validation gain did not hold up.",
                    interval,
                )
            )
    return comparisons, flags

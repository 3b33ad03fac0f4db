"""Assemble the transfer note from what the climb left: every judged part (comparisons, flags, the deploy choice,
the decision's wording, the depth statement, the decision-table placement, what would justify more depth) is made
here from typed inputs. The Ladder hands them over after training; tests fabricate them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from peft_ladder.config import LadderConfig
from peft_ladder.ladder.decision import (
    ClimbRule,
    Comparison,
    Flag,
    RungPredictions,
    best_rung,
    deploy_choice,
    transfer_flags,
)
from peft_ladder.ladder.depth_advice import depth_advice
from peft_ladder.ladder.evidence import decision_why, evidence_needed, unfreeze_more_evidence
from peft_ladder.ladder.note import BaselineModel, FailedRung, RungEntry, TransferNote
from peft_ladder.ladder.regime import place
from peft_ladder.ladder.report import scratch_lower_bound, test_comparisons, training_flags
from peft_ladder.ladder.stats import point_estimate
from peft_ladder.metrics import higher_is_better
from peft_ladder.tasks import IGNORE, Task


@dataclass
class ClimbRecord:
    """What the climb left for the note to judge.

    Attributes:
        rule: the climb rule, with its final state and climb steps.
        rungs: decision-split predictions of the rungs that ran, in climbing order.
        entries: the same rungs' note entries.
        order: every rung id of the ladder, in climbing order.
        skipped: rungs not run because the climb ended.
        ending: the climb step that ended the climb (stop or uncertain), if one did.
        max_seeds: the most seeds a rung may train with.
        scratch, scratch_entry: the from-scratch control's predictions and entry.
        baseline, baseline_record: the cheap baseline's predictions and record.
        failed: rungs none of whose trials finished.
        test_labels, test_preds: the test split's labels and, per rung id, its test predictions (one per seed).
        class_counts: training rows per class (places the run in the decision table).
    """

    rule: ClimbRule
    rungs: list[RungPredictions]
    entries: list[RungEntry]
    order: list[str]
    skipped: list[str]
    ending: Comparison | None
    max_seeds: int
    scratch: RungPredictions | None = None
    scratch_entry: RungEntry | None = None
    baseline: RungPredictions | None = None
    baseline_record: BaselineModel | None = None
    failed: list[FailedRung] = field(default_factory=list)
    test_labels: np.ndarray | None = None
    test_preds: dict[str, list[np.ndarray]] = field(default_factory=dict)
    class_counts: list[int] = field(default_factory=list)


def label_counts(train_labels: np.ndarray, outputs: int, task: Task | None = None) -> list[int]:
    """Training rows per class (what places a run in the seed's decision table); per label, the rows that carry it
    (multi-label); every row (regression: one target, no classes); words per tag (token classification)."""
    labels = np.asarray(train_labels)
    if task is not None and task.per_token:
        return np.bincount(labels[labels != IGNORE], minlength=outputs).tolist()
    if labels.ndim == 2:
        return labels.sum(0).round().astype(int).tolist()
    if labels.dtype.kind == "f":
        return [len(labels)]
    return np.bincount(labels, minlength=outputs).tolist()


def chance_level(train_labels: np.ndarray, decision_labels: np.ndarray, metric: str, task: Task | None = None) -> float:
    """The metric of one constant prediction on every decision row, the one the training rows suggest: their most
    frequent class; each label's more frequent value (multi-label: 0/1 rows; for mAP every row then ties, which
    scores each label's prevalence, a random ranking's expectation); their mean (regression)."""
    labels, train = np.asarray(decision_labels), np.asarray(train_labels)
    if task is not None and task.per_token:  # every word tagged with the training rows' most frequent tag
        constant = np.where(labels != IGNORE, task.fill_tag, IGNORE)
        return point_estimate([constant], labels, metric, tags=task.tags)
    if labels.ndim == 2:
        constant = np.broadcast_to((train.mean(0) > 0.5).astype(labels.dtype), labels.shape)
    elif labels.dtype.kind == "f":
        constant = np.full(len(labels), train.mean())
    else:
        constant = np.full(len(labels), int(np.bincount(train).argmax()))
    return point_estimate([constant], labels, metric)


def build_note(record: ClimbRecord, cfg: LadderConfig, **measured: Any) -> TransferNote:
    """The transfer note.

    Args:
        record: what the climb left.
        cfg: the ladder config (metric, confidence, min_gain, ...).
        measured: the note's measured fields, as `TransferNote` names them (created, backbone, data, budget,
            selection, pooling, depth_curve, transferability, seeds, chance, artifact, total_seconds, sessions,
            num_processes).
    """
    cfg = cfg.resolved()
    rule = record.rule
    recommended = rule.state.best.id
    controls = [e for e in [record.scratch_entry] if e is not None]
    entries = [*record.entries, *controls]
    by_id = {e.id: e for e in entries}

    flags, extra = transfer_flags(
        rule,
        record.rungs,
        record.scratch,
        record.baseline,
        record.skipped,
        scratch_lower_bound=scratch_lower_bound(record.scratch_entry),
    )
    flags += training_flags(entries, recommended)
    for failed in record.failed:
        reason = failed.trials[-1].reason if failed.trials else "no trial ran"
        flags.append(
            Flag(
                "rung_failed", failed.id, f"{failed.id} failed in every trial ({reason}); the climb went on without it."
            )
        )
    tests: list[Comparison] = []
    if record.test_labels is not None and record.test_preds:
        tests, test_flags = test_comparisons(rule, record.test_preds, cfg, record.test_labels)
        flags += test_flags
    ending = record.ending
    needed = evidence_needed(
        ending, cfg.min_gain, len(by_id[ending.candidate].seeds) if ending else 0, record.max_seeds
    )
    if rule.state.stop_reason == "uncertain" and ending is not None:
        flags.append(
            Flag.on(
                "uncertain",
                ending.candidate,
                f"whether {ending.candidate} earns its depth over {ending.reference} is undecided: "
                f"{recommended} is recommended until the evidence says otherwise.",
                ending,
            )
        )

    estimates = {e.id: e.metric.estimate for e in entries}
    if record.baseline_record is not None:
        estimates[record.baseline_record.name] = record.baseline_record.metric.estimate
    best = best_rung(rule, record.rungs).id
    deploy = deploy_choice(recommended, best, extra, estimates, record.skipped)

    climb = rule.state.comparisons
    comparisons = [*climb, *extra, *tests]
    note = TransferNote(
        metric=cfg.metric,
        lower_is_better=not higher_is_better(cfg.metric),
        confidence=cfg.confidence,
        bootstrap_samples=cfg.bootstrap_samples,
        min_gain=cfg.min_gain,
        max_seeds=record.max_seeds,
        lr_multipliers=cfg.lr_search.multipliers,
        drift_thresholds=cfg.drift.model_dump(exclude={"probe_batch_size"}),
        rungs=record.entries,
        failed_rungs=record.failed,
        scratch=record.scratch_entry,
        baseline=record.baseline_record,
        comparisons=[c.to_dict() for c in comparisons],
        decision={
            "recommended": recommended,
            "deploy": {
                "kind": deploy.kind,
                "id": deploy.id,
                "why": deploy.why,
                "basis": _key(deploy.basis),
            },
            "outcome": rule.state.stop_reason,
            "stopped_at": rule.state.stopped_at,
            "rungs_run": [r.id for r in record.rungs],
            "rungs_skipped": record.skipped,
            "compared_after_stop": [c.candidate for c in climb if c.kind == "after_stop"],
            "run_all": cfg.run_all,
            "why": decision_why(rule, by_id, cfg, deploy),
            "evidence_needed": needed,
        },
        flags=[f.to_dict() for f in flags],
        unfreeze_more_evidence=[],
        **measured,
    )
    if note.depth_curve is not None:
        note.depth_curve.advice = depth_advice(note)
    if record.class_counts:
        note.regime = place(note, record.class_counts)
    note.unfreeze_more_evidence = unfreeze_more_evidence(note, rule, record.order, record.max_seeds)
    return note


def _key(comparison: Comparison | None) -> dict[str, str] | None:
    if comparison is None:
        return None
    return {"candidate": comparison.candidate, "reference": comparison.reference, "kind": comparison.kind}

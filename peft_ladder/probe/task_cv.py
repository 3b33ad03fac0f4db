"""One cross-validated score of a feature set for any task, and how to read it: the multinomial probe's
``cv_score`` (single_label), the multi-label logistic's ``cv_score_multilabel`` or ridge's ``cv_score_ridge``
(regression) behind one call, with which of the record's keys ranks feature sets and in which direction.

Each task's record keeps its estimator's own keys (accuracy / log_loss, micro_f1 / bce, mse / r2), so a number
never reads as something it is not; `CvReading` says which of them a comparison of feature sets uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from peft_ladder.probe.logistic import cv_score
from peft_ladder.probe.multilabel import cv_score_multilabel
from peft_ladder.probe.ridge import cv_score_ridge
from peft_ladder.tasks import Task, TaskName


@dataclass(frozen=True)
class CvReading:
    """Which keys of a task's CV record rank feature sets.

    Attributes:
        rank: the task's measure of the probe's predictions (accuracy, micro-F1 at p > 0.5, MSE): what the depth
            curve ranks blocks by, with the 1-SE rule on `rank_se`.
        rank_se: its standard error over the folds.
        higher_is_better: the direction of `rank`.
        select: the smooth held-out loss that chose the probe's l2 (log-loss, BCE, MSE; lower is better): what
            the pooling comparison picks by, as the probe itself would.
    """

    rank: str
    rank_se: str
    higher_is_better: bool
    select: str

    def oriented(self, record: dict) -> float:
        """`record`'s rank score with the sign that makes higher better."""
        return record[self.rank] if self.higher_is_better else -record[self.rank]


# Multi-label ranks by micro-F1 and picks l2 and pooling by BCE, as single-label ranks by accuracy and picks by
# log-loss: blocks are compared on the thresholded predictions the task is measured on, the smooth loss chooses
# where a choice feeds the solved head. Regression has one score for both.
CV_READINGS: dict[str, CvReading] = {
    "single_label": CvReading("accuracy", "accuracy_se", True, "log_loss"),
    "multi_label": CvReading("micro_f1", "micro_f1_se", True, "bce"),
    "regression": CvReading("mse", "mse_se", False, "mse"),
}


def cv_reading(task: str) -> CvReading:
    """How `task`'s CV record is read; ValueError for an unknown task."""
    if task not in CV_READINGS:
        raise ValueError(f"task must be one of {', '.join(CV_READINGS)}, got {task!r}")
    return CV_READINGS[task]


def standardized_targets(targets: torch.Tensor) -> torch.Tensor:
    """(y - mean) / std over these rows in float64, a constant target divided by 1 (`Task.for_regression`'s rule).
    Standardising targets that already are standardised changes nothing."""
    y = targets.detach().double()
    stats = Task.for_regression(y.cpu().numpy())
    return (y - stats.target_mean) / stats.target_std


def cv_score_for_task(
    features: torch.Tensor,
    labels: torch.Tensor,
    task: TaskName,
    num_outputs: int,
    *,
    seed: int = 0,
    folds: int = 5,
    l2_grid: Sequence[float] | None = None,
    groups: torch.Tensor | None = None,
) -> dict:
    """The task's best cross-validated probe score of `features` (see `CV_READINGS` for how to read it).

    Args:
        features: (N, D) frozen features.
        labels: single_label: (N,) class ids in [0, num_outputs); multi_label: (N, num_outputs) 0/1 rows;
            regression: (N,) floating-point targets in any units (standardised over these rows here, so mse is in
            units of the target's spread over them).
        task: single_label, multi_label or regression.
        num_outputs: the head's outputs: classes, labels, or 1.
        seed, folds, l2_grid: the cross-validation, as the estimators take them.
        groups: single_label: (N,) rows kept in one fold (a tagger's tokens: their sentence).

    Returns:
        cv_score's record (single_label), cv_score_multilabel's (multi_label) or cv_score_ridge's (regression).

    Raises:
        ValueError: an unknown task, or labels that do not fit it and `num_outputs`.
    """
    cv_reading(task)
    if task == "single_label":
        return cv_score(features, labels, num_outputs, l2_grid=l2_grid, folds=folds, seed=seed, groups=groups)
    if task == "multi_label":
        if labels.ndim != 2 or labels.shape[1] != num_outputs:
            raise ValueError(
                f"multi_label labels must be (N, {num_outputs}) 0/1 rows, one column per output, got shape "
                f"{tuple(labels.shape)}"
            )
        return cv_score_multilabel(features, labels, l2_grid=l2_grid, folds=folds, seed=seed)
    if num_outputs != 1:
        raise ValueError(f"regression has one output, got num_outputs={num_outputs}")
    if labels.ndim != 1 or not labels.dtype.is_floating_point:
        raise ValueError(
            f"regression labels must be (N,) floating-point targets, got shape {tuple(labels.shape)} {labels.dtype}"
        )
    return cv_score_ridge(features, standardized_targets(labels), l2_grid=l2_grid, folds=folds, seed=seed)

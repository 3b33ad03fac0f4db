"""What a run predicts, and so which loss trains it and how its outputs read: one class per row (cross-entropy),
any number of labels per row (binary cross-entropy per label, as transformers' `multi_label_classification`), or
a number (mean squared error on the target standardised over the training rows, as `regression`).

Everything that turns a model's outputs into a loss or a prediction (the engine, evaluation, the solved head,
saved artifacts) asks the run's `Task`, so the three cannot drift apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

TaskName = Literal["single_label", "multi_label", "regression"]
TASKS: tuple[str, ...] = ("single_label", "multi_label", "regression")
# A multi-label prediction is the set of labels whose probability passes the threshold: one half (the logistic's own
# boundary) until a run chooses its own on the selection rows (`choose_threshold`).
MULTI_LABEL_THRESHOLD = 0.5
# The thresholds a run chooses among: 0.05 .. 0.95. A finer grid would fit the selection rows' noise.
THRESHOLD_GRID = tuple(round(0.05 * k, 2) for k in range(1, 20))
# transformers' `PretrainedConfig.problem_type` for each task.
PROBLEM_TYPES = {
    "single_label": "single_label_classification",
    "multi_label": "multi_label_classification",
    "regression": "regression",
}


@dataclass(frozen=True)
class Task:
    """A run's task.

    Attributes:
        name: single_label | multi_label | regression.
        target_mean: regression: the training rows' mean target. The model predicts the standardised target
            (an AdamW step moves a weight by about the LR whatever the target's units, so a target in the
            thousands would otherwise take thousands of times more steps); predictions are scaled back.
        target_std: regression: the training rows' target standard deviation (1 where they are all equal).
        threshold: multi_label: a label is predicted when its probability passes this (chosen on the selection
            rows by `choose_threshold`; 0.5 until then).
    """

    name: str = "single_label"
    target_mean: float = 0.0
    target_std: float = 1.0
    threshold: float = MULTI_LABEL_THRESHOLD

    @classmethod
    def for_regression(cls, targets: Any) -> Task:
        values = np.asarray(targets, dtype=np.float64)
        std = float(values.std()) if values.size else 1.0
        return cls("regression", float(values.mean()) if values.size else 0.0, std if std > 0 else 1.0)

    @classmethod
    def from_dict(cls, record: dict[str, Any] | None) -> Task:
        """A task as `to_dict` wrote it (None: an artifact written before tasks existed, single-label)."""
        if not record:
            return cls()
        if record.get("name") not in TASKS:
            raise ValueError(f"unknown task {record.get('name')!r}; known: {', '.join(TASKS)}.")
        threshold = float(record.get("threshold", MULTI_LABEL_THRESHOLD))
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"task threshold {threshold} is not a probability between 0 and 1.")
        return cls(
            record["name"], float(record.get("target_mean", 0.0)), float(record.get("target_std", 1.0)), threshold
        )

    def to_dict(self) -> dict[str, Any]:
        if self.name == "regression":
            return {"name": self.name, "target_mean": self.target_mean, "target_std": self.target_std}
        if self.name == "multi_label":
            return {"name": self.name, "threshold": self.threshold}
        return {"name": self.name}

    @property
    def problem_type(self) -> str:
        return PROBLEM_TYPES[self.name]

    @property
    def is_classification(self) -> bool:
        return self.name != "regression"

    def standardize(self, targets: torch.Tensor) -> torch.Tensor:
        """Regression targets in the model's units (standardised); other tasks' labels unchanged."""
        if self.name != "regression":
            return targets
        return (targets.float() - self.target_mean) / self.target_std

    def row_losses(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Each row's loss (n,): cross-entropy; binary cross-entropy averaged over the labels; squared error of
        the standardised target."""
        if self.name == "single_label":
            return F.cross_entropy(logits, labels, reduction="none")
        if self.name == "multi_label":
            bce = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none")
            return bce.mean(-1)
        return (logits.reshape(len(labels)) - self.standardize(labels).to(logits.dtype)) ** 2

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The training loss: the mean of `row_losses` (for multi-label, the mean over every row and label, as
        torch's `BCEWithLogitsLoss` and transformers' multi-label heads take it)."""
        return self.row_losses(logits, labels).mean()

    def predictions(self, logits: torch.Tensor) -> np.ndarray:
        """Class ids (n,); a 0/1 matrix (n, labels); or values in the target's own units (n,)."""
        logits = logits.float()
        if self.name == "single_label":
            return logits.argmax(-1).numpy()
        if self.name == "multi_label":
            return (torch.sigmoid(logits) > self.threshold).to(torch.int64).numpy()
        return (logits.reshape(-1).double() * self.target_std + self.target_mean).numpy()

    def references(self, labels: torch.Tensor) -> np.ndarray:
        """Labels as the metrics take them: class ids, a 0/1 matrix, or values in the target's units."""
        return self.label_array(labels.cpu().numpy())

    def label_array(self, values: Any) -> np.ndarray:
        """A split's `labels` column as the metrics and the ladder's statistics take it (`references`' layout)."""
        if self.name == "multi_label":
            return np.asarray(values, dtype=np.float64).round().astype(np.int64)
        return np.asarray(values, dtype=np.float64 if self.name == "regression" else np.int64)

    def scores(self, logits: torch.Tensor) -> np.ndarray:
        """What a prediction file reports beside the prediction: class probabilities (softmax), each label's
        probability (sigmoid), or the value in the target's units."""
        logits = logits.float()
        if self.name == "single_label":
            return torch.softmax(logits, -1).numpy()
        if self.name == "multi_label":
            return torch.sigmoid(logits).numpy()
        return self.predictions(logits)

    def describe(self) -> str:
        if self.name == "regression":
            return (
                f"regression (mean squared error on the target standardised over the training rows: mean "
                f"{self.target_mean:.4g}, std {self.target_std:.4g}; reported in the target's units)"
            )
        if self.name == "multi_label":
            return f"multi_label (binary cross-entropy per label; a label is predicted at p > {self.threshold:g})"
        return "single_label (cross-entropy over the classes)"


def choose_threshold(probabilities: np.ndarray, references: np.ndarray) -> tuple[float, float]:
    """The multi-label threshold of `THRESHOLD_GRID` with the highest micro-F1 on these rows (the selection rows:
    never the decision rows), and that F1. Ties go to the threshold nearest one half, the logistic's own boundary:
    with few rows several thresholds often predict the same labels.

    Args:
        probabilities: (rows, labels) each label's sigmoid.
        references: (rows, labels) the 0/1 truth.
    """
    truth = np.asarray(references).astype(bool)
    scores = []
    for threshold in THRESHOLD_GRID:
        predicted = probabilities > threshold
        hits = np.sum(predicted & truth)
        marked = predicted.sum() + truth.sum()
        scores.append(2.0 * hits / marked if marked else 1.0)
    best = max(scores)
    level = [t for t, f1 in zip(THRESHOLD_GRID, scores) if f1 >= best - 1e-12]
    return min(level, key=lambda t: (abs(t - MULTI_LABEL_THRESHOLD), t)), float(best)


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

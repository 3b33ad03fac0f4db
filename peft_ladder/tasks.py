"""What a run predicts, and so which loss trains it and how its outputs read: one class per row (cross-entropy),
any number of labels per row (binary cross-entropy per label, as transformers' `multi_label_classification`), or
a number (mean squared error on the target standardised over the training rows, as `regression`), or a tag per
word (cross-entropy per token, as transformers' token classifiers: the first sub-token of each word carries the
word's tag, every other position is ignored with -100).

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

TaskName = Literal["single_label", "multi_label", "regression", "token_classification"]
TASKS: tuple[str, ...] = ("single_label", "multi_label", "regression", "token_classification")
# The label of a position no loss or metric reads (transformers' and torch's `ignore_index`): padding, special
# tokens, the second and later sub-tokens of a word; in word-level arrays, the padding after a row's last word.
IGNORE = -100
# A multi-label prediction is the set of labels whose probability passes the threshold: one half (the logistic's own
# boundary) until a run chooses its own on the selection rows (`choose_threshold`).
MULTI_LABEL_THRESHOLD = 0.5
# The thresholds a run chooses among: 0.05 .. 0.95. A finer grid would fit the selection rows' noise.
THRESHOLD_GRID = tuple(round(0.05 * k, 2) for k in range(1, 20))
# transformers' `PretrainedConfig.problem_type` for each task (token classifiers have none: their loss is always
# cross-entropy per token).
PROBLEM_TYPES: dict[str, str | None] = {
    "single_label": "single_label_classification",
    "multi_label": "multi_label_classification",
    "regression": "regression",
    "token_classification": None,
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
        fill_tag: token_classification: the training rows' most frequent tag (id), the prediction for a word the
            tokenizer cut off (see `word_predictions`).
        tags: token_classification: the tag names (index = id), which the entity metrics read (B-/I- prefixes).
    """

    name: str = "single_label"
    target_mean: float = 0.0
    target_std: float = 1.0
    threshold: float = MULTI_LABEL_THRESHOLD
    fill_tag: int = 0
    tags: tuple[str, ...] = ()

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
            record["name"],
            float(record.get("target_mean", 0.0)),
            float(record.get("target_std", 1.0)),
            threshold,
            int(record.get("fill_tag", 0)),
            tuple(record.get("tags", ())),
        )

    @property
    def per_token(self) -> bool:
        """Outputs per token (logits (n, T, labels)) rather than per row."""
        return self.name == "token_classification"

    def to_dict(self) -> dict[str, Any]:
        if self.name == "regression":
            return {"name": self.name, "target_mean": self.target_mean, "target_std": self.target_std}
        if self.name == "multi_label":
            return {"name": self.name, "threshold": self.threshold}
        if self.per_token:
            return {"name": self.name, "fill_tag": self.fill_tag, "tags": list(self.tags)}
        return {"name": self.name}

    @property
    def problem_type(self) -> str | None:
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
        the standardised target; for tokens, the cross-entropy averaged over the row's tagged positions (a row is
        a sentence: the unit the ladder compares and resamples; 0 for a row with none)."""
        if self.per_token:
            per_position = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE, reduction="none")
            tagged = (labels != IGNORE).sum(1)
            return per_position.sum(1) / tagged.clamp(min=1)
        if self.name == "single_label":
            return F.cross_entropy(logits, labels, reduction="none")
        if self.name == "multi_label":
            bce = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none")
            return bce.mean(-1)
        return (logits.reshape(len(labels)) - self.standardize(labels).to(logits.dtype)) ** 2

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The training loss: the mean of `row_losses` (for multi-label, the mean over every row and label, as
        torch's `BCEWithLogitsLoss` and transformers' multi-label heads take it; for tokens, the mean over every
        tagged position of the batch, as transformers' token classifiers take it)."""
        if self.per_token:
            return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE)
        return self.row_losses(logits, labels).mean()

    def predictions(self, logits: torch.Tensor) -> np.ndarray:
        """Class ids (n,); a 0/1 matrix (n, labels); values in the target's own units (n,); or for tokens the tag
        id of every position (n, T) (`word_predictions` reads them per word)."""
        logits = logits.float()
        if self.name in ("single_label", "token_classification"):
            return logits.argmax(-1).numpy()
        if self.name == "multi_label":
            return (torch.sigmoid(logits) > self.threshold).to(torch.int64).numpy()
        return (logits.reshape(-1).double() * self.target_std + self.target_mean).numpy()

    def references(self, labels: torch.Tensor) -> np.ndarray:
        """Labels as the metrics take them: class ids, a 0/1 matrix, or values in the target's units."""
        return self.label_array(labels.cpu().numpy())

    def label_array(self, values: Any) -> np.ndarray:
        """A split's `labels` column as the metrics and the ladder's statistics take it (`references`' layout; for
        tokens a split's word tags, (n, most words of a row) padded with IGNORE)."""
        if self.per_token:
            return pad_rows(values)
        if self.name == "multi_label":
            return np.asarray(values, dtype=np.float64).round().astype(np.int64)
        return np.asarray(values, dtype=np.float64 if self.name == "regression" else np.int64)

    def scores(self, logits: torch.Tensor) -> np.ndarray:
        """What a prediction file reports beside the prediction: class probabilities (softmax), each label's
        probability (sigmoid), or the value in the target's units."""
        logits = logits.float()
        if self.name in ("single_label", "token_classification"):
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
        if self.per_token:
            return (
                "token_classification (cross-entropy per token: a word's first sub-token carries its tag, the others "
                "are ignored; scored per word)"
            )
        return "single_label (cross-entropy over the classes)"


def pad_rows(rows: Any, width: int | None = None) -> np.ndarray:
    """Rows of unequal length (lists of ids) as one (n, width) int64 matrix padded with IGNORE (width: the longest
    row)."""
    rows = [np.asarray(r, dtype=np.int64).reshape(-1) for r in rows]
    width = max((len(r) for r in rows), default=0) if width is None else width
    out = np.full((len(rows), width), IGNORE, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row[:width]
    return out


def word_predictions(
    token_predictions: np.ndarray, token_labels: np.ndarray, word_labels: np.ndarray, fill: int
) -> np.ndarray:
    """Per word, the tag predicted at its first sub-token: (n, W) in `word_labels`' layout.

    The tagged positions of `token_labels` are the words' first sub-tokens, in word order. A word the tokenizer
    cut off (past `data.max_length`) has no position: it is predicted as `fill` (the training rows' most frequent
    tag), so every word of the data is scored, as it would be in use.
    """
    out = np.where(word_labels != IGNORE, fill, IGNORE).astype(np.int64)
    for i in range(len(out)):
        tagged = token_predictions[i][token_labels[i] != IGNORE]
        words = int((word_labels[i] != IGNORE).sum())
        out[i, : min(len(tagged), words)] = tagged[:words]
    return out


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

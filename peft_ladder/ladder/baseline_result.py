"""What every cheap baseline hands the ladder: `BaselineResult`, built from its features and its fitted estimator.

A module of its own so that baselines.py (text, images, the dispatch) and word_baseline.py (tagged words) both
build their results here without importing each other.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from peft_ladder.ladder.baseline_estimators import Fitted
from peft_ladder.metrics import reads_scores

# Class ids (n,), a 0/1 matrix (n, labels) or targets (n,), as a sequence or an array; token_classification:
# one list of tag ids per row, one id per word.
Labels = Sequence[Any] | np.ndarray


@dataclass
class BaselineResult:
    """One cheap baseline, fitted on the training rows and applied to every eval split.

    Attributes:
        name: "{tfidf|pixels}_{logreg|ovr_logreg|ridge}": features, then the estimator of single_label,
            multi_label or regression; "word_logreg" for token_classification.
        description: one sentence: features, estimator, how its penalty (C or alpha) was chosen.
        predictions: split name -> predictions, for every eval split passed in: label ids (n,) int64
            (single_label); a 0/1 matrix (n, labels) int64 (multi_label); values in the target's units (n,)
            float64 (regression); each word's tag id (n, W) int64, W the most words of any row of the split,
            a row's first len(words) entries its tags and the rest -100 (token_classification).
        params: chosen penalty, the CV scores behind it, feature sizes and settings (JSON-safe).
        seconds: wall time of featurising, choosing the penalty, fitting and predicting.
        scores: multi_label: split name -> each label's probability (n, labels); None for other tasks (token
            metrics such as entity F1 read the predictions).
    """

    name: str
    description: str
    predictions: dict[str, np.ndarray]
    params: dict[str, Any]
    seconds: float
    scores: dict[str, np.ndarray] | None = None

    @classmethod
    def from_fitted(
        cls, features: str, described: str, fitted: Fitted, extra: dict[str, Any], start: float
    ) -> BaselineResult:
        """The baseline named and described by its features and its estimator.

        Args:
            features: the name's first half ("tfidf", "pixels", "word").
            described: the description's words on the features.
            fitted: the estimator, fitted and applied to every eval split.
            extra: the features' settings and sizes, added to the estimator's params.
            start: `time.perf_counter()` when the baseline began.

        Returns:
            The result, its seconds counted from `start` to now.
        """
        description = f"{fitted.estimator} on {described}, {fitted.how}."
        params = {**fitted.params, **extra}
        return cls(
            f"{features}_{fitted.tag}",
            description,
            fitted.predictions,
            params,
            time.perf_counter() - start,
            fitted.scores,
        )

    def metric_inputs(self, metric: str) -> dict[str, np.ndarray]:
        """What `metric` reads of each split: the predictions, or the probabilities of a ranking metric (mAP)."""
        return self.scores if reads_scores(metric) and self.scores is not None else self.predictions

    def to_dict(self) -> dict:
        """JSON-safe summary without the predictions (their lengths only)."""
        return {
            "name": self.name,
            "description": self.description,
            "params": self.params,
            "seconds": self.seconds,
            "eval_rows": {split: int(len(p)) for split, p in self.predictions.items()},
        }

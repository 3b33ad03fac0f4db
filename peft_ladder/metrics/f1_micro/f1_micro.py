"""Offline micro-F1 (multi-label) metric, loadable with ``evaluate.load(<path to this file>)``."""

# `import evaluate` (not `from evaluate import Metric`): evaluate picks the first
# EvaluationModule subclass in this module's namespace as the metric class.
import datasets
import evaluate
import numpy as np
from sklearn.metrics import f1_score

_DESCRIPTION = (
    "F1 of the true positives, false positives and false negatives pooled over every label column "
    "(0 when no label is positive in predictions or references). Same as "
    "sklearn.metrics.f1_score(average='micro', zero_division=0) on the 0/1 matrices."
)
_INPUTS = """
Args:
    predictions (list[list[int]]): predicted 0/1 rows, one column per label.
    references (list[list[int]]): ground-truth 0/1 rows, one column per label.
Returns:
    f1_micro (float): in [0, 1].
"""


class F1Micro(evaluate.Metric):
    """Micro-F1 over 0/1 label matrices, through sklearn."""

    def _info(self) -> evaluate.MetricInfo:
        value = datasets.Sequence(datasets.Value("int32"))
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": value, "references": value}),
        )

    def _compute(self, predictions, references) -> dict[str, float]:
        preds = np.asarray(predictions)
        refs = np.asarray(references)
        return {"f1_micro": float(f1_score(refs, preds, average="micro", zero_division=0))}

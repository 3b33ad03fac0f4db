"""Offline subset accuracy (multi-label) metric, loadable with ``evaluate.load(<path to this file>)``."""

# `import evaluate` (not `from evaluate import Metric`): evaluate picks the first
# EvaluationModule subclass in this module's namespace as the metric class.
import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score

_DESCRIPTION = (
    "Fraction of rows whose predicted labels equal the reference labels exactly (every column). "
    "Same as sklearn.metrics.accuracy_score on the 0/1 matrices."
)
_INPUTS = """
Args:
    predictions (list[list[int]]): predicted 0/1 rows, one column per label.
    references (list[list[int]]): ground-truth 0/1 rows, one column per label.
Returns:
    subset_accuracy (float): in [0, 1].
"""


class SubsetAccuracy(evaluate.Metric):
    """Exact-match ratio over 0/1 label matrices, through sklearn."""

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
        return {"subset_accuracy": float(accuracy_score(refs, preds))}

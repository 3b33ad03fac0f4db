"""Offline accuracy metric, loadable with ``evaluate.load(<path to this file>)``."""

# `import evaluate` (not `from evaluate import Metric`): evaluate picks the first
# EvaluationModule subclass in this module's namespace as the metric class.
import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Fraction of predictions equal to the references."
_INPUTS = """
Args:
    predictions (list[int]): predicted labels.
    references (list[int]): ground-truth labels.
Returns:
    accuracy (float): in [0, 1].
"""


class Accuracy(evaluate.Metric):
    """Accuracy computed with numpy only (no sklearn, so loading stays fast)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("int32"),
                    "references": datasets.Value("int32"),
                }
            ),
        )

    def _compute(self, predictions, references) -> dict[str, float]:
        preds = np.asarray(predictions)
        refs = np.asarray(references)
        return {"accuracy": float(np.mean(preds == refs))}

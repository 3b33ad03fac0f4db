"""Offline mean-absolute-error metric, loadable with ``evaluate.load(<path to this file>)``."""

# `import evaluate` (not `from evaluate import Metric`): evaluate picks the first
# EvaluationModule subclass in this module's namespace as the metric class.
import datasets
import evaluate
import numpy as np
from sklearn.metrics import mean_absolute_error

_DESCRIPTION = (
    "Mean absolute difference between predictions and references, in the target's units. "
    "Same as sklearn.metrics.mean_absolute_error."
)
_INPUTS = """
Args:
    predictions (list[float]): predicted values, in the target's units.
    references (list[float]): true values, in the target's units.
Returns:
    mae (float): >= 0, lower is better.
"""


class MAE(evaluate.Metric):
    """MAE through sklearn."""

    def _info(self) -> evaluate.MetricInfo:
        value = datasets.Value("float64")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": value, "references": value}),
        )

    def _compute(self, predictions, references) -> dict[str, float]:
        preds = np.asarray(predictions)
        refs = np.asarray(references)
        return {"mae": float(mean_absolute_error(refs, preds))}

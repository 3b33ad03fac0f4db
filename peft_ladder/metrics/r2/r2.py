"""Offline coefficient-of-determination (R²) metric, loadable with ``evaluate.load(<path to this file>)``."""

# `import evaluate` (not `from evaluate import Metric`): evaluate picks the first
# EvaluationModule subclass in this module's namespace as the metric class.
import datasets
import evaluate
import numpy as np
from sklearn.metrics import r2_score

_DESCRIPTION = (
    "1 - (residual sum of squares) / (total sum of squares of the references). Same as "
    "sklearn.metrics.r2_score: constant references give 1.0 if matched exactly, else 0.0; "
    "fewer than two rows give NaN (with sklearn's UndefinedMetricWarning)."
)
_INPUTS = """
Args:
    predictions (list[float]): predicted values, in the target's units.
    references (list[float]): true values, in the target's units.
Returns:
    r2 (float): at most 1, higher is better (negative: worse than predicting the mean).
"""


class R2(evaluate.Metric):
    """R² through sklearn."""

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
        return {"r2": float(r2_score(refs, preds))}

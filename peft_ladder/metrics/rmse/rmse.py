"""Offline root-mean-squared-error metric, loadable with ``evaluate.load(<path to this file>)``."""

# `import evaluate` (not `from evaluate import Metric`): evaluate picks the first
# EvaluationModule subclass in this module's namespace as the metric class.
import datasets
import evaluate
import numpy as np
from sklearn.metrics import mean_squared_error

_DESCRIPTION = (
    "Square root of the mean squared difference between predictions and references, in the "
    "target's units. Same as sklearn.metrics.root_mean_squared_error."
)
_INPUTS = """
Args:
    predictions (list[float]): predicted values, in the target's units.
    references (list[float]): true values, in the target's units.
Returns:
    rmse (float): >= 0, lower is better.
"""


class RMSE(evaluate.Metric):
    """RMSE through sklearn."""

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
        # sqrt of mean_squared_error, not root_mean_squared_error: that one needs scikit-learn 1.4 and the
        # project allows 1.3; for one output it computes exactly this.
        return {"rmse": float(np.sqrt(mean_squared_error(refs, preds)))}

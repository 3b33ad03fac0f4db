"""Offline Spearman rank correlation metric, loadable with ``evaluate.load(<path to this file>)``."""

# `import evaluate` (not `from evaluate import Metric`): evaluate picks the first
# EvaluationModule subclass in this module's namespace as the metric class.
import datasets
import evaluate
import numpy as np
from scipy.stats import spearmanr

_DESCRIPTION = (
    "The Pearson correlation of the ranks of predictions and references (ties get their average rank), as "
    "scipy.stats.spearmanr; 0 where either side is constant (scipy: NaN), so a constant predictor scores no order."
)
_INPUTS = """
Args:
    predictions (list[float]): predicted values.
    references (list[float]): true values.
Returns:
    spearman (float): in [-1, 1], higher is better: how well the predictions order the rows.
"""


class Spearman(evaluate.Metric):
    """Spearman's rho through scipy."""

    def _info(self) -> evaluate.MetricInfo:
        value = datasets.Value("float64")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": value, "references": value}),
        )

    def _compute(self, predictions, references) -> dict[str, float]:
        preds, refs = np.asarray(predictions), np.asarray(references)
        if len(preds) < 2 or np.ptp(preds) == 0 or np.ptp(refs) == 0:
            return {"spearman": 0.0}
        return {"spearman": float(spearmanr(preds, refs).statistic)}

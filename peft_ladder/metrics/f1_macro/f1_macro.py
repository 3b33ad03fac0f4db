"""Offline macro-F1 metric, loadable with ``evaluate.load(<path to this file>)``."""

# `import evaluate` (not `from evaluate import Metric`): evaluate picks the first
# EvaluationModule subclass in this module's namespace as the metric class.
import datasets
import evaluate
import numpy as np

_DESCRIPTION = (
    "Unweighted mean over the classes present in predictions or references of the "
    "per-class F1 (0 for a class with no true positives). Same as "
    "sklearn.metrics.f1_score(average='macro')."
)
_INPUTS = """
Args:
    predictions (list[int]): predicted labels.
    references (list[int]): ground-truth labels.
Returns:
    f1_macro (float): in [0, 1].
"""


class F1Macro(evaluate.Metric):
    """Macro-F1 computed with numpy only (no sklearn, so loading stays fast)."""

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
        labels = np.union1d(preds, refs)
        # Map labels to 0..k-1 so per-class counts are O(n) bincounts.
        pred_idx = np.searchsorted(labels, preds)
        true_idx = np.searchsorted(labels, refs)
        k = labels.size
        tp = np.bincount(pred_idx[preds == refs], minlength=k).astype(np.float64)
        pred_sum = np.bincount(pred_idx, minlength=k).astype(np.float64)
        true_sum = np.bincount(true_idx, minlength=k).astype(np.float64)
        # F1 = 2tp / (2tp + fp + fn), the form sklearn uses, so results match bit for bit;
        # the denominator is > 0 for every class in the union, and tp == 0 gives 0.
        f1 = 2.0 * tp / (true_sum + pred_sum)
        return {"f1_macro": float(np.mean(f1))}

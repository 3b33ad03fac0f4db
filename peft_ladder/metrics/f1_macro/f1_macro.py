"""Offline macro-F1 metric, loadable with ``evaluate.load(<path to this file>)``.

Two forms, chosen by evaluate's ``config_name`` as evaluate's own f1 metric does: "default" takes one class id per
row, "multilabel" one 0/1 column per label (``evaluate.load(path, config_name="multilabel")``). A config, not the
input's ndim, because each config declares one feature schema: evaluate then refuses a 2-D array given to the
single-label form instead of silently scoring one-hot rows as labels.
"""

# `import evaluate` (not `from evaluate import Metric`): evaluate picks the first
# EvaluationModule subclass in this module's namespace as the metric class.
import datasets
import evaluate
import numpy as np

_DESCRIPTION = (
    "default: unweighted mean over the classes present in predictions or references of the "
    "per-class F1 (0 for a class with no true positives). Same as "
    "sklearn.metrics.f1_score(average='macro'). "
    "multilabel: unweighted mean over every label column of that label's F1 (0 for a label "
    "positive in neither predictions nor references). Same as "
    "sklearn.metrics.f1_score(average='macro', zero_division=0) on the 0/1 matrices."
)
_INPUTS = """
Args:
    predictions (list[int] | list[list[int]]): predicted labels (default) or 0/1 rows (multilabel).
    references (list[int] | list[list[int]]): ground-truth labels (default) or 0/1 rows (multilabel).
Returns:
    f1_macro (float): in [0, 1].
"""
_CONFIGS = ("default", "multilabel")


class F1Macro(evaluate.Metric):
    """Macro-F1: numpy only for class ids (no sklearn, so loading stays fast); sklearn for label matrices."""

    def _info(self) -> evaluate.MetricInfo:
        if self.config_name not in _CONFIGS:
            raise ValueError(f"f1_macro has no config {self.config_name!r}; choose one of {', '.join(_CONFIGS)}")
        label = datasets.Value("int32")
        if self.config_name == "multilabel":
            label = datasets.Sequence(label)
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": label, "references": label}),
        )

    def _compute(self, predictions, references) -> dict[str, float]:
        preds = np.asarray(predictions)
        refs = np.asarray(references)
        if self.config_name == "multilabel":
            # Imported here: the class-id form above never pays for loading sklearn.
            from sklearn.metrics import f1_score

            return {"f1_macro": float(f1_score(refs, preds, average="macro", zero_division=0))}
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

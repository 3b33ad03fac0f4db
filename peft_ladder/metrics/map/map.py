"""Offline macro average precision (mAP, multi-label) metric, loadable with ``evaluate.load(<path to this file>)``."""

# `import evaluate` (not `from evaluate import Metric`): evaluate picks the first
# EvaluationModule subclass in this module's namespace as the metric class.
import datasets
import evaluate
import numpy as np
from sklearn.metrics import average_precision_score

_DESCRIPTION = (
    "Average precision of each label's ranking of the rows by its probability, averaged over the labels that have "
    "a positive row in the references (a label with none has no precision to average; 0 when no label has one). "
    "Each label's value equals sklearn.metrics.average_precision_score on its column. Threshold-free: it reads "
    "probabilities, not 0/1 predictions."
)
_INPUTS = """
Args:
    predictions (list[list[float]]): each row's probability of each label, one column per label.
    references (list[list[int]]): ground-truth 0/1 rows, one column per label.
Returns:
    map (float): in [0, 1].
"""


class MeanAveragePrecision(evaluate.Metric):
    """Macro average precision over label columns, through sklearn."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Sequence(datasets.Value("int32")),
                }
            ),
        )

    def _compute(self, predictions, references) -> dict[str, float]:
        scores = np.asarray(predictions, dtype=np.float64)
        refs = np.asarray(references)
        present = [k for k in range(refs.shape[1]) if refs[:, k].any()]
        if not present:
            return {"map": 0.0}
        return {"map": float(np.mean([average_precision_score(refs[:, k], scores[:, k]) for k in present]))}

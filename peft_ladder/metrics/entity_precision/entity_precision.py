"""Offline entity precision (token classification) metric, loadable with ``evaluate.load(<path to this file>)``."""

# `import evaluate` (not `from evaluate import Metric`): evaluate picks the first
# EvaluationModule subclass in this module's namespace as the metric class.
import datasets
import evaluate
from seqeval.metrics import precision_score

_DESCRIPTION = (
    "Precision of the entities pooled over every row (micro average): correct / predicted. Entities are seqeval's "
    "chunks of IOB2 tags in its default (non-strict) mode, where an I- tag after O or after another type starts an "
    "entity; one is correct when its type, first and last word all match. 0 when no entity is predicted. Same as "
    "seqeval.metrics.precision_score(references, predictions), evaluate's seqeval overall_precision."
)
_INPUTS = """
Args:
    predictions (list[list[str]]): each row's predicted tag per word, e.g. ["B-NAME", "I-NAME", "O"].
    references (list[list[str]]): each row's true tag per word, as many as its predictions.
Returns:
    entity_precision (float): in [0, 1].
"""
_SEQUENCE = datasets.Sequence(datasets.Value("string", id="label"), id="sequence")  # evaluate's seqeval's features


class EntityPrecision(evaluate.Metric):
    """Entity-level micro Precision of IOB2 tag sequences, through seqeval."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": _SEQUENCE, "references": _SEQUENCE}),
        )

    def _compute(self, predictions, references) -> dict[str, float]:
        # zero_division=0: the value seqeval's default ("warn") gives, without its warning.
        return {"entity_precision": float(precision_score(references, predictions, zero_division=0))}

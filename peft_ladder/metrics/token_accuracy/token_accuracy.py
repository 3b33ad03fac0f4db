"""Offline token accuracy (token classification) metric, loadable with ``evaluate.load(<path to this file>)``."""

# `import evaluate` (not `from evaluate import Metric`): evaluate picks the first
# EvaluationModule subclass in this module's namespace as the metric class.
import datasets
import evaluate

_DESCRIPTION = (
    "Fraction of the words, pooled over every row, whose predicted tag equals the true one (0 when the rows hold no "
    "word). Same as seqeval.metrics.accuracy_score(references, predictions), evaluate's seqeval overall_accuracy."
)
_INPUTS = """
Args:
    predictions (list[list[str]]): each row's predicted tag per word, e.g. ["B-NAME", "I-NAME", "O"].
    references (list[list[str]]): each row's true tag per word, as many as its predictions.
Returns:
    token_accuracy (float): in [0, 1].
"""
_SEQUENCE = datasets.Sequence(datasets.Value("string", id="label"), id="sequence")  # evaluate's seqeval's features


class TokenAccuracy(evaluate.Metric):
    """Word-level accuracy of tag sequences, in plain Python (seqeval's accuracy_score fails on no words)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": _SEQUENCE, "references": _SEQUENCE}),
        )

    def _compute(self, predictions, references) -> dict[str, float]:
        pairs = [
            (p, r) for pred, ref in zip(predictions, references, strict=True) for p, r in zip(pred, ref, strict=True)
        ]
        correct = sum(p == r for p, r in pairs)
        return {"token_accuracy": correct / len(pairs) if pairs else 0.0}

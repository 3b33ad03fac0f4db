"""Which builtin metric applies to which task, which way it improves, and each task's default metrics.

One table (`_BUILTINS`) answers all three, so a new builtin is one entry here plus its script folder.
Names outside the table are the user's Hub metrics: no task check, and higher is taken as better.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "BUILTIN_METRICS",
    "TASK_METRICS",
    "check_metrics_for_task",
    "check_task",
    "evaluate_config",
    "higher_is_better",
    "reads_scores",
]


@dataclass(frozen=True)
class BuiltinMetric:
    """What a builtin metric script takes and how to read its value.

    Attributes:
        tasks: the tasks whose predictions it scores.
        higher_is_better: False for errors (rmse, mae), which improve downwards.
        reads_scores: it ranks probabilities (mAP) instead of counting thresholded predictions.
    """

    tasks: tuple[str, ...]
    higher_is_better: bool = True
    reads_scores: bool = False


_BUILTINS: dict[str, BuiltinMetric] = {
    "accuracy": BuiltinMetric(("single_label",)),
    # One class id per row, or one 0/1 column per label (its "multilabel" config).
    "f1_macro": BuiltinMetric(("single_label", "multi_label")),
    # Not offered for single_label: there micro-F1 over all classes equals accuracy.
    "f1_micro": BuiltinMetric(("multi_label",)),
    "subset_accuracy": BuiltinMetric(("multi_label",)),
    # Macro average precision: threshold-free, so the multi-label default (F1s depend on the threshold chosen).
    "map": BuiltinMetric(("multi_label",), reads_scores=True),
    "rmse": BuiltinMetric(("regression",), higher_is_better=False),
    "mae": BuiltinMetric(("regression",), higher_is_better=False),
    "r2": BuiltinMetric(("regression",)),
    "spearman": BuiltinMetric(("regression",)),
    # Entities (seqeval's chunks of B-/I- tags, default mode) pooled over every row: micro averages.
    "entity_f1": BuiltinMetric(("token_classification",)),
    "entity_precision": BuiltinMetric(("token_classification",)),
    "entity_recall": BuiltinMetric(("token_classification",)),
    "token_accuracy": BuiltinMetric(("token_classification",)),
}

BUILTIN_METRICS: tuple[str, ...] = tuple(_BUILTINS)

TASK_METRICS: dict[str, tuple[str, ...]] = {
    "single_label": ("accuracy", "f1_macro"),
    "multi_label": ("map", "f1_micro", "f1_macro", "subset_accuracy"),
    "regression": ("rmse", "mae", "r2", "spearman"),
    "token_classification": ("entity_f1", "entity_precision", "entity_recall", "token_accuracy"),
}

# evaluate's own convention (its f1, precision, recall and accuracy on the Hub): a metric's multi-hot form is its
# "multilabel" config. Every metric, builtin or Hub, is loaded with it on a multi_label task.
_EVALUATE_CONFIGS: dict[str, str] = {"multi_label": "multilabel"}


def check_task(task: str) -> None:
    """Raise ValueError unless `task` is one of TASK_METRICS' keys."""
    if task not in TASK_METRICS:
        raise ValueError(f"unknown task {task!r} for metrics; known: {', '.join(TASK_METRICS)}")


def evaluate_config(task: str) -> str | None:
    """The `config_name` that `evaluate.load` gets for a task's metrics (None: the metric's default)."""
    check_task(task)
    return _EVALUATE_CONFIGS.get(task)


def higher_is_better(name: str) -> bool:
    """Whether a larger value of metric `name` is better (True for names that are not builtins)."""
    builtin = _BUILTINS.get(name)
    return builtin.higher_is_better if builtin else True


def reads_scores(name: str) -> bool:
    """Whether metric `name` takes probabilities (mAP) rather than predictions (False for names not builtins)."""
    builtin = _BUILTINS.get(name)
    return bool(builtin and builtin.reads_scores)


def check_metrics_for_task(names: Iterable[str], task: str) -> None:
    """Raise ValueError naming the first builtin metric in `names` that does not score `task`.

    Names that are not builtins pass: they are Hub metrics, whose inputs only evaluate knows.
    """
    check_task(task)
    for name in names:
        builtin = _BUILTINS.get(name)
        if builtin and task not in builtin.tasks:
            raise ValueError(
                f"metric {name!r} does not apply to task {task!r} (it scores {', '.join(builtin.tasks)}); "
                f"{task}'s builtin metrics: {', '.join(m for m, b in _BUILTINS.items() if task in b.tasks)}"
            )

"""What task a label column holds: one class per row (single-label), a list of labels per row (multi-label),
numbers that are not class ids (regression), or a tag per word of an input that is a list of words (token
classification).
Without this a column of scores would train as a classifier over whatever distinct values it holds (forty
"classes"), or a list per row fail deep in the data library. `data.task: auto` trains the task it sees and says so;
setting `data.task` fixes a wrong guess (`single_label` takes every value, scores included, as a class name)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

_LIST_CELL = re.compile(r"^\s*\[.*\]\s*$", re.S)  # a list written into a CSV cell: "['a', 'b']"
_SHOWN = 3


def guess_task(labels: Sequence[Any], read_inputs: Callable[[], Sequence[Any]]) -> tuple[str, str]:
    """(task, what shows it) for the label values `labels`; `read_inputs` gives the rows' inputs, read only when
    the labels are lists (an image column is not decoded to tell a class from a score)."""
    present = [v for v in labels if v is not None]
    # Any list makes it a list task: a list is never a class name, and the rows that are not lists are then named
    # as bad rows of that task (`targets.check_targets`) instead of failing as unhashable classes.
    if any(isinstance(v, (list, tuple)) for v in present):
        inputs = read_inputs()
        # Inputs that are lists of words make it tagging even where a row's lengths differ: those rows are then
        # named as bad rows (`targets.check_targets`) instead of the whole column being read as label sets.
        if any(isinstance(x, (list, tuple)) for x in inputs):
            return "token_classification", "a list of labels per row, one per word of the input"
        return "multi_label", "a list of labels per row"
    if present and all(isinstance(v, str) and _LIST_CELL.match(v) for v in present):
        return "multi_label", "a list of labels written into each cell"
    numbers = [v for v in present if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if numbers and len(numbers) == len(present):
        fractional = [v for v in numbers if isinstance(v, float) and math.isfinite(v) and v != round(v)]
        if fractional:
            return "regression", f"numbers that are not class ids ({', '.join(map(str, fractional[:_SHOWN]))})"
    return "single_label", "one class per row"


def resolve_task(
    task: str, column: str, labels: Sequence[Any], read_inputs: Callable[[], Sequence[Any]]
) -> tuple[str, str]:
    """The task to train (single_label | multi_label | regression | token_classification) and the log line that
    says how it was chosen.

    Args:
        task: `data.task` (auto, or the task asked for).
        column: the label column's name.
        labels: the train split's label values (a sample).
        read_inputs: reads the same rows' input values (see `guess_task`).

    Raises:
        ValueError: a column that cannot hold the task asked for.
    """
    seen, evidence = guess_task(labels, read_inputs)
    example = next((str(v) for v in labels if v is not None), "")[:80]
    if task == "auto":
        return seen, f"data.task guessed as {seen} ({evidence}); set data.task to choose another"
    lists = seen in ("multi_label", "token_classification") and evidence.startswith("a list of labels per row")
    if task == "single_label" and lists:
        raise ValueError(
            f"data.label_column={column!r} holds {evidence} (e.g. {example}): lists cannot be class names; set "
            "data.task=multi_label (or leave it auto)."
        )
    listed = any(isinstance(v, (list, tuple)) or (isinstance(v, str) and _LIST_CELL.match(v)) for v in labels)
    if task == "multi_label" and not listed:
        raise ValueError(
            f"data.task=multi_label, but data.label_column={column!r} holds {evidence} (e.g. {example}), not a list "
            "of labels per row (a JSON list, or a list written into a CSV cell like \"['a', 'b']\"); set data.task "
            "to the column's task, or give each row its list of labels."
        )
    if task == "token_classification" and seen != "token_classification":
        raise ValueError(
            f"data.task=token_classification, but data.label_column={column!r} holds {evidence} (e.g. {example}), "
            "not a list of tags per row beside an input column holding each row's words (a list of strings, as "
            "Hub NER datasets give `tokens` and `ner_tags`); set data.text_column to the words' column, or data.task "
            "to the column's task."
        )
    if task == "regression" and seen in ("multi_label", "token_classification"):
        raise ValueError(
            f"data.task=regression, but data.label_column={column!r} holds {evidence} (e.g. {example}), not one "
            "number per row; set data.task to the column's task."
        )
    return task, f"data.task={task} (set in the recipe; the column looks like {seen})"

"""What task a label column holds. peft_ladder trains single-label classification; a column that holds a list
of labels per row (multi-label), numbers that are not class ids (regression) or a label per word (token
classification) would otherwise train as a classifier over whatever distinct values it holds (forty "classes"
of scores), or fail deep in the data library. `data.task: auto` names the task it sees and stops;
`data.task: single_label` takes every value as a class name."""

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
    if present and all(isinstance(v, (list, tuple)) for v in present):
        inputs = read_inputs()
        per_word = all(
            isinstance(x, (list, tuple)) and len(x) == len(v) for x, v in zip(inputs, labels) if v is not None
        )
        if per_word:
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


def check_task(task: str, column: str, labels: Sequence[Any], read_inputs: Callable[[], Sequence[Any]]) -> str | None:
    """Refuse a label column that is not single-label classification; returns the log note for `auto`.

    Args:
        task: `data.task` (auto or single_label).
        column: the label column's name.
        labels: the train split's label values.
        read_inputs: reads the same rows' input values (see `guess_task`).
    """
    seen, evidence = guess_task(labels, read_inputs)
    if seen == "single_label":
        return "data.task guessed as single_label (one class per row)" if task == "auto" else None
    lists = seen in ("multi_label", "token_classification") and evidence.startswith("a list of labels per row")
    if task == "single_label" and not lists:
        return None  # asked for: every value is a class name
    example = next(str(v) for v in labels if v is not None)[:80]
    how = "lists cannot be class names" if lists else "if these values are class names, set data.task=single_label"
    raise ValueError(
        f"data.label_column={column!r} holds {evidence} (e.g. {example}): a {seen.replace('_', '-')} task. "
        f"peft_ladder trains single-label classification (one class per row) only for now; {how}."
    )

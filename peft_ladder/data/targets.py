"""Multi-label and regression targets: checked row by row as the user's file counts its rows, then turned into
what the model trains on (a 0/1 vector over the labels seen in training; the number itself).

Single-label classes are mapped in `splits.py`, as they always were.
"""

from __future__ import annotations

import ast
from typing import Any

import numpy as np
from datasets import Dataset

from peft_ladder.data.empty import name_rows
from peft_ladder.tasks import Task, is_number


def label_list(value: Any) -> list[str] | None:
    """A row's labels as strings: a list, or a list written into a CSV cell ("['a', 'b']"); None for anything else."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value.strip())  # literals only: nothing in a cell is run
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
    if not isinstance(value, (list, tuple)):
        return None
    names = [str(v).strip() for v in value]
    return None if any(not name for name in names) else names


def target_value(value: Any) -> float | None:
    """A row's regression target: a finite number (or a string that reads as one); None for anything else."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    return float(value) if is_number(value) else None


def check_targets(ds: Dataset, column: str, task: str, split: str, file: str | None, encoding: str) -> None:
    """Raise a ValueError naming the rows of `split` whose `column` does not hold the task's target."""
    if task == "single_label":
        return
    parse, wanted = (
        (label_list, "a list of label names (blank names are not labels)")
        if task == "multi_label"
        else (target_value, "a finite number")
    )
    values = ds[column]
    bad = np.asarray([i for i, v in enumerate(values) if parse(v) is None], dtype=np.int64)
    if len(bad):
        shown = ", ".join(repr(values[i])[:40] for i in bad[:3])
        raise ValueError(
            f"data.label_column={column!r}: {len(bad)} row(s) of the {split} split do not hold {wanted} for "
            f"data.task={task}: {name_rows(bad, file, len(ds), encoding)} (e.g. {shown}); fix or remove them, or set "
            "data.task to the column's task."
        )


def encode_targets(
    splits: dict[str, Dataset | None], column: str, task: str, capped: str
) -> tuple[dict[str, Dataset | None], list[str], Task]:
    """The splits with a `labels` column the model trains on, the output names, and the run's `Task`.

    multi_label: labels are the names seen in the train split, sorted; a row's target is a 0/1 vector over them.
    regression: the one output is named after the column; the target stays in its own units (the `Task` holds the
    training rows' mean and std, which the loss standardises by).
    """
    train = splits["train"]
    if task == "multi_label":
        rows = [label_list(v) for v in train[column]]
        names = sorted({name for row in rows for name in row})
        if not names:
            raise ValueError(
                f"data.label_column={column!r}: no row of the train split{capped} has a label; a multi-label task "
                "needs rows with labels."
            )
        index = {name: i for i, name in enumerate(names)}
        for split, ds in splits.items():
            if ds is not None and split != "train":
                _refuse_unknown(ds, column, index, split, capped)
        encoded = {
            split: None if ds is None else _replace_labels(ds, column, lambda v: multi_hot(label_list(v), index))
            for split, ds in splits.items()
        }
        return encoded, names, Task("multi_label")
    targets = [target_value(v) for v in train[column]]
    result = Task.for_regression(targets)
    if len(set(targets)) < 2:
        raise ValueError(
            f"data.label_column={column!r}: every row of the train split{capped} has the same target "
            f"({targets[0]!r}); a regression needs targets that vary."
        )
    encoded = {split: None if ds is None else _replace_labels(ds, column, target_value) for split, ds in splits.items()}
    return encoded, [column], result


def _refuse_unknown(ds: Dataset, column: str, index: dict[str, int], split: str, capped: str) -> None:
    unknown: dict[str, list[int]] = {}
    for i, value in enumerate(ds[column]):
        for name in label_list(value) or []:
            if name not in index:
                unknown.setdefault(name, []).append(i)
    if unknown:
        shown = "; ".join(
            f"{name!r} (rows {', '.join(map(str, rows[:3]))})" for name, rows in list(unknown.items())[:5]
        )
        raise ValueError(
            f"data.label_column={column!r}: labels of the {split} split never occur in the train split{capped}: "
            f"{shown} (rows counted from 0 in the {split} split as used); remove those labels or rows, or add train "
            "rows that carry them."
        )


def multi_hot(names: list[str] | None, index: dict[str, int]) -> list[float]:
    """A row's 0/1 vector over the label `index` (label name -> output)."""
    vector = [0.0] * len(index)
    for name in names or []:
        vector[index[name]] = 1.0
    return vector


def _replace_labels(ds: Dataset, column: str, convert: Any) -> Dataset:
    """`ds` with its label column replaced by `labels` (converted row by row)."""
    ds = ds.map(lambda row: {"_target": convert(row[column])}, remove_columns=[column])
    return ds.rename_column("_target", "labels")

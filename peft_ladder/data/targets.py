"""Multi-label, regression and token-classification targets: checked row by row as the user's file counts its
rows, then turned into what the model trains on (a 0/1 vector over the labels seen in training; the number
itself; one tag id per word).

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


def word_tags(value: Any, words: Any) -> list[str] | None:
    """A row's tags as strings, one per word of `words` (a list of strings); None when the row is not that."""
    if not isinstance(words, (list, tuple)) or not all(isinstance(w, str) for w in words):
        return None
    tags = label_list(value) if not isinstance(value, (list, tuple)) else [str(v).strip() for v in value]
    if tags is None or len(tags) != len(words) or any(not t for t in tags):
        return None
    return tags


def check_targets(
    ds: Dataset, column: str, task: str, split: str, file: str | None, encoding: str, input_column: str | None = None
) -> None:
    """Raise a ValueError naming the rows of `split` whose `column` does not hold the task's target (for tokens:
    one non-blank tag per word of `input_column`, a list of words)."""
    if task == "single_label":
        return
    if task == "token_classification":
        values, words = ds[column], ds[input_column]
        bad = np.asarray([i for i, (v, w) in enumerate(zip(values, words)) if word_tags(v, w) is None], dtype=np.int64)
        if len(bad):
            i = int(bad[0])
            shown = f"{len(words[i]) if isinstance(words[i], (list, tuple)) else type(words[i]).__name__} words"
            raise ValueError(
                f"data.label_column={column!r}: {len(bad)} row(s) of the {split} split do not hold one tag per word of "
                f"data.text_column={input_column!r} (a list of words) for data.task=token_classification: "
                f"{name_rows(bad, file, len(ds), encoding)} (e.g. {shown} and tags {repr(values[i])[:60]}); give every "
                "row a list of words and exactly one non-blank tag per word, or set data.task to the column's task."
            )
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

    token_classification: tags are the names seen in the train split, sorted; a row's target is its tag ids, one
    per word (a column of `ClassLabel` ids, as Hub NER datasets store them, is read by its names).
    multi_label: labels are the names seen in the train split, sorted; a row's target is a 0/1 vector over them.
    regression: the one output is named after the column; the target stays in its own units (the `Task` holds the
    training rows' mean and std, which the loss standardises by).
    """
    train = splits["train"]
    if task == "token_classification":
        return _encode_tags(splits, column, capped)
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


def tag_reader(ds: Dataset, column: str) -> Any:
    """Row value -> tag names: a `Sequence(ClassLabel)` column's ids by their names (conll2003's `ner_tags`),
    anything else as written."""
    feature = getattr(ds.features.get(column), "feature", None)
    names = getattr(feature, "names", None)
    if names:
        return lambda value: [names[int(v)] for v in value]
    return lambda value: [str(v).strip() for v in value]


def _encode_tags(splits: dict[str, Dataset | None], column: str, capped: str) -> tuple[dict, list[str], Task]:
    train = splits["train"]
    read = tag_reader(train, column)
    counts: dict[str, int] = {}
    for row in train[column]:
        for tag in read(row):
            counts[tag] = counts.get(tag, 0) + 1
    names = sorted(counts)
    if len(names) < 2:
        raise ValueError(
            f"data.label_column={column!r}: the train split{capped} holds a single tag ({names}); a tagger needs at "
            "least two (e.g. B-X and O)."
        )
    index = {name: i for i, name in enumerate(names)}
    encoded: dict[str, Dataset | None] = {}
    for split, ds in splits.items():
        if ds is None:
            continue
        read = tag_reader(ds, column)
        unknown: dict[str, list[int]] = {}
        for i, row in enumerate(ds[column]):
            for tag in read(row):
                if tag not in index:
                    unknown.setdefault(tag, []).append(i)
        if unknown:
            shown = "; ".join(f"{t!r} (rows {', '.join(map(str, r[:3]))})" for t, r in list(unknown.items())[:5])
            raise ValueError(
                f"data.label_column={column!r}: tags of the {split} split never occur in the train split{capped}: "
                f"{shown} (rows counted from 0 in the {split} split as used); remove those rows, or add train rows "
                "that carry them."
            )
        encoded[split] = _replace_labels(ds, column, lambda v, read=read: [index[t] for t in read(v)])
    encoded.update({split: None for split, ds in splits.items() if ds is None})
    fill = index[max(names, key=lambda name: counts[name])]
    return encoded, names, Task("token_classification", fill_tag=fill, tags=tuple(names))


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

"""Predictions and references checked against a task's shape and values, then cast to what the metric scripts take.

Checked here, before evaluate sees them, because evaluate's own errors (an Arrow cast failing deep in `add_batch`)
name neither the task nor what to fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from peft_ladder.metrics.catalog import check_task

__all__ = ["PAD", "probability_matrix", "tag_sequences", "task_arrays", "token_arrays"]

_SHOWN = 3  # offending values quoted in an error message
PAD = -100  # a token-classification row's padding after its last word (the ignore index of PyTorch's losses)
_TOKEN = "token_classification"


def task_arrays(
    predictions: Any, references: Any, task: str, tags: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Validate predictions and references for `task` and return them as numpy arrays.

    Args:
        predictions, references: lists, numpy arrays or torch tensors. single_label: 1-D integral class ids;
            multi_label: 2-D (rows, labels) of 0/1; regression: 1-D finite numbers in the target's units;
            token_classification: 2-D (rows, words) tag ids (`token_arrays`).
        task: single_label | multi_label | regression | token_classification.
        tags: token_classification's tag names, which its ids index (required there, ignored elsewhere).

    Returns:
        (predictions, references): int64 class ids, int32 0/1 matrices, float64 values, or int64 tag ids.

    Raises:
        ValueError: naming the array, the task and what is wrong (shape, dtype, values, lengths, emptiness).
    """
    check_task(task)
    if task == _TOKEN:
        return token_arrays(predictions, references, tags)
    check = {"single_label": _class_ids, "multi_label": _multi_hot, "regression": _values}[task]
    preds = check(_as_array(predictions, "predictions"), "predictions")
    refs = check(_as_array(references, "references"), "references")
    if preds.shape != refs.shape:
        raise ValueError(
            f"predictions shape {preds.shape} and references shape {refs.shape} differ (task {task!r}); "
            "they must hold the same rows" + (" and labels" if task == "multi_label" else "")
        )
    if preds.shape[0] == 0:
        raise ValueError(f"predictions and references are empty (task {task!r})")
    return preds, refs


def token_arrays(predictions: Any, references: Any, tags: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """Validate token-classification tag ids: word-level (rows, words) int64 matrices padded with `PAD` (-100).

    Row i's words are the entries of references[i] that are not `PAD`, always a prefix of the row; predictions
    are read at those positions only (elsewhere they may hold anything).

    Args:
        predictions, references: (rows, words) integral ids into `tags`, lists, numpy arrays or torch tensors.
        tags: the tag names (e.g. ("B-NAME", "I-NAME", "O"), seqeval's IOB2 conventions).

    Returns:
        (predictions, references) as int64 arrays, unchanged otherwise.

    Raises:
        ValueError: missing tags, a shape or dtype that is not (rows, words) integers, padding inside a row, or
            an id outside 0 .. len(tags) - 1 at a word.
    """
    names = check_tags(tags)
    preds = _tag_ids(_as_array(predictions, "predictions"), "predictions")
    refs = _tag_ids(_as_array(references, "references"), "references")
    if preds.shape != refs.shape:
        raise ValueError(
            f"predictions shape {preds.shape} and references shape {refs.shape} differ (task {_TOKEN!r}); "
            "they must hold the same rows and word positions"
        )
    if preds.shape[0] == 0:
        raise ValueError(f"predictions and references are empty (task {_TOKEN!r})")
    words = refs != PAD
    inside = np.flatnonzero(np.any(words[:, 1:] & ~words[:, :-1], axis=1))
    if inside.size:
        raise ValueError(
            f"references must pad each row after its last word ({PAD} only at the end, task {_TOKEN!r}); "
            f"{inside.size} rows have {PAD} before a word, e.g. rows {', '.join(map(str, inside[:_SHOWN]))}"
        )
    for arr, what in ((refs, "references"), (preds, "predictions")):
        bad = arr[words & ((arr < 0) | (arr >= len(names)))]
        if bad.size:
            raise ValueError(
                f"{what} must hold tag ids 0 .. {len(names) - 1} (len(tags) = {len(names)}) at every word of the "
                f"references (task {_TOKEN!r}); found {bad.size} that are not, "
                f"e.g. {', '.join(map(str, np.unique(bad)[:_SHOWN]))}"
            )
    return preds, refs


def check_tags(tags: Sequence[str] | None) -> tuple[str, ...]:
    """The tag names as a tuple of strings; ValueError when they are missing, empty or not strings."""
    if tags is None:
        raise ValueError(f"task {_TOKEN!r} needs tags= (the tag names its ids index, e.g. ('B-NAME', 'I-NAME', 'O'))")
    if isinstance(tags, str) or not all(isinstance(tag, str) for tag in tags):
        raise ValueError(f"tags must be a sequence of tag-name strings for task {_TOKEN!r}, got {tags!r}")
    names = tuple(tags)
    if not names:
        raise ValueError(f"tags is empty for task {_TOKEN!r}: its ids index the tag names")
    return names


def tag_sequences(
    predictions: np.ndarray, references: np.ndarray, tags: Sequence[str]
) -> tuple[list[list[str]], list[list[str]]]:
    """Checked tag-id matrices (`token_arrays`) as seqeval's input: one list of tag names per row, its words only."""
    names = np.asarray(tags, dtype=object)
    lengths = np.sum(references != PAD, axis=1)
    preds = [names[row[:k]].tolist() for row, k in zip(predictions, lengths)]
    refs = [names[row[:k]].tolist() for row, k in zip(references, lengths)]
    return preds, refs


def probability_matrix(scores: Any, shape: tuple[int, ...], metric: str) -> np.ndarray:
    """Multi-label probabilities checked for metric `metric`: a (rows, labels) array of `shape` in [0, 1]."""
    if scores is None:
        raise ValueError(
            f"metric {metric!r} ranks each label's probabilities: pass scores= (the sigmoid of the logits), not only "
            "0/1 predictions"
        )
    arr = _as_array(scores, "scores")
    if arr.shape != shape or arr.dtype.kind not in "biuf":
        raise ValueError(f"scores must be a {shape} array of probabilities for metric {metric!r}, got {arr.shape}")
    values = arr.astype(np.float32)
    if not np.all((values >= 0) & (values <= 1)):
        raise ValueError(f"scores for metric {metric!r} must be probabilities in [0, 1] (apply a sigmoid first)")
    return values


def _as_array(values: Any, what: str) -> np.ndarray:
    if hasattr(values, "detach"):  # torch tensor, maybe on GPU; avoids importing torch
        values = values.detach().cpu().numpy()
    try:
        return np.asarray(values)
    except ValueError as err:  # ragged rows: numpy refuses to build the array
        raise ValueError(f"{what} cannot be read as one array ({err})") from err


def _class_ids(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.ndim != 1:
        raise ValueError(
            f"{what} must be 1-D class ids for task 'single_label' (argmax logits first), got shape {arr.shape}"
        )
    # Float labels are fine if integral; silently truncating probabilities is not.
    integral_float = arr.dtype.kind == "f" and bool(np.all(arr == np.round(arr)))
    if arr.dtype.kind not in "iub" and not integral_float:
        raise ValueError(f"{what} must be integer class ids for task 'single_label', got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _multi_hot(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.ndim != 2:
        raise ValueError(
            f"{what} must be a 2-D 0/1 matrix (rows, labels) for task 'multi_label', got shape {arr.shape}"
        )
    if arr.shape[1] == 0:
        raise ValueError(f"{what} has no label columns (shape {arr.shape}) for task 'multi_label'")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{what} must hold 0/1 numbers for task 'multi_label', got dtype {arr.dtype}")
    bad = arr[~np.isin(arr, (0, 1))]
    if bad.size:
        raise ValueError(
            f"{what} must hold only 0 and 1 for task 'multi_label' (threshold probabilities first); "
            f"found {bad.size} that are not, e.g. {', '.join(map(str, np.unique(bad)[:_SHOWN]))}"
        )
    # int32 is the scripts' feature type; evaluate encodes it about twice as fast as int64.
    return arr.astype(np.int32)


def _tag_ids(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.ndim != 2:
        raise ValueError(
            f"{what} must be a 2-D (rows, words) matrix of tag ids padded with {PAD} for task {_TOKEN!r} "
            f"(argmax logits and keep each word's first sub-token first), got shape {arr.shape}"
        )
    integral_float = arr.dtype.kind == "f" and bool(np.all(arr == np.round(arr)))
    if arr.dtype.kind not in "iu" and not integral_float:
        raise ValueError(f"{what} must be integer tag ids for task {_TOKEN!r}, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _values(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.ndim != 1:
        raise ValueError(
            f"{what} must be 1-D values for task 'regression' (flatten an (n, 1) output first), got shape {arr.shape}"
        )
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{what} must be real numbers for task 'regression', got dtype {arr.dtype}")
    values = arr.astype(np.float64)
    rows = np.flatnonzero(~np.isfinite(values))
    if rows.size:
        raise ValueError(
            f"{what} must be finite for task 'regression'; {rows.size} NaN or inf, "
            f"at rows {', '.join(map(str, rows[:_SHOWN]))}" + (", ..." if rows.size > _SHOWN else "")
        )
    return values

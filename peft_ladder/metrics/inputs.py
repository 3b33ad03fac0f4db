"""Predictions and references checked against a task's shape and values, then cast to what the metric scripts take.

Checked here, before evaluate sees them, because evaluate's own errors (an Arrow cast failing deep in `add_batch`)
name neither the task nor what to fix.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from peft_ladder.metrics.catalog import check_task

__all__ = ["probability_matrix", "task_arrays"]

_SHOWN = 3  # offending values quoted in an error message


def task_arrays(predictions: Any, references: Any, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate predictions and references for `task` and return them as numpy arrays.

    Args:
        predictions, references: lists, numpy arrays or torch tensors. single_label: 1-D integral class ids;
            multi_label: 2-D (rows, labels) of 0/1; regression: 1-D finite numbers in the target's units.
        task: single_label | multi_label | regression.

    Returns:
        (predictions, references): int64 class ids, int32 0/1 matrices, or float64 values.

    Raises:
        ValueError: naming the array, the task and what is wrong (shape, dtype, values, lengths, emptiness).
    """
    check_task(task)
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

"""Task metrics that load offline through ``evaluate``.

The builtins (``BUILTIN_METRICS``: accuracy and f1_macro for single_label; map, f1_micro, f1_macro and subset_accuracy
for multi_label; rmse, mae, r2 and spearman for regression; entity_f1, entity_precision, entity_recall and
token_accuracy for token_classification) ship as local ``evaluate`` module scripts in the folders next to this file, so
``evaluate.load`` never goes to the Hub for them. Other names go to ``evaluate.load`` unchanged (Hub
ids, local paths) and need the network or a warm cache. ``catalog`` says which builtin scores which task;
``inputs`` checks predictions and references against the task.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peft_ladder.metrics.catalog import (
    BUILTIN_METRICS,
    TASK_METRICS,
    check_metrics_for_task,
    evaluate_config,
    higher_is_better,
    reads_scores,
)
from peft_ladder.metrics.inputs import probability_matrix, tag_sequences, task_arrays

if TYPE_CHECKING:
    import evaluate

__all__ = [
    "BUILTIN_METRICS",
    "TASK_METRICS",
    "check_metrics_for_task",
    "compute_metrics",
    "higher_is_better",
    "load_metric",
    "reads_scores",
]

_METRICS_DIR = Path(__file__).resolve().parent
_OFFLINE_VARS = ("HF_EVALUATE_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def _offline() -> bool:
    """True if an HF offline variable is set (evaluate reads only its own, at import)."""
    return any(os.environ.get(var, "").upper() in {"1", "ON", "YES", "TRUE"} for var in _OFFLINE_VARS)


def _script_path(name: str) -> Path:
    """Path of a builtin metric script (evaluate 0.4.6 accepts the .py or its folder)."""
    return _METRICS_DIR / name / f"{name}.py"


@functools.cache  # == lru_cache(maxsize=None); ruff UP033 prefers this spelling
def load_metric(name: str, config_name: str | None = None) -> evaluate.EvaluationModule:
    """Load a metric once per process and config: builtins from package files, others via evaluate.

    Args:
        name: a builtin (``BUILTIN_METRICS``), a Hub metric id or a local path.
        config_name: evaluate's config, e.g. "multilabel" for f1_macro's 0/1-matrix form (None: the default).
    """
    # Imported here: `import evaluate` pulls in transformers pipelines and is slow.
    import evaluate

    # keep_in_memory: compute() then writes no arrow cache file and takes no file lock,
    # so processes launched together (accelerate, pytest-xdist) cannot clash on
    # ~/.cache/huggingface/metrics. evaluate still copies the script into its modules
    # cache (HF_MODULES_CACHE) under a FileLock, which is safe across processes.
    if name in BUILTIN_METRICS:
        return evaluate.load(str(_script_path(name)), config_name=config_name, keep_in_memory=True)
    # Offline, skip the Hub round trips (and their retry sleeps): a Hub metric then
    # loads only from evaluate's modules cache.
    from evaluate.utils.file_utils import DownloadConfig

    download_config = DownloadConfig(local_files_only=_offline())
    try:
        return evaluate.load(name, config_name=config_name, keep_in_memory=True, download_config=download_config)
    except Exception as err:
        raise ValueError(
            f"Could not load metric {name!r} with evaluate.load "
            f"({type(err).__name__}: {err}). Only the builtin metrics {', '.join(BUILTIN_METRICS)} work offline."
        ) from err


def compute_metrics(
    names: Sequence[str],
    predictions: Any,
    references: Any,
    task: str = "single_label",
    scores: Any = None,
    *,
    tags: Sequence[str] | None = None,
) -> dict[str, float]:
    """Compute each metric on a task's predictions and return ``{name: value}``.

    Args:
        names: metric names; a builtin must apply to `task` (``check_metrics_for_task``).
        predictions, references: lists, numpy arrays or torch tensors. single_label: 1-D integral class ids;
            multi_label: 2-D (rows, labels) of 0/1 (a row may have no positive label); regression: 1-D finite
            values in the target's units; token_classification: 2-D (rows, words) tag ids into `tags`, each row's
            words a prefix padded with -100 in references (predictions are read at those words only).
        task: single_label | multi_label | regression | token_classification. On multi_label every metric is
            loaded with evaluate's config "multilabel" (evaluate's convention for its own f1, precision, recall
            and accuracy). On token_classification every metric receives one list of tag names per row, its
            words only (the input of evaluate's own seqeval metric).
        scores: multi_label, (rows, labels) probabilities: what a metric that ranks (`reads_scores`: map) takes
            instead of the predictions; required when one is asked for.
        tags: token_classification's tag names (e.g. ("B-NAME", "I-NAME", "O"), seqeval's IOB2 conventions),
            which the ids index; required there, ignored by the other tasks.

    Returns:
        A metric returning one key is stored under the requested name; one returning
        several keys is stored as ``"{name}/{key}"``.

    Raises:
        ValueError: an unknown task, a builtin metric that does not apply to it, inputs of the wrong shape,
            dtype or values for it, missing tags on token_classification, or a metric that cannot be loaded.
    """
    check_metrics_for_task(names, task)
    preds, refs = task_arrays(predictions, references, task, tags)
    ranked = [name for name in names if reads_scores(name)]
    probabilities = probability_matrix(scores, refs.shape, ranked[0]) if ranked else None
    if task == "token_classification":  # what evaluate's seqeval takes: each row's tag names, its words only
        preds, refs = tag_sequences(preds, refs, tags)
    config_name = evaluate_config(task)
    results: dict[str, float] = {}
    for name in names:
        inputs = probabilities if name in ranked else preds
        out = load_metric(name, config_name).compute(predictions=inputs, references=refs)
        if len(out) == 1:
            results[name] = float(next(iter(out.values())))
        else:
            results.update({f"{name}/{key}": float(value) for key, value in out.items()})
    return results

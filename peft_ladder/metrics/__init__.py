"""Classification metrics that load offline through ``evaluate``.

``accuracy`` and ``f1_macro`` ship as local ``evaluate`` module scripts next to this
file, so ``evaluate.load`` never goes to the Hub for them. Other names go to
``evaluate.load`` unchanged (Hub ids, local paths) and need the network or a warm cache.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import evaluate

__all__ = ["BUILTIN_METRICS", "compute_metrics", "load_metric"]

BUILTIN_METRICS: tuple[str, ...] = ("accuracy", "f1_macro")

_METRICS_DIR = Path(__file__).resolve().parent
_OFFLINE_VARS = ("HF_EVALUATE_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def _offline() -> bool:
    """True if an HF offline variable is set (evaluate reads only its own, at import)."""
    return any(os.environ.get(var, "").upper() in {"1", "ON", "YES", "TRUE"} for var in _OFFLINE_VARS)


def _script_path(name: str) -> Path:
    """Path of a builtin metric script (evaluate 0.4.6 accepts the .py or its folder)."""
    return _METRICS_DIR / name / f"{name}.py"


@functools.cache  # == lru_cache(maxsize=None); ruff UP033 prefers this spelling
def load_metric(name: str) -> evaluate.EvaluationModule:
    """Load a metric once per process: builtins from package files, others via evaluate."""
    # Imported here: `import evaluate` pulls in transformers pipelines and is slow.
    import evaluate

    # keep_in_memory: compute() then writes no arrow cache file and takes no file lock,
    # so processes launched together (accelerate, pytest-xdist) cannot clash on
    # ~/.cache/huggingface/metrics. evaluate still copies the script into its modules
    # cache (HF_MODULES_CACHE) under a FileLock, which is safe across processes.
    if name in BUILTIN_METRICS:
        return evaluate.load(str(_script_path(name)), keep_in_memory=True)
    # Offline, skip the Hub round trips (and their retry sleeps): a Hub metric then
    # loads only from evaluate's modules cache.
    from evaluate.utils.file_utils import DownloadConfig

    download_config = DownloadConfig(local_files_only=_offline())
    try:
        return evaluate.load(name, keep_in_memory=True, download_config=download_config)
    except Exception as err:
        raise ValueError(
            f"Could not load metric {name!r} with evaluate.load "
            f"({type(err).__name__}: {err}). Only the builtin metrics {', '.join(BUILTIN_METRICS)} work offline."
        ) from err


def _to_labels(values: Any, what: str) -> np.ndarray:
    """Turn a list / numpy array / torch tensor of class ids into a 1-D int64 array."""
    if hasattr(values, "detach"):  # torch tensor, maybe on GPU; avoids importing torch
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D class ids (argmax logits first), got shape {arr.shape}")
    # Float labels are fine if integral; silently truncating probabilities is not.
    integral_float = arr.dtype.kind == "f" and bool(np.all(arr == np.round(arr)))
    if arr.dtype.kind not in "iub" and not integral_float:
        raise ValueError(f"{what} must be integer class ids, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def compute_metrics(names: list[str], predictions: Any, references: Any) -> dict[str, float]:
    """Compute each metric and return ``{name: value}``.

    A metric returning one key is stored under the requested name; one returning
    several keys is stored as ``"{name}/{key}"``.
    """
    preds = _to_labels(predictions, "predictions")
    refs = _to_labels(references, "references")
    if preds.shape != refs.shape:
        raise ValueError(f"predictions ({preds.size}) and references ({refs.size}) differ in length")
    if preds.size == 0:
        raise ValueError("predictions and references are empty")

    results: dict[str, float] = {}
    for name in names:
        out = load_metric(name).compute(predictions=preds, references=refs)
        if len(out) == 1:
            results[name] = float(next(iter(out.values())))
        else:
            results.update({f"{name}/{key}": float(value) for key, value in out.items()})
    return results

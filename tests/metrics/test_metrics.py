"""Offline builtin metrics: loading without network, and single-label agreement with sklearn (the other tasks:
test_task_metrics.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

import peft_ladder.metrics as metrics_pkg
from peft_ladder.metrics import BUILTIN_METRICS, TASK_METRICS, compute_metrics, load_metric

SINGLE_LABEL = TASK_METRICS["single_label"]
SKLEARN = {
    "accuracy": accuracy_score,
    "f1_macro": lambda y_true, y_pred: f1_score(y_true, y_pred, average="macro"),
}


def _random_labels(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Non-contiguous label ids, and a class set that differs between preds and refs.
    refs = rng.choice([0, 3, 7, 11], size=200, p=[0.5, 0.3, 0.15, 0.05])
    preds = rng.choice([0, 3, 7, 42], size=200)
    preds[:120] = np.where(rng.random(120) < 0.6, refs[:120], preds[:120])
    return preds, refs


def test_builtins_load_offline_and_are_cached(connections: list[object]) -> None:
    package_dir = Path(metrics_pkg.__file__).parent
    before = sorted(p.name for p in package_dir.rglob("*") if "__pycache__" not in p.parts)
    for name in BUILTIN_METRICS:
        metric = load_metric(name)
        assert load_metric(name) is metric
    after = sorted(p.name for p in package_dir.rglob("*") if "__pycache__" not in p.parts)
    assert after == before  # evaluate copies scripts into its cache, never next to them
    assert connections == []


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("name", SINGLE_LABEL)
def test_matches_sklearn(name: str, seed: int) -> None:
    preds, refs = _random_labels(seed)
    result = compute_metrics([name], preds, refs)
    assert result == {name: SKLEARN[name](refs, preds)}  # exact, not approx


@pytest.mark.parametrize("name", SINGLE_LABEL)
def test_perfect_and_all_wrong(name: str) -> None:
    refs = [0, 1, 2, 2, 1, 0]
    assert compute_metrics([name], refs, refs) == {name: 1.0}
    assert compute_metrics([name], [1, 2, 0, 0, 2, 1], refs) == {name: 0.0}


def test_input_types_agree() -> None:
    preds, refs = _random_labels(0)
    expected = compute_metrics(list(SINGLE_LABEL), preds, refs)
    assert compute_metrics(list(SINGLE_LABEL), preds.tolist(), refs.tolist()) == expected
    assert compute_metrics(list(SINGLE_LABEL), torch.from_numpy(preds), torch.from_numpy(refs)) == expected
    assert compute_metrics(list(SINGLE_LABEL), preds.astype(np.float32), refs) == expected


@pytest.mark.parametrize("preds", [[0.2, 0.9], [[0, 1], [1, 0]], [1]], ids=["probabilities", "2d", "length"])
def test_bad_inputs_raise(preds: list) -> None:
    with pytest.raises(ValueError):
        compute_metrics(["accuracy"], preds, [0, 1])


def test_unknown_metric_raises_value_error() -> None:
    name = "no_such_metric_peft_ladder"
    with pytest.raises(ValueError, match=name) as excinfo:
        load_metric(name)
    assert "offline" in str(excinfo.value)

"""Evaluation on Accelerate: inference mode, `gather_for_metrics`, offline metrics, named slices."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator

from peft_ladder.metrics import compute_metrics


@torch.inference_mode()
def evaluate(
    accelerator: Accelerator,
    model: torch.nn.Module,
    logits_fn: Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor],
    loader: Any,
    metric_names: list[str],
    slices: dict[str, list[int]] | None = None,
) -> dict[str, Any]:
    """Loss, metrics and per-slice metrics over a whole split (every process returns the same dict).

    Returns:
        {"loss", <metric>..., "n", "slices": {name: {...}}, "predictions": np.ndarray, "labels": np.ndarray}
    """
    was_training = model.training
    model.eval()
    all_logits, all_labels = [], []
    for batch in loader:
        logits = logits_fn(model, batch).float()
        logits, labels = accelerator.gather_for_metrics((logits, batch["labels"]))
        all_logits.append(logits.cpu())
        all_labels.append(labels.cpu())
    model.train(was_training)
    logits = torch.cat(all_logits)
    labels = torch.cat(all_labels)
    preds = logits.argmax(-1).numpy()
    result: dict[str, Any] = {
        "loss": F.cross_entropy(logits, labels).item(),
        **compute_metrics(metric_names, preds, labels.numpy()),
        "n": len(labels),
    }
    result["slices"] = {}
    for name, rows in (slices or {}).items():
        if rows:
            idx = np.asarray(rows)
            result["slices"][name] = {**compute_metrics(metric_names, preds[idx], labels.numpy()[idx]), "n": len(rows)}
    result["predictions"] = preds
    result["labels"] = labels.numpy()
    return result

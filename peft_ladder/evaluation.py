"""Evaluation on Accelerate: inference mode, `gather_for_metrics`, offline metrics, named slices."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator

from peft_ladder.metrics import compute_metrics
from peft_ladder.results import SplitResult


@dataclass
class Evaluation:
    """A split's results and the predictions they came from (in the split's row order).

    `row_losses` is each row's loss: the trial runner compares two trials on the same rows with them (a paired
    difference has far less noise than two means)."""

    result: SplitResult
    predictions: np.ndarray
    labels: np.ndarray
    row_losses: np.ndarray


@torch.inference_mode()
def evaluate(
    accelerator: Accelerator,
    model: torch.nn.Module,
    logits_fn: Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor],
    loader: Any,
    metric_names: list[str],
    slices: dict[str, list[int]] | None = None,
) -> Evaluation:
    """Loss, metrics and per-slice metrics over a whole split (every process returns the same)."""
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
    preds, truth = logits.argmax(-1).numpy(), labels.numpy()
    by_slice = {}
    for name, rows in (slices or {}).items():
        if rows:
            idx = np.asarray(rows)
            by_slice[name] = {**compute_metrics(metric_names, preds[idx], truth[idx]), "n": len(rows)}
    row_losses = F.cross_entropy(logits, labels, reduction="none")
    result = SplitResult(
        loss=row_losses.mean().item(),
        n=len(labels),
        metrics=compute_metrics(metric_names, preds, truth),
        slices=by_slice,
    )
    return Evaluation(result, preds, truth, row_losses.numpy())

"""Evaluation on Accelerate: inference mode, `gather_for_metrics`, offline metrics, named slices."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator

from peft_ladder.metrics import compute_metrics
from peft_ladder.results import SplitResult
from peft_ladder.tasks import IGNORE, Task, word_predictions


@dataclass
class Evaluation:
    """A split's results and the predictions they came from (in the split's row order).

    `row_losses` is each row's loss: the trial runner compares two trials on the same rows with them (a paired
    difference has far less noise than two means). `scores`: multi-label, each label's probability (what mAP
    reads); None for other tasks."""

    result: SplitResult
    predictions: np.ndarray
    labels: np.ndarray
    row_losses: np.ndarray
    scores: np.ndarray | None = None


@dataclass
class Outputs:
    """A split's logits and labels, in its row order (every process holds the same). Token classification: logits
    (n, T, tags) and aligned labels (n, T) padded to the split's longest row (IGNORE), and `word_labels` (n, W),
    each row's tag per word."""

    logits: torch.Tensor
    labels: torch.Tensor
    word_labels: torch.Tensor | None = None


@torch.inference_mode()
def collect(
    accelerator: Accelerator,
    model: torch.nn.Module,
    logits_fn: Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor],
    loader: Any,
) -> Outputs:
    """The model's logits over a whole split, gathered from every process."""
    was_training = model.training
    model.eval()
    all_logits, all_labels, all_words = [], [], []
    for batch in loader:
        logits = logits_fn(model, batch).float()
        if "word_labels" in batch:  # per token: every process's batch padded to one length before gathering
            logits, labels, words = (
                accelerator.pad_across_processes(t, dim=1, pad_index=pad)
                for t, pad in ((logits, 0), (batch["labels"], IGNORE), (batch["word_labels"], IGNORE))
            )
            logits, labels, words = accelerator.gather_for_metrics((logits, labels, words))
            all_words.append(words.cpu())
        else:
            logits, labels = accelerator.gather_for_metrics((logits, batch["labels"]))
        all_logits.append(logits.cpu())
        all_labels.append(labels.cpu())
    model.train(was_training)
    if all_words:
        return Outputs(_cat_padded(all_logits, 0), _cat_padded(all_labels, IGNORE), _cat_padded(all_words, IGNORE))
    return Outputs(torch.cat(all_logits), torch.cat(all_labels))


def _cat_padded(parts: list[torch.Tensor], pad: int) -> torch.Tensor:
    """Batches of different lengths (dim 1) as one tensor, padded with `pad` to the longest."""
    width = max(p.shape[1] for p in parts)
    return torch.cat(
        [torch.nn.functional.pad(p, (0, 0) * (p.dim() - 2) + (0, width - p.shape[1]), value=pad) for p in parts]
    )


def evaluate(
    accelerator: Accelerator,
    model: torch.nn.Module,
    logits_fn: Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor],
    loader: Any,
    metric_names: list[str],
    slices: dict[str, list[int]] | None = None,
    task: Task | None = None,
) -> Evaluation:
    """Loss, metrics and per-slice metrics over a whole split (every process returns the same); `task` (default
    single-label) turns outputs into predictions and losses."""
    return score(collect(accelerator, model, logits_fn, loader), metric_names, slices, task)


def score(
    outputs: Outputs, metric_names: list[str], slices: dict[str, list[int]] | None = None, task: Task | None = None
) -> Evaluation:
    """`evaluate`'s results from a split's collected outputs."""
    task = task or Task()
    logits, labels = outputs.logits, outputs.labels
    preds, truth = task.predictions(logits), task.references(labels)
    if task.per_token:  # scored per word: its first sub-token's tag
        truth = task.references(outputs.word_labels)
        preds = word_predictions(preds, labels.numpy(), truth, task.fill_tag)
    scores = task.scores(logits) if task.name == "multi_label" else None
    tagged = {"tags": task.tags} if task.per_token else {}  # the entity metrics read the B-/I- tag names
    by_slice = {}
    for name, rows in (slices or {}).items():
        if rows:
            idx = np.asarray(rows)
            sliced = scores[idx] if scores is not None else None
            by_slice[name] = {
                **compute_metrics(metric_names, preds[idx], truth[idx], task=task.name, scores=sliced, **tagged),
                "n": len(rows),
            }
    row_losses = task.row_losses(logits, labels)
    result = SplitResult(
        loss=row_losses.mean().item(),
        n=len(labels),
        metrics=compute_metrics(metric_names, preds, truth, task=task.name, scores=scores, **tagged),
        slices=by_slice,
    )
    return Evaluation(result, preds, truth, row_losses.numpy(), scores)

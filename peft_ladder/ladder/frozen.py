"""What the frozen backbone says before any rung trains, all measured on the training rows' folds (no
validation row is looked at):

- which pooling to use, when a text checkpoint declares none: the family's candidates compared with the
  converged probe (`cv_score`), the best kept for every rung;
- the depth curve: a converged probe on each block's pooled output. Where it peaks is where the frozen
  features fit the task best; the blocks after the peak are the ones to retrain, which is the last_k it
  implies for partial_unfreeze;
- transferability: LogME and H-score of the head's input, against the same scores of a seeded random
  initialisation of the architecture (the floor).
One forward pass over (a seeded subsample of) the training rows serves all three.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from peft_ladder.backbones.backbone import Backbone
from peft_ladder.backbones.pooling import PoolingSpec, pool
from peft_ladder.features import capture_head_input
from peft_ladder.ladder.transferability import transferability_scores
from peft_ladder.probe import cv_score

logger = logging.getLogger(__name__)


@dataclass
class FrozenPass:
    """Per-example tensors from one forward pass of the frozen backbone (CPU, float32)."""

    labels: torch.Tensor
    blocks: list[torch.Tensor]  # pooled output of every block
    head_input: torch.Tensor  # what the head sees
    pooling_inputs: dict[str, torch.Tensor] | None  # per candidate pooling (text), the pooled features


@dataclass
class DepthCurve:
    """Converged-probe CV accuracy per block, and the partial_unfreeze depth it implies.

    Attributes:
        points: per block: index, name, accuracy and its standard error over the folds, log-loss.
        peak: the deepest block within one standard error of the best (the 1-SE rule: of two blocks
            the data cannot tell apart, the deeper one means less to retrain).
        implied_last_k: blocks after the peak, at least 1 and at most all but one.
    """

    points: list[dict[str, Any]]
    peak: int
    implied_last_k: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.inference_mode()
def frozen_pass(
    backbone: Backbone,
    batches: list[dict[str, torch.Tensor]],
    device: torch.device,
    candidates: tuple[str, ...] = (),
) -> FrozenPass:
    """Run the frozen model once over `batches`, capturing every block's pooled output, the head's input
    and (text) the pooled features of each candidate pooling."""
    model = backbone.model
    was_training = model.training
    model.eval()
    modules = dict(model.named_modules())
    per_block: list[list[torch.Tensor]] = [[] for _ in backbone.layout.blocks]
    candidate_rows: dict[str, list[torch.Tensor]] = {c: [] for c in candidates}
    labels, heads = [], []
    mask_holder: dict[str, torch.Tensor | None] = {}
    spec = backbone.pooling

    def block_hook(index: int):
        def hook(_module: nn.Module, _args: tuple, output: Any) -> None:
            out = output[0] if isinstance(output, tuple) else output
            per_block[index].append(_pool_block(out, mask_holder.get("mask"), spec).float().cpu())

        return hook

    def pooling_hook(_module: nn.Module, args: tuple) -> None:
        hidden, mask, pooler_output = (list(args) + [None, None])[:3]
        for mode in candidates:
            if mode == "pooler" and pooler_output is None:
                continue
            candidate = PoolingSpec(mode, spec.normalize if spec else False)
            candidate_rows[mode].append(pool(hidden, mask, pooler_output, candidate).float().cpu())

    handles = [modules[b.name].register_forward_hook(block_hook(i)) for i, b in enumerate(backbone.layout.blocks)]
    if candidates and "pooling" in modules:
        handles.append(modules["pooling"].register_forward_pre_hook(pooling_hook))
    try:
        for batch in batches:
            inputs = {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}
            mask_holder["mask"] = inputs.get("attention_mask")
            with capture_head_input(model, backbone.layout.head_modules) as captured:
                backbone.logits(model, inputs)
            heads.append(captured[0].float().cpu())
            labels.append(batch["labels"].cpu())
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    pooled = {m: torch.cat(rows) for m, rows in candidate_rows.items() if rows}
    return FrozenPass(torch.cat(labels), [torch.cat(rows) for rows in per_block], torch.cat(heads), pooled or None)


def _pool_block(out: torch.Tensor, mask: torch.Tensor | None, spec: PoolingSpec | None) -> torch.Tensor:
    """One vector per example from a block's output: feature maps averaged over space; token sequences
    pooled as the model pools its last one (text; the pooler's first token inside the blocks) or averaged
    (image tokens)."""
    if out.dim() == 4:  # (B, C, H, W)
        return out.mean((2, 3))
    if out.dim() == 3:  # (B, T, H)
        if spec is None or mask is None or mask.shape != out.shape[:2]:
            return out.mean(1)
        mode = "cls" if spec.mode == "pooler" else spec.mode
        return pool(out, mask, None, PoolingSpec(mode, False))
    return out.flatten(1)


def compare_poolings(passed: FrozenPass, num_classes: int, seed: int) -> dict[str, dict[str, Any]]:
    """CV score of the converged probe on each candidate pooling's features."""
    return {
        mode: cv_score(features, passed.labels, num_classes, seed=seed)
        for mode, features in (passed.pooling_inputs or {}).items()
    }


def best_pooling(scores: dict[str, dict[str, Any]]) -> str:
    """Lowest CV log-loss (the probe's own selection score); ties to the first candidate (the convention)."""
    return min(scores, key=lambda m: (round(scores[m]["log_loss"], 6), list(scores).index(m)))


def pooling_candidates(backbone: Backbone) -> tuple[str, ...]:
    """The family's candidates, when the pooling came from the family's convention (a declared or
    recipe-chosen pooling is used as it is)."""
    if backbone.pooling is None or backbone.pooling.source != "family":
        return ()
    return backbone.family.pooling_candidates


def depth_curve(backbone: Backbone, passed: FrozenPass, seed: int) -> DepthCurve:
    """The converged probe's CV accuracy on each block's pooled output, and the depth it implies."""
    points = []
    for i, (block, features) in enumerate(zip(backbone.layout.blocks, passed.blocks)):
        score = cv_score(features, passed.labels, backbone.num_labels, seed=seed)
        points.append(
            {
                "block": i,
                "name": block.name,
                "accuracy": score["accuracy"],
                "accuracy_se": score["accuracy_se"],
                "log_loss": score["log_loss"],
            }
        )
    best = max(points, key=lambda p: p["accuracy"])
    peak = max(p["block"] for p in points if p["accuracy"] >= best["accuracy"] - best["accuracy_se"])
    n = len(points)
    implied = min(max(n - 1 - peak, 1), max(n - 1, 1))
    return DepthCurve(points, peak, implied)


def transferability(
    passed: FrozenPass, random_init: Backbone, batches: list[dict[str, torch.Tensor]], device: torch.device
) -> dict[str, Any]:
    """LogME and H-score of the pretrained head input, and of a randomly initialised copy's (the floor)."""
    start = time.perf_counter()
    random_init.model.to(device)
    floor = frozen_pass(random_init, batches, device)
    labels = passed.labels.numpy()
    return {
        "pretrained": transferability_scores(passed.head_input.numpy(), labels),
        "random_init": transferability_scores(floor.head_input.numpy(), labels),
        "n": len(labels),
        "feature_dim": int(passed.head_input.shape[1]),
        "seconds": time.perf_counter() - start,
    }


def subsample(n: int, max_rows: int, seed: int) -> list[int]:
    """At most `max_rows` row indices, seeded, in order."""
    if n <= max_rows:
        return list(range(n))
    return sorted(np.random.default_rng(seed).choice(n, max_rows, replace=False).tolist())

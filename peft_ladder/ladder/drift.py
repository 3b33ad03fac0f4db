"""How far a rung moved the backbone: per-block weight change and penultimate-feature change against
the frozen pretrained backbone, on one fixed probe batch, at every evaluation (budget.py says when).

Weights are compared as the model would run them: adapter rungs are merged into a copy first, so a
LoRA rung's drift is that of W0 + BA, comparable with partial and full fine-tuning.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn as nn

from peft_ladder.backbones.backbone import Backbone
from peft_ladder.config import DriftConfig
from peft_ladder.features import penultimate_features


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al., 2019) between two (N, D) feature matrices of the same examples.

    Undefined when a side does not vary across examples; then 1 when the two are the same matrix (nothing
    moved) and 0 otherwise (nothing in common), so that a note never carries NaN.
    """
    x64 = x.double() - x.double().mean(0, keepdim=True)
    y64 = y.double() - y.double().mean(0, keepdim=True)
    num = torch.linalg.matrix_norm(y64.T @ x64) ** 2
    den = torch.linalg.matrix_norm(x64.T @ x64) * torch.linalg.matrix_norm(y64.T @ y64)
    if den > 0:
        return float(num / den)
    return 1.0 if torch.equal(x, y) else 0.0


def feature_drift(frozen: torch.Tensor, current: torch.Tensor) -> dict[str, float]:
    """Mean 1-cos per example, relative L2 of the whole matrix, and linear CKA."""
    cos = torch.nn.functional.cosine_similarity(current.double(), frozen.double(), dim=1, eps=1e-12)
    rel = torch.linalg.matrix_norm(current.double() - frozen.double()) / torch.linalg.matrix_norm(frozen.double())
    # Clamped: rounding makes identical features come out a hair below zero.
    return {
        "feature_1mcos": max(float((1 - cos).mean()), 0.0),
        "feature_rel_l2": float(rel),
        "cka": linear_cka(frozen, current),
    }


def effective_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters by their base-model names, adapters merged in (on a copy; `model` is untouched)."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        model = copy.deepcopy(model).merge_and_unload()
    return {name: p.detach() for name, p in model.named_parameters()}


def _part_of(layout: Any, name: str) -> str | None:
    role, layer_id = layout.role_of(name)
    if role == "head":
        return None
    return layout.blocks[layer_id - 1].name if role == "block" else role


@torch.no_grad()
def reference_norms(reference: Backbone) -> dict[str, float]:
    """||W0||^2 per part (stem, each block, neck): fixed for a run, so computed once."""
    norms: dict[str, float] = {}
    for name, w0 in reference.model.named_parameters():
        part = _part_of(reference.layout, name)
        if part is not None:
            norms[part] = norms.get(part, 0.0) + float(torch.sum(w0.float() ** 2, dtype=torch.float64))
    return norms


@torch.no_grad()
def weight_drift(
    reference: Backbone, current: dict[str, torch.Tensor], norms: dict[str, float] | None = None
) -> dict[str, Any]:
    """||W - W0|| / ||W0|| per part (stem, each block, neck) and over the whole backbone (head excluded)."""
    norms = norms if norms is not None else reference_norms(reference)
    diffs = dict.fromkeys(norms, 0.0)
    for name, w0 in reference.model.named_parameters():
        part = _part_of(reference.layout, name)
        if part is None:
            continue
        if name not in current:
            raise KeyError(f"parameter {name} of the pretrained backbone is missing from the adapted model.")
        # float32 differences, float64 sums: exact zeros stay zero, and 22M squares add up without loss.
        diffs[part] += float(torch.sum((current[name].to(w0.device).float() - w0.float()) ** 2, dtype=torch.float64))
    per_part = {part: math.sqrt(diffs[part] / n) if n else 0.0 for part, n in norms.items()}
    total_d, total_n = sum(diffs.values()), sum(norms.values())
    return {
        "rel_weight_change": math.sqrt(total_d / total_n) if total_n else 0.0,
        "max_block_rel_weight_change": max(per_part.values(), default=0.0),
        "per_part": per_part,
    }


class DriftTracker:
    """Measures drift against a frozen reference backbone; use as an `Engine` callback.

    Args:
        reference: the pretrained backbone, untouched (its weights are W0; its features the frozen ones).
        probe_batches: the fixed probe batch(es), model inputs on CPU.
        thresholds: when to warn.
    """

    def __init__(self, reference: Backbone, probe_batches: list[dict[str, torch.Tensor]], thresholds: DriftConfig):
        self.reference = reference
        self.probe_batches = probe_batches
        self.thresholds = thresholds
        self.frozen, _ = penultimate_features(reference, reference.model, probe_batches)
        self.norms = reference_norms(reference)

    def measure(self, backbone: Backbone, model: nn.Module) -> dict[str, Any]:
        current, _ = penultimate_features(backbone, model, self.probe_batches)
        out = {
            **weight_drift(self.reference, effective_parameters(model), self.norms),
            **feature_drift(self.frozen, current),
        }
        t = self.thresholds
        out["warnings"] = [
            key
            for key, bad in (
                ("feature_1mcos", out["feature_1mcos"] > t.max_feature_1mcos),
                ("rel_weight_change", out["max_block_rel_weight_change"] > t.max_rel_weight_change),
                ("cka", out["cka"] < t.min_cka),
            )
            if bad
        ]
        return out

    def __call__(self, engine: Any, record: dict[str, Any]) -> None:
        model = engine.adapted.model  # the whole model, also when only its cached tail is wrapped for training
        record["drift"] = self.measure(engine.adapted.backbone, model)

"""Load a converged logistic regression into a backbone's head (the frozen probe, and LP-FT's first phase)."""

from __future__ import annotations

import torch
import torch.nn as nn

from peft_ladder.backbones.backbone import Backbone
from peft_ladder.probe.logistic import LogisticFit, fit_logistic

# Modules a head may hold around its linear layer without changing what a linear probe is.
_PASS_THROUGH = (nn.Flatten, nn.Dropout, nn.Identity)


def linear_head(backbone: Backbone) -> nn.Linear | None:
    """The single `nn.Linear` the head consists of (alone, or with only Flatten / Dropout / Identity
    around it, as transformers' ResNet head), or None when the head is anything else (two layers, a norm)."""
    if len(backbone.layout.head_modules) != 1:
        return None
    head = backbone.model.get_submodule(backbone.layout.head_modules[0])
    if isinstance(getattr(head, "modules_to_save", None), nn.ModuleDict):
        head = head.modules_to_save[head.active_adapters[0]]  # peft trains (and saves) this copy of the head
    if isinstance(head, nn.Linear):
        return head
    if not isinstance(head, nn.Sequential):  # custom forward code may do more than its modules show
        return None
    linears = [m for m in head if isinstance(m, nn.Linear)]
    if len(linears) == 1 and all(isinstance(m, (nn.Linear, *_PASS_THROUGH)) for m in head):
        return linears[0]
    return None


def fit_linear_head(
    backbone: Backbone,
    features: torch.Tensor,
    labels: torch.Tensor,
    *,
    folds: int = 5,
    l2_grid: list[float] | None = None,
    seed: int = 0,
) -> LogisticFit:
    """Solve the probe on `features` (the head's input, one row per example) and load it into the head.

    Raises:
        ValueError: the head is not a single linear layer (no closed problem to solve).
    """
    linear = linear_head(backbone)
    if linear is None:
        raise ValueError(f"the head {backbone.layout.head_modules} of {backbone.spec.name} is not one linear layer.")
    fit = fit_logistic(features.flatten(1), labels, backbone.num_labels, l2_grid=l2_grid, folds=folds, seed=seed)
    with torch.no_grad():
        linear.weight.copy_(fit.weight.to(linear.weight))
        linear.bias.copy_(fit.bias.to(linear.bias))
    return fit

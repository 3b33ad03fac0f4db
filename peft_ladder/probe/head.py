"""Load a converged linear probe into a backbone's head (the frozen probe, and LP-FT's first phase): a logistic
regression (single-label), one logistic regression per label (multi-label) or a ridge regression (regression)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn

from peft_ladder.backbones.backbone import Backbone
from peft_ladder.probe.logistic import LogisticFit, fit_logistic
from peft_ladder.probe.multilabel import MultiLabelLogisticFit, fit_multilabel_logistic
from peft_ladder.probe.ridge import RidgeFit, fit_ridge

ProbeTask = Literal["single_label", "multi_label", "regression"]
ProbeFit = LogisticFit | MultiLabelLogisticFit | RidgeFit

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
    task: ProbeTask = "single_label",
    folds: int = 5,
    l2_grid: list[float] | None = None,
    seed: int = 0,
    groups: torch.Tensor | None = None,
) -> ProbeFit:
    """Solve the probe on `features` (the head's input, one row per example) and load it into the head.

    Args:
        backbone: its head must be one linear layer with ``backbone.num_labels`` outputs.
        features: (N, ...) the head's inputs, flattened to (N, D).
        labels: single_label: (N,) integer class ids; multi_label: (N, num_labels) multi-hot 0/1;
            regression: (N,) floating-point targets already standardised (the head predicts the standardised
            target), with num_labels == 1.
        task: which estimator: fit_logistic, fit_multilabel_logistic or fit_ridge.
        folds, l2_grid, seed: the cross-validation of the penalty, as the estimators take them.
        groups: single_label: (N,) rows kept in one CV fold (a tagger's tokens: their sentence).

    Returns:
        The estimator's fit (its ``to_dict()["estimator"]`` names it).

    Raises:
        ValueError: the head is not a single linear layer (no closed problem to solve), an unknown task, or labels
            that do not fit the task and the head.
    """
    linear = linear_head(backbone)
    if linear is None:
        raise ValueError(f"the head {backbone.layout.head_modules} of {backbone.spec.name} is not one linear layer.")
    x = features.flatten(1)
    if task == "single_label":
        fit = fit_logistic(x, labels, backbone.num_labels, l2_grid=l2_grid, folds=folds, seed=seed, groups=groups)
    elif task == "multi_label":
        if labels.ndim != 2 or labels.shape[1] != backbone.num_labels:
            raise ValueError(
                f"multi_label labels must be (N, {backbone.num_labels}) multi-hot rows for the "
                f"{backbone.num_labels} outputs of {backbone.spec.name}'s head, got shape {tuple(labels.shape)}"
            )
        fit = fit_multilabel_logistic(x, labels, l2_grid=l2_grid, folds=folds, seed=seed)
    elif task == "regression":
        if backbone.num_labels != 1:
            raise ValueError(
                f"regression needs a head with one output, {backbone.spec.name}'s has {backbone.num_labels}"
            )
        fit = fit_ridge(x, labels, l2_grid=l2_grid, folds=folds, seed=seed)
    else:
        raise ValueError(f"task must be 'single_label', 'multi_label' or 'regression', got {task!r}")
    with torch.no_grad():
        linear.weight.copy_(fit.weight.to(linear.weight))
        linear.bias.copy_(fit.bias.to(linear.bias))
    return fit

"""BatchNorm policy: running statistics in frozen parts must not move, whatever `model.train()` says."""

from __future__ import annotations

from types import MethodType

import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


def _stay_in_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    # A frozen BatchNorm normalises with its stored statistics and never updates them.
    return nn.Module.train(self, False)


def lock_frozen_batchnorm(model: nn.Module, policy: str) -> list[str]:
    """Keep every BatchNorm whose parameters are all frozen in eval mode, for good.

    `model.train()` calls each child's `train`; the locked modules answer with eval mode,
    so their running mean/var stay exactly as loaded.

    Args:
        model: a model whose `requires_grad` flags are already set by a strategy.
        policy: "freeze" locks frozen BatchNorms; "update" leaves every BatchNorm updating its statistics.

    Returns:
        The names of the locked modules.
    """
    if policy == "update":
        return []
    locked = []
    for name, module in model.named_modules():
        if isinstance(module, _BatchNorm) and not any(p.requires_grad for p in module.parameters(recurse=False)):
            module.train = MethodType(_stay_in_eval, module)
            module.eval()
            locked.append(name)
    return locked


def updating_batchnorm(model: nn.Module) -> list[str]:
    """BatchNorm modules whose running statistics will change in training (not locked)."""
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, _BatchNorm) and module.track_running_stats and "train" not in module.__dict__
    ]

"""A regression head's outputs in the target's own units wherever the weights leave peft_ladder.

The model trains on the target standardised over the training rows (`tasks.py`: an AdamW step moves a weight by
about the LR whatever the target's units). A stock loader knows nothing of that scale, so every folder we write
(artifact, rung folder, adapter, export) holds the head with the scale folded in: w * std, b * std + mean. The
last layer of the head is linear, so the folded model's output is exactly the prediction in the target's units.
`load_adapted` unfolds it again, so a loaded rung trains and predicts as the run did.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn

from peft_ladder.backbones.backbone import Backbone
from peft_ladder.probe.head import linear_head
from peft_ladder.tasks import Task

# `peft_ladder.json`'s key: True when the saved head outputs the target's units (absent: standardised, as written
# before the fold existed; `load_adapted` then leaves the head as it is).
FOLDED_KEY = "head_in_target_units"


def foldable_head(backbone: Backbone) -> nn.Linear | None:
    """The head's linear layer the scale goes into, or None when the head is not one linear layer with a bias."""
    linear = linear_head(backbone)
    return linear if linear is not None and linear.bias is not None else None


def fold(linear: nn.Linear, task: Task) -> None:
    """Outputs in the target's units: w * std, b * std + mean (in place)."""
    with torch.no_grad():
        linear.weight.mul_(task.target_std)
        linear.bias.mul_(task.target_std).add_(task.target_mean)


def unfold(linear: nn.Linear, task: Task) -> None:
    """The inverse of `fold`: outputs standardised again, as the model trained (in place)."""
    with torch.no_grad():
        linear.bias.sub_(task.target_mean).div_(task.target_std)
        linear.weight.div_(task.target_std)


@contextmanager
def saved_in_target_units(backbone: Backbone, task: Task) -> Iterator[bool]:
    """Within the block a regression head outputs the target's units (yields True); after it, the exact tensors
    it had before (copied back, not unfolded: no rounding reaches a model that keeps training). Other tasks, and
    heads that are not one linear layer with a bias, are left as they are (yields False)."""
    linear = foldable_head(backbone) if task.name == "regression" else None
    if linear is None:
        yield False
        return
    weight, bias = linear.weight.detach().clone(), linear.bias.detach().clone()
    fold(linear, task)
    try:
        yield True
    finally:
        with torch.no_grad():
            linear.weight.copy_(weight)
            linear.bias.copy_(bias)

"""Split a model at a cut: the frozen prefix runs once (its output is cached), the tail runs every step.

The prefix is the model's own forward, stopped where the cut's module is about to run, so its output
is exactly what the uncut model would feed that module. The tail is the head alone (any backbone) or the
family table's block tail (`peft_ladder/backbones/tails.py`). Every tail is checked against the uncut model
on real rows before it is used (see `cached.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from peft_ladder.backbones.backbone import Backbone
from peft_ladder.backbones.tails import TailFn, TailUnsupported


@dataclass(frozen=True)
class Cut:
    """Where the frozen part ends: at the head's input (`block=None`) or at the input of block `block`."""

    block: int | None = None

    def describe(self) -> str:
        return "head input" if self.block is None else f"input of block {self.block}"


def cut_module(backbone: Backbone, cut: Cut) -> nn.Module:
    modules = dict(backbone.model.named_modules())
    if cut.block is None:
        if len(backbone.layout.head_modules) != 1:
            raise TailUnsupported(
                f"the head spans several modules {backbone.layout.head_modules}; their glue is the model's own code"
            )
        return modules[backbone.layout.head_modules[0]]
    return modules[backbone.layout.blocks[cut.block].name]


class _Reached(Exception):
    """Raised by the capture hook: the rest of the forward is not needed."""


@torch.inference_mode()
def run_prefix(backbone: Backbone, batch: dict[str, torch.Tensor], cut: Cut) -> torch.Tensor:
    """The tensor the cut's module receives when the model runs on `batch` (the model must be in eval mode)."""
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        first = args[0] if args else next(v for v in kwargs.values() if torch.is_tensor(v))
        captured.append(first)
        raise _Reached

    handle = cut_module(backbone, cut).register_forward_pre_hook(hook, with_kwargs=True)
    try:
        backbone.logits(backbone.model, batch)
    except _Reached:
        pass
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError(f"the forward of {backbone.spec.name} never reached the cut ({cut.describe()}).")
    return captured[0]


def build_tail(backbone: Backbone, cut: Cut) -> TailFn:
    """`tail(activations, attention_mask) -> logits`, running only what comes after the cut: the head, or the
    family table's block tail (`backbones/tails.py`)."""
    if cut.block is None:
        head = cut_module(backbone, cut)
        return lambda x, _mask: head(x)
    if backbone.family.tail is None:
        raise TailUnsupported(f"no block tail for the {backbone.family.name} family (the family table has none)")
    return backbone.family.tail(backbone, cut.block)

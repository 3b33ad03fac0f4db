"""Split a model at a cut: the frozen prefix runs once (its output is cached), the tail runs every step.

The prefix is the model's own forward, stopped where the cut's module is about to run, so its output
is exactly what the uncut model would feed that module. The tail is family-specific: the head alone
(any backbone), the remaining blocks plus what follows them for timm ViT and ResNet, and for
transformers encoders (`embeddings` + `encoder.layer`) the model's own forward with the embeddings
replaced by the cached activations and the block list cut. Every tail is checked against the uncut
model on real rows before it is used (see `cached.py`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from peft_ladder.backbones.backbone import Backbone

TailFn = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


@dataclass(frozen=True)
class Cut:
    """Where the frozen part ends: at the head's input (`block=None`) or at the input of block `block`."""

    block: int | None = None

    def describe(self) -> str:
        return "head input" if self.block is None else f"input of block {self.block}"


class TailUnsupported(ValueError):
    """This backbone family has no tail runner for the cut; the caller runs the whole model instead."""


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
    """`tail(activations, attention_mask) -> logits`, running only what comes after the cut."""
    if cut.block is None:
        head = cut_module(backbone, cut)
        return lambda x, _mask: head(x)
    if backbone.source == "timm":
        return _timm_tail(backbone, cut.block)
    return _hf_encoder_tail(backbone, cut.block)


def _timm_tail(backbone: Backbone, start: int) -> TailFn:
    from timm.models.resnet import ResNet
    from timm.models.vision_transformer import VisionTransformer

    model = backbone.model
    # What forward_features does after the blocks, per family.
    if isinstance(model, VisionTransformer):
        after_blocks = model.norm
    elif isinstance(model, ResNet):
        after_blocks = nn.Identity()
    else:
        raise TailUnsupported(f"no block tail for timm {type(model).__name__} (supported: VisionTransformer, ResNet)")
    modules = dict(model.named_modules())
    blocks = [modules[b.name] for b in backbone.layout.blocks[start:]]

    def tail(x: torch.Tensor, _mask: torch.Tensor | None) -> torch.Tensor:
        for block in blocks:
            x = block(x)
        return model.forward_head(after_blocks(x))

    return tail


class _Replay(nn.Module):
    """Stands in for the embeddings: returns the cached activations; other attributes come from the original."""

    def __init__(self, original: nn.Module):
        super().__init__()
        object.__setattr__(self, "_original", original)  # not a submodule: its parameters stay where they are
        self.value: torch.Tensor | None = None

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.value

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._original, name)


def _hf_encoder_tail(backbone: Backbone, start: int) -> TailFn:
    """A shadow copy of the module tree down to the block list, sharing every leaf module and parameter,
    with the embeddings replayed from the cache and the blocks before `start` cut out.

    Fits transformers models whose base model runs `embeddings`, then iterates one ModuleList of blocks
    (`bert.encoder.layer`, `vit.layers`, ...), then whatever follows them.
    """
    model = backbone.model
    prefix = getattr(model, "base_model_prefix", "")
    base = getattr(model, prefix, None)
    blocks = backbone.layout.blocks
    container_name = blocks[0].name.rpartition(".")[0]
    container = dict(model.named_modules()).get(container_name)
    if (
        not isinstance(container, nn.ModuleList)
        or getattr(base, "embeddings", None) is None
        or not container_name.startswith(prefix + ".")
        or [b.name for b in blocks] != [f"{container_name}.{i}" for i in range(len(container))]
    ):
        raise TailUnsupported(
            f"no block tail for {type(model).__name__}: its base model is not `embeddings` + one list of blocks"
        )
    # Shadow every module on the path model -> base -> ... -> block list.
    path = container_name.split(".")
    originals, shadows = [model], [_shallow(model)]
    for part in path[:-1]:
        originals.append(getattr(originals[-1], part))
        shadows.append(_shallow(originals[-1]))
        shadows[-2]._modules[part] = shadows[-1]
    shadows[-1]._modules[path[-1]] = nn.ModuleList(list(container)[start:])
    replay = _Replay(base.embeddings)
    shadows[1]._modules["embeddings"] = replay  # shadows[1] is the base model
    shadow_model = shadows[0]

    def tail(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        for shadow, original in zip(shadows, originals):
            shadow.training = original.training
        replay.value = x
        try:
            if backbone.modality == "text":
                # input_ids only reach the (replayed) embeddings; the mask shapes the attention.
                out = shadow_model(input_ids=mask, attention_mask=mask)
            else:
                out = shadow_model(pixel_values=x)
        finally:
            replay.value = None
        return out.logits

    return tail


def _shallow(module: nn.Module) -> nn.Module:
    """A new module object with the same attributes and its own child table (children are shared)."""
    clone = copy.copy(module)
    clone._modules = dict(module._modules)
    return clone

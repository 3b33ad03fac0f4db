"""Block tails: what runs after a cut at the input of block `start`, for the activation cache.

A family's table entry names one of these builders; each gets the backbone and the first block that
trains, and returns `tail(activations, attention_mask) -> logits`. Every tail is checked against the whole
model on real rows before the cache is used (`peft_ladder.cache`), so a builder that does not fit a model
costs a fallback, never a wrong result.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

if TYPE_CHECKING:
    from peft_ladder.backbones.backbone import Backbone

TailFn = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
TailBuilder = Callable[["Backbone", int], TailFn]


class TailUnsupported(ValueError):
    """This backbone has no tail runner for the cut; the caller runs the whole model instead."""


def _after(model: nn.Module, names: Sequence[str]) -> list[nn.Module]:
    """What `forward_features` runs after the blocks, by attribute name (missing ones are skipped)."""
    return [getattr(model, n) for n in names if isinstance(getattr(model, n, None), nn.Module)]


def sequential_tail(after: Sequence[str] = ()) -> TailBuilder:
    """timm models whose blocks run one after another, each one module (ViT, ResNet, EfficientNet, RegNet),
    then `after` (e.g. ViT's final norm), then `forward_head`."""

    def build(backbone: Backbone, start: int) -> TailFn:
        model = backbone.model
        modules = dict(model.named_modules())
        names = [b.name for b in backbone.layout.blocks]
        if any(b.startswith(a + ".") for a in names for b in names):
            raise TailUnsupported(f"blocks of {type(model).__name__} nest inside each other; no sequential tail")
        blocks = [modules[n] for n in names[start:]]
        finish = _after(model, after)

        def tail(x: torch.Tensor, _mask: torch.Tensor | None) -> torch.Tensor:
            for module in [*blocks, *finish]:
                x = module(x)
            return model.forward_head(x)

        return tail

    return build


def staged_tail(stages: str, after: Sequence[str] = ()) -> TailBuilder:
    """timm models built as stages of blocks, each stage `downsample` then `blocks` (ConvNeXt, Swin): a cut
    at a stage's first block runs that whole stage (its downsample included), a cut inside a stage runs the
    rest of its blocks; then the later stages, `after`, and `forward_head`."""

    def build(backbone: Backbone, start: int) -> TailFn:
        model = backbone.model
        stage_list = getattr(model, stages, None)
        block = backbone.layout.blocks[start]
        if not isinstance(stage_list, nn.Sequential | nn.ModuleList) or len(block.key) != 2:
            raise TailUnsupported(f"{type(model).__name__} is not built as `{stages}` of blocks")
        stage, index = block.key
        first = stage_list[stage]
        if block.name == f"{stages}.{stage}":  # the cut module is the whole stage (its downsample comes first)
            run = [first]
        else:
            run = list(first.blocks)[index:]
        run += list(stage_list)[stage + 1 :] + _after(model, after)

        def tail(x: torch.Tensor, _mask: torch.Tensor | None) -> torch.Tensor:
            for module in run:
                x = module(x)
            return model.forward_head(x)

        return tail

    return build


class _Replay(nn.Module):
    """Stands in for the module that feeds the block list: returns the cached activations; other attributes
    come from the original (the model's forward may read them)."""

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


def hf_encoder_tail(backbone: Backbone, start: int) -> TailFn:
    """transformers models whose base model runs `embeddings` (and, for ELECTRA, `embeddings_project`), then
    one ModuleList of blocks (`bert.encoder.layer`, `distilbert.transformer.layer`, `vit.layers`), then
    whatever follows: a shadow copy of the module tree down to the block list, sharing every leaf module and
    parameter, with the feeding module replayed from the cache and the blocks before `start` cut out."""
    model = backbone.model
    prefix = getattr(model, "base_model_prefix", "")
    base = getattr(model, prefix, None)
    blocks = backbone.layout.blocks
    container_name = blocks[0].name.rpartition(".")[0]
    container = dict(model.named_modules()).get(container_name)
    feed = "embeddings_project" if isinstance(getattr(base, "embeddings_project", None), nn.Module) else "embeddings"
    if (
        not isinstance(container, nn.ModuleList)
        or getattr(base, "embeddings", None) is None
        or not container_name.startswith(prefix + ".")
        or [b.name for b in blocks] != [f"{container_name}.{i}" for i in range(len(container))]
    ):
        raise TailUnsupported(
            f"no block tail for {type(model).__name__}: its base model is not `embeddings` + one list of blocks"
        )
    path = container_name.split(".")
    originals, shadows = [model], [_shallow(model)]
    for part in path[:-1]:
        originals.append(getattr(originals[-1], part))
        shadows.append(_shallow(originals[-1]))
        shadows[-2]._modules[part] = shadows[-1]
    shadows[-1]._modules[path[-1]] = nn.ModuleList(list(container)[start:])
    replay = _Replay(getattr(base, feed))
    shadows[1]._modules[feed] = replay  # shadows[1] is the base model
    if feed != "embeddings":
        shadows[1]._modules["embeddings"] = _Replay(base.embeddings)  # its output is replaced downstream anyway
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

"""Penultimate features: what the head sees. Captured with a forward pre-hook on the head, so one
code path serves timm and transformers models, peft-wrapped or not."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager

import torch
import torch.nn as nn

from peft_ladder.backbones.backbone import Backbone
from peft_ladder.backbones.layout import strip_peft_prefix
from peft_ladder.tasks import IGNORE


@contextmanager
def capture_head_input(model: nn.Module, head_modules: list[str], per_token: bool = False):
    """Within the block, `captured[0]` holds the input of the first head module the forward reaches: (B, features),
    or with `per_token` (B, T, features).

    The first one matters for heads made of several modules (DistilBERT's pre_classifier + classifier).
    """
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, args: tuple) -> None:
        if not captured:
            captured.append(args[0].detach() if per_token else args[0].detach().flatten(1))

    handles = [
        module.register_forward_pre_hook(hook)
        for name, module in model.named_modules()
        if strip_peft_prefix(name) in head_modules
    ]
    if not handles:
        raise RuntimeError(f"no module named {head_modules} in the model; cannot read its penultimate features.")
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@torch.inference_mode()
def penultimate_features(
    backbone: Backbone, model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features (float32, on CPU) and labels (when batches carry them) of `model` in eval mode. Batches whose
    labels are per token (B, T) give one feature row per tagged position (a word's first sub-token), with its tag.

    Args:
        backbone: the description of `model` (head names, how to call it).
        model: the backbone's model or a strategy-wrapped copy of it.
        batches: model-input dicts.
        device: where to run; default: where the model's parameters are.
    """
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    feats, labels = [], []
    try:
        for batch in batches:
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            per_token = "word_labels" in batch
            with capture_head_input(model, backbone.layout.head_modules, per_token) as captured:
                backbone.logits(model, batch)
            if per_token:  # the tagged positions; without labels (drift's probe rows), every real token
                tagged = batch["labels"] != IGNORE if "labels" in batch else batch["attention_mask"].bool()
                feats.append(captured[0][tagged].float().cpu())
                if "labels" in batch:
                    labels.append(batch["labels"][tagged].cpu())
                continue
            feats.append(captured[0].float().cpu())
            if "labels" in batch:
                labels.append(batch["labels"].cpu())
    finally:
        model.train(was_training)
    return torch.cat(feats), (torch.cat(labels) if labels else None)

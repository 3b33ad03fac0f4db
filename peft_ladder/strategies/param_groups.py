"""Optimizer parameter groups: head vs backbone learning rates, layer-wise decay, no decay on 1-D tensors."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from peft_ladder.backbones.layout import BackboneLayout, strip_peft_prefix


def build_param_groups(
    model: nn.Module,
    layout: BackboneLayout,
    *,
    head_lr: float,
    backbone_lr: float,
    weight_decay: float = 0.0,
    layer_decay: float | None = None,
) -> list[dict[str, Any]]:
    """Group the trainable parameters of `model` for an optimizer.

    Each group carries `lr`, `weight_decay`, and for the engine: `role` ("head" / "backbone"),
    `layer_id` and `name`. Biases, norms and other 1-D tensors (and what the model lists in
    `no_weight_decay()`, e.g. timm's `pos_embed`) get no weight decay, as in nanoGPT and timm.

    Args:
        model: the adapted model (plain or peft-wrapped).
        layout: the backbone's layout, to place each parameter.
        head_lr: learning rate of the head.
        backbone_lr: learning rate of every trained backbone parameter (adapters included).
        weight_decay: decoupled weight decay for matrices.
        layer_decay: if set, the backbone LR of layer i is `backbone_lr * layer_decay ** (n + 1 - i)`,
            stem = 0 and the blocks 1..n, as timm's `param_groups_layer_decay` does.
    """
    skip = _no_weight_decay_names(model)
    top = layout.num_blocks + 1
    groups: dict[tuple, dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        role, layer_id = layout.role_of(name)
        is_head = role == "head"
        no_decay = param.ndim <= 1 or name.endswith(".bias") or strip_peft_prefix(name) in skip
        if is_head:
            lr, key_layer = head_lr, top + 1
        elif layer_decay is not None:
            lr, key_layer = backbone_lr * layer_decay ** (top - min(layer_id, top)), min(layer_id, top)
        else:
            lr, key_layer = backbone_lr, -1
        key = (is_head, key_layer, no_decay)
        if key not in groups:
            groups[key] = {
                "params": [],
                "lr": lr,
                "weight_decay": 0.0 if no_decay else weight_decay,
                "role": "head" if is_head else "backbone",
                "layer_id": key_layer,
                "name": f"{'head' if is_head else 'backbone'}"
                + (f".layer{key_layer}" if key_layer >= 0 and not is_head else "")
                + (".no_decay" if no_decay else ""),
            }
        groups[key]["params"].append(param)
    # Backbone groups first, shallow to deep, then the head: a stable order for schedulers and checkpoints.
    return [groups[k] for k in sorted(groups, key=lambda k: (k[0], k[1], k[2]))]


def _no_weight_decay_names(model: nn.Module) -> set[str]:
    inner = getattr(model, "get_base_model", lambda: model)()
    fn = getattr(inner, "no_weight_decay", None)
    return set(fn()) if callable(fn) else set()

"""Default peft `target_modules` per family, found by module-name conventions inside the blocks."""

from __future__ import annotations

import torch.nn as nn

from peft_ladder.backbones.layout import BackboneLayout

# Attention projections, by naming convention: fused qkv (timm ViT), query/value (HF BERT,
# ViT, RoBERTa), q_lin/v_lin (DistilBERT), q_proj/v_proj (most newer encoders). LoRA's
# paper adapts W_q and W_v; a fused qkv layer holds both.
_ATTENTION_CONVENTIONS: tuple[tuple[str, ...], ...] = (
    ("qkv",),
    ("query", "value"),
    ("q_lin", "v_lin"),
    ("q_proj", "v_proj"),
)


def default_lora_targets(model: nn.Module, layout: BackboneLayout) -> list[str]:
    """Return the modules a LoRA-family adapter should wrap by default.

    Attention projections inside the blocks when the model has them; otherwise every
    convolution inside the blocks (ResNet), listed by full name so the stem and head stay out.

    Raises:
        ValueError: if neither convention matches; the message says to pass `target_modules`.
    """
    in_blocks = [(n, m) for n, m in model.named_modules() if n and layout.block_of(n + ".weight") is not None]
    leaf_names = {n.rsplit(".", 1)[-1] for n, m in in_blocks if isinstance(m, nn.Linear)}
    for convention in _ATTENTION_CONVENTIONS:
        if set(convention) <= leaf_names:
            return list(convention)
    convs = [n for n, m in in_blocks if isinstance(m, nn.Conv2d)]
    if convs:
        return convs
    raise ValueError(
        f"no default LoRA targets for {type(model).__name__}: its blocks have no attention projections "
        f"named like {_ATTENTION_CONVENTIONS} and no convolutions. Pass `target_modules=[...]` to the strategy."
    )

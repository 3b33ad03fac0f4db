"""`train.gradient_checkpointing`: recompute each block's activations in the backward pass instead of keeping
them, through the model library's own switch (transformers' `gradient_checkpointing_enable`, timm's
`set_grad_checkpointing`).

Non-reentrant checkpointing (`use_reentrant=False`): it needs no input that requires grad, so frozen
embeddings in front of adapters or of a partly unfrozen stack still send gradients to what trains (the
reentrant form would silently train nothing there, the trap `enable_input_require_grads` works around), and it
replays the RNG state, so dropout masks and results equal the run without it.
"""

from __future__ import annotations

import torch.nn as nn

from peft_ladder.backbones.backbone import Backbone
from peft_ladder.backbones.text_classifier import EncoderClassifier


def enable_gradient_checkpointing(backbone: Backbone) -> str:
    """Switch it on for `backbone`'s model (in place; a peft wrapper shares the same modules).

    Returns:
        How it was switched on (for the log).

    Raises:
        ValueError: the model has no gradient checkpointing (named, with the family).
    """
    model: nn.Module = backbone.model
    if isinstance(model, EncoderClassifier):
        model = model.encoder
    if backbone.source == "timm":
        if not hasattr(model, "set_grad_checkpointing"):
            raise ValueError(_unsupported(backbone, "timm's set_grad_checkpointing"))
        try:
            model.set_grad_checkpointing(True)
        except (AssertionError, NotImplementedError) as err:  # timm models that declare it unsupported
            raise ValueError(_unsupported(backbone, f"timm's set_grad_checkpointing ({err})")) from None
        return "timm set_grad_checkpointing(True)"
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ValueError(_unsupported(backbone, "transformers' gradient_checkpointing_enable"))
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers 5.x's name; the old one warns
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        return "transformers activation_checkpointing_enable(use_reentrant=False)"
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    return "transformers gradient_checkpointing_enable(use_reentrant=False)"


def _unsupported(backbone: Backbone, switch: str) -> str:
    return (
        f"train.gradient_checkpointing: {backbone.spec.name} (family {backbone.family.name}) has no {switch}; "
        "set it to false, or lower train.batch_size and raise train.gradient_accumulation_steps to save memory."
    )

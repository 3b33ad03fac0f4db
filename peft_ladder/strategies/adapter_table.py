"""The adapter table: every peft method a classifier can train in our loop, one `register_adapter` call each.

A row names the peft config class and only what differs from peft: our defaults, recipe shorthand, bounds,
which layers it wraps, and its starting LR with the source. `order` follows the trainable parameters at these
defaults on a BERT-base encoder (query and value targets, head left out), so the ladder lists the smaller
surfaces first: IA3 18k, FourierFT 24k, VeRA 25k, LoKr 26k, BOFT 92k, OFT 286k, LoRA and rsLoRA 295k, DoRA 313k,
LoHa 590k (bitfit is 25).

Left out: AdaLoRA. It prunes ranks by calling `model.update_and_allocate(step)` after every backward (before
`zero_grad`), needs `total_step` fixed up front, and adds its orthogonality penalty only to a loss the peft
model computes itself; our engine computes the loss from logits and has no per-step hook for a strategy
(strategies never touch the optimizer or the loop). Without those calls it would train a fixed-rank SVD-form
LoRA while calling itself AdaLoRA, so it is not offered until the engine gets such a hook.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import peft
import torch.nn as nn
from pydantic import Field

from peft_ladder.backbones.backbone import Backbone
from peft_ladder.strategies.adapters import AdapterConfig, register_adapter

RANK = Field(ge=1)
PROBABILITY = Field(ge=0, lt=1)
POSITIVE = Field(gt=0)
# Today's recipes write `alpha` and `dropout` (the LoRA-family shorthand); each method maps them to its field.
LORA_NAMES = {"alpha": "lora_alpha", "dropout": "lora_dropout"}
LORA_BOUNDS = {"r": RANK, "lora_alpha": POSITIVE, "lora_dropout": PROBABILITY}
# r = 8 is LoRA's common default; alpha = 2 x r keeps the update scale of r = 8 runs when r changes. Dropout 0 is
# peft's own default: dropout on a target's input keeps a dropped copy of that input for the backward pass and draws
# a mask each step, which made a LoRA step 0.83x-0.91x of a full step on resnet18 and vit_tiny (0.62x-0.74x without).
LORA_DEFAULTS = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0}
# LoRA adapters take ~10x the LR of full fine-tuning (Hu et al., 2021 used 2e-4..5e-4).
LORA_LR = 5e-4


def fourier_entries_fit(backbone: Backbone, targets: Mapping[str, nn.Module], config: AdapterConfig) -> str | None:
    """FourierFT learns n_frequency entries of each target's out x in spectrum: no more than there are."""
    pattern = config.n_frequency_pattern or {}
    for name, module in targets.items():
        n = next((v for k, v in pattern.items() if re.fullmatch(rf"(.*\.)?{k}", name)), config.n_frequency)
        entries = module.in_features * module.out_features
        if n > entries:
            return (
                f"fourierft's n_frequency={n} is more than the {entries} spectrum entries of {name} "
                f"({module.out_features} x {module.in_features}); lower n_frequency or name other target_modules."
            )
    return None


def oft_not_on_convnets(backbone: Backbone, targets: Mapping[str, nn.Module], config: AdapterConfig) -> str | None:
    """peft 0.21's OFT takes any 4-D input as a conv feature map (it unfolds it), and convnets feed their Linear
    layers channels-last maps (ConvNeXt's pointwise layers): the forward fails or rotates the wrong axis."""
    if backbone.family.convnet:
        return (
            f"oft: {backbone.family.name} is a convnet, whose Linear layers take channels-last 4-D maps, which "
            "peft 0.21's OFT mistakes for conv inputs; use boft (the same orthogonal rotation, weight-side)."
        )
    return None


register_adapter(
    "ia3",
    peft.IA3Config,
    description="IA3: learned rescaling of the targets' outputs",
    order=11,
    # No feed-forward targets by default: IA3 then scales outputs; peft needs the list when targets are given.
    defaults={"feedforward_modules": []},
    default_lr=3e-3,  # T-Few (Liu et al., 2022) trained IA3 with 3e-3
)
register_adapter(
    "fourierft",
    peft.FourierFTConfig,
    description="FourierFT: a few trained spectrum entries per target, its update the inverse DFT",
    order=12,
    # Zero spectrum: start at the pretrained function like every other adapter here (peft's default draws it
    # from a normal distribution, which moves the features before the head phase of LP-FT has seen them).
    defaults={"init_weights": True},
    bounds={"n_frequency": RANK, "scaling": POSITIVE},
    linear_only=True,
    fits=fourier_entries_fit,
    # Gao et al. (ICML 2024), github.com/Chaos96/fourierft: RoBERTa-base GLUE 5e-2..1.2e-1 at n_frequency 1000,
    # ViT-B 2e-1 at 3000; the low end, since the ladder searches x0.3..x3 around it.
    default_lr=5e-2,
)
register_adapter(
    "vera",
    peft.VeraConfig,
    description="VeRA: frozen random low-rank matrices shared by all targets, trained scaling vectors",
    order=13,
    aliases={"dropout": "vera_dropout"},
    bounds={"r": RANK, "vera_dropout": PROBABILITY},
    # peft 0.21 wraps only Linear layers; targets of different shapes share slices of one projection pair
    # sized for the largest, so no same-shape condition is needed.
    linear_only=True,
    default_lr=4e-3,  # VeRA (Kopiczko et al., ICLR 2024) trained RoBERTa-base on GLUE with 4e-3..1e-2
)
register_adapter(
    "lokr",
    peft.LoKrConfig,
    description="LoKr: Kronecker product of a small and a low-rank factor",
    order=14,
    defaults={"r": 8, "alpha": 16},  # LoRA's rank and alpha = 2 x r
    aliases={"dropout": "module_dropout"},
    bounds={"r": RANK, "alpha": POSITIVE, "module_dropout": PROBABILITY, "rank_dropout": PROBABILITY},
    default_lr=LORA_LR,  # same alpha / r scaling as LoRA
)
register_adapter(
    "boft",
    peft.BOFTConfig,
    description="BOFT: butterfly-factored orthogonal rotation of the targets' weights (Linear and Conv2d)",
    order=15,
    aliases={"dropout": "boft_dropout"},
    bounds={"boft_dropout": PROBABILITY},
    # No classifier LR in peft's docs or the BOFT paper's public scripts that we could check: the LoRA family's,
    # which the rung's LR search (x0.3, x1, x3) moves from.
    default_lr=LORA_LR,
)
register_adapter(
    "oft",
    peft.OFTConfig,
    description="OFT: block-diagonal orthogonal rotation of the targets' weights (Linear layers)",
    order=16,
    aliases={"dropout": "module_dropout"},
    bounds={"module_dropout": PROBABILITY},
    # Linear only: peft 0.21's OFT on Conv2d rotates unfolded input patches with stride 1 and no padding and
    # folds them back summed, which is not the identity at init (we measured a max difference of 2.7 on a 3x3
    # conv) and fails on feature maps smaller than the kernel. BOFT rotates the weight and covers convnets.
    # And any Linear fed a 4-D tensor is unfolded like a conv input: see `oft_not_on_convnets`.
    linear_only=True,
    fits=oft_not_on_convnets,
    default_lr=LORA_LR,  # as BOFT: no classifier value we could check
)
register_adapter(
    "lora",
    peft.LoraConfig,
    description="LoRA: a trained low-rank update added to the targets' weights",
    defaults=LORA_DEFAULTS,
    aliases=LORA_NAMES,
    bounds=LORA_BOUNDS,
    order=20,
    default_lr=LORA_LR,
)
register_adapter(
    "rslora",
    peft.LoraConfig,
    description="rsLoRA: LoRA scaled by alpha / sqrt(r) instead of alpha / r (Kalajdzievski, 2023)",
    defaults={**LORA_DEFAULTS, "use_rslora": True},
    aliases=LORA_NAMES,
    bounds=LORA_BOUNDS,
    order=21,
    default_lr=LORA_LR,
)
register_adapter(
    "dora",
    peft.LoraConfig,
    description="DoRA: LoRA on the weight's direction plus a trained magnitude (Liu et al., 2024)",
    defaults={**LORA_DEFAULTS, "use_dora": True},
    aliases=LORA_NAMES,
    bounds=LORA_BOUNDS,
    order=22,
    default_lr=LORA_LR,
)
register_adapter(
    "loha",
    peft.LoHaConfig,
    description="LoHa: Hadamard product of two low-rank updates",
    order=23,
    defaults={"r": 8, "alpha": 16},  # LoRA's rank and alpha = 2 x r
    aliases={"dropout": "module_dropout"},
    bounds={"r": RANK, "alpha": POSITIVE, "module_dropout": PROBABILITY, "rank_dropout": PROBABILITY},
    default_lr=LORA_LR,  # same alpha / r scaling as LoRA
)

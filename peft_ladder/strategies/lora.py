"""Rung 2: a small adaptation surface through peft (LoRA, DoRA, IA3, LoHa, LoKr).

The adapter is built with peft's own config classes and `get_peft_model`, the head rides
along as `modules_to_save`, so the saved folder loads with stock `PeftModel.from_pretrained`.
"""

from __future__ import annotations

from typing import Any, Literal

import peft
import torch.nn as nn
from pydantic import Field
from torch.nn.modules.batchnorm import _BatchNorm

from peft_ladder.backbones.backbone import Backbone
from peft_ladder.strategies.base import Strategy, StrategyConfig
from peft_ladder.strategies.registry import register_strategy

PeftMethod = Literal["lora", "dora", "ia3", "loha", "lokr"]


class LoraConfig(StrategyConfig):
    method: PeftMethod = Field("lora", description="peft method: lora, dora (LoRA with use_dora), ia3, loha, lokr")
    r: int = Field(8, ge=1, description="adapter rank (lora, dora, loha, lokr); 8 is LoRA's common default")
    alpha: float = Field(16, gt=0, description="scaling numerator; alpha = 2 x r keeps the update scale of r=8 runs")
    dropout: float = Field(
        0.1, ge=0, lt=1, description="dropout on the adapter input (lora/dora) or module (loha/lokr)"
    )
    target_modules: list[str] | str | None = Field(
        None, description="modules to adapt (peft syntax: names/suffixes or a regex); default: the backbone's"
    )
    peft_kwargs: dict[str, Any] = Field(default_factory=dict, description="extra fields for the peft config class")


@register_strategy
class Lora(Strategy):
    name = "lora"
    config_cls = LoraConfig
    order = 20
    default_lr = 5e-4  # LoRA adapters take ~10x the LR of full fine-tuning (Hu et al., 2021 used 2e-4..5e-4)
    artifact_kind = "adapter"

    def configure(self, backbone: Backbone, config: LoraConfig) -> nn.Module:
        peft_config = build_peft_config(backbone, config)
        try:
            return peft.get_peft_model(backbone.model, peft_config)
        except ValueError as err:
            raise ValueError(
                f"strategy.target_modules={peft_config.target_modules!r} does not fit {backbone.spec.name}: {err} "
                f"Its default targets are {_describe_targets(backbone)}."
            ) from None


def build_peft_config(backbone: Backbone, config: LoraConfig) -> peft.PeftConfig:
    """The peft config for `config.method`, with the head (and updating BatchNorms) in `modules_to_save`."""
    targets = config.target_modules if config.target_modules is not None else backbone.default_targets()
    modules_to_save = list(backbone.layout.head_modules)
    if config.bn_policy == "update":
        # Running statistics that move must be saved with the adapter; peft saves modules_to_save
        # (and trains their affine parameters too).
        modules_to_save += [n for n, m in backbone.model.named_modules() if isinstance(m, _BatchNorm)]
    common = dict(target_modules=targets, modules_to_save=modules_to_save, **config.peft_kwargs)
    if config.method in ("lora", "dora"):
        return peft.LoraConfig(
            r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout, use_dora=config.method == "dora", **common
        )
    if config.method == "ia3":
        common.setdefault("feedforward_modules", [])
        return peft.IA3Config(**common)
    if config.method == "loha":
        return peft.LoHaConfig(r=config.r, alpha=config.alpha, module_dropout=config.dropout, **common)
    return peft.LoKrConfig(r=config.r, alpha=config.alpha, module_dropout=config.dropout, **common)


def _describe_targets(backbone: Backbone) -> str:
    try:
        return str(backbone.default_targets())
    except ValueError as err:
        return f"none ({err})"

"""Rung 4: full fine-tuning. Only worth it when the simpler rungs clearly fail."""

from __future__ import annotations

from peft_ladder.backbones.backbone import Backbone
from peft_ladder.strategies.base import Strategy, StrategyConfig
from peft_ladder.strategies.registry import register_strategy


class FullConfig(StrategyConfig):
    """Full fine-tuning has no options beyond the shared ones."""


@register_strategy
class Full(Strategy):
    name = "full"
    config_cls = FullConfig
    order = 40
    # BERT fine-tunes at 2e-5..5e-5 (Devlin et al., 2019); ViT fine-tuning uses similar AdamW LRs.
    default_lr = 5e-5
    artifact_kind = "full"

    def backbone_trainable(self, backbone: Backbone, config: StrategyConfig) -> set[str]:
        return {n for n, _ in backbone.model.named_parameters()}

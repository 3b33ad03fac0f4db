"""Rung 1: frozen backbone, new head. The baseline every deeper rung must beat."""

from __future__ import annotations

from peft_ladder.backbones.backbone import Backbone
from peft_ladder.strategies.base import Strategy, StrategyConfig
from peft_ladder.strategies.registry import register_strategy


class LinearProbeConfig(StrategyConfig):
    """A linear probe has no options beyond the shared ones."""


@register_strategy
class LinearProbe(Strategy):
    name = "linear_probe"
    config_cls = LinearProbeConfig
    order = 10
    trains_backbone = False

    def backbone_trainable(self, backbone: Backbone, config: StrategyConfig) -> set[str]:
        return set()

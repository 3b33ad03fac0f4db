"""The control: the same architecture, randomly initialised, everything trainable.

Without it no comparison can say the pretrained weights helped.
"""

from __future__ import annotations

from dataclasses import replace

from peft_ladder.backbones.backbone import Backbone
from peft_ladder.backbones.loader import load_backbone_from_spec
from peft_ladder.strategies.base import Strategy, StrategyConfig
from peft_ladder.strategies.registry import register_strategy


class ScratchConfig(StrategyConfig):
    """Scratch has no options beyond the shared ones."""


@register_strategy
class Scratch(Strategy):
    name = "scratch"
    config_cls = ScratchConfig
    order = 90
    default_lr = 1e-3  # random weights need the LR a new model is trained with, not a fine-tuning LR
    from_pretrained = False
    artifact_kind = "full"

    def init_backbone(self, backbone: Backbone, config: StrategyConfig) -> Backbone:
        # Rebuild through the library's own initialisation rather than re-initialising in place.
        return load_backbone_from_spec(replace(backbone.spec, pretrained=False, checkpoint=None))

    def backbone_trainable(self, backbone: Backbone, config: StrategyConfig) -> set[str]:
        return {n for n, _ in backbone.model.named_parameters()}

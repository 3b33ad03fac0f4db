"""BitFit (Ben Zaken et al., 2022): train only the backbone's bias terms, plus the head."""

from __future__ import annotations

from peft_ladder.backbones.backbone import Backbone
from peft_ladder.strategies.base import Strategy, StrategyConfig
from peft_ladder.strategies.registry import register_strategy


class BitFitConfig(StrategyConfig):
    """BitFit has no options beyond the shared ones."""


@register_strategy
class BitFit(Strategy):
    name = "bitfit"
    config_cls = BitFitConfig
    order = 25
    default_lr = 5e-4  # BitFit (Ben Zaken et al., 2022) tuned biases with 1e-4..1e-3

    def backbone_trainable(self, backbone: Backbone, config: StrategyConfig) -> set[str]:
        head = set(backbone.layout.head_params())
        biases = {n for n, _ in backbone.model.named_parameters() if n.endswith(".bias") and n not in head}
        if not biases:
            raise ValueError(
                f"{backbone.spec.name} has no bias parameters outside the head: BitFit would train nothing."
            )
        return biases

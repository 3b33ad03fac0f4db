"""Apply a registered strategy to a backbone: the one way an `AdaptedModel` is made."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from peft_ladder.backbones.backbone import Backbone
from peft_ladder.strategies.base import AdaptedModel, StrategyConfig
from peft_ladder.strategies.batchnorm import lock_frozen_batchnorm, resolve_bn_policy
from peft_ladder.strategies.registry import get_strategy, make_strategy_config
from peft_ladder.strategies.report import TrainableReport


def apply_strategy(
    backbone: Backbone, strategy: str, config: StrategyConfig | dict[str, Any] | None = None, **options: Any
) -> AdaptedModel:
    """Apply a registered strategy to a backbone.

    Args:
        backbone: from `load_backbone`.
        strategy: registry name, e.g. "linear_probe", "lora", "partial_unfreeze".
        config: a validated config, or a dict of options.
        **options: options as keywords (merged over `config` when it is a dict).

    Returns:
        An `AdaptedModel` whose `report` says exactly what trains.
    """
    cls = get_strategy(strategy)
    if isinstance(config, StrategyConfig):
        if options:
            config = config.model_copy(update=options)
        cfg = cls.config_cls.model_validate(config.model_dump())
    else:
        cfg = make_strategy_config(strategy, {**(config or {}), **options})
    impl = cls()
    unsupported = impl.supports(backbone, cfg)
    if unsupported:
        raise ValueError(f"strategy {strategy!r} does not fit {backbone.spec.name}: {unsupported}")
    backbone = impl.init_backbone(backbone, cfg)
    model = impl.configure(backbone, cfg)
    return finish_adaptation(model, backbone, strategy, cfg)


def finish_adaptation(model: nn.Module, backbone: Backbone, strategy: str, cfg: StrategyConfig) -> AdaptedModel:
    """Lock frozen BatchNorms, check the head trains, and build the report."""
    locked = lock_frozen_batchnorm(model, resolve_bn_policy(cfg.bn_policy, get_strategy(strategy).from_pretrained))
    report = TrainableReport.from_model(model, backbone.layout, locked)
    head_trainable = [n for n in report.trainable_names if backbone.layout.role_of(n)[0] == "head"]
    if not head_trainable:
        raise RuntimeError(f"strategy {strategy!r} left the head {backbone.layout.head_modules} frozen.")
    return AdaptedModel(
        model=model,
        backbone=backbone,
        strategy=strategy,
        strategy_cls=get_strategy(strategy),
        config=cfg,
        report=report,
    )

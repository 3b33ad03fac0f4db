"""Rung 1: frozen backbone, new head. The baseline every deeper rung must beat, so it is trained to
convergence: a full-batch L-BFGS logistic regression on the frozen features, its L2 strength chosen by
cross-validation on the training rows (`peft_ladder.probe`), not an SGD head cut off by an epoch budget."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from peft_ladder.backbones.backbone import Backbone
from peft_ladder.strategies.base import Strategy, StrategyConfig
from peft_ladder.strategies.registry import register_strategy


class LinearProbeConfig(StrategyConfig):
    solver: Literal["lbfgs", "adamw"] = Field(
        "lbfgs",
        description="lbfgs: logistic regression solved to convergence on the frozen features (the honest baseline); "
        "adamw: the head trained for train.epochs like any rung",
    )
    folds: int = Field(5, ge=2, description="lbfgs: cross-validation folds on the training rows that choose the L2")
    l2_grid: list[float] | None = Field(
        None, description="lbfgs: L2 strengths tried (default: 15 values from 1e-6 to 10, log-spaced)"
    )


@register_strategy
class LinearProbe(Strategy):
    name = "linear_probe"
    config_cls = LinearProbeConfig
    order = 10
    trains_backbone = False

    def backbone_trainable(self, backbone: Backbone, config: StrategyConfig) -> set[str]:
        return set()

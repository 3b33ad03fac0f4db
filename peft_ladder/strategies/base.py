"""The strategy interface and `AdaptedModel`, what applying a strategy hands back (see `apply.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field

from peft_ladder.backbones.backbone import Backbone
from peft_ladder.strategies.batchnorm import updating_batchnorm
from peft_ladder.strategies.param_groups import build_param_groups
from peft_ladder.strategies.report import TrainableReport

ArtifactKind = Literal["adapter", "delta", "full"]


class StrategyConfig(BaseModel):
    """Options every strategy shares. Subclasses add their own; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    bn_policy: Literal["auto", "frozen_stats", "freeze", "update"] = Field(
        "auto",
        description="auto: frozen_stats for strategies that start from pretrained weights, freeze for the "
        "from-scratch control; frozen_stats: every BatchNorm, trainable or not, normalises with the running "
        "statistics it was loaded with (its scale and shift still train), so a deeper rung starts exactly where "
        "the probe ended (LP-FT) and a few small batches cannot drag the statistics away; freeze: only the "
        "BatchNorms of frozen parts keep their statistics; update: every BatchNorm updates its statistics (many "
        "labels, a shifted input distribution).",
    )


class Strategy:
    """How deep to adapt. A subclass sets what is trainable; it never touches the optimizer.

    Class attributes:
        name: registry key.
        config_cls: its typed config.
        order: position on the ladder (smaller = less adaptation).
        trains_backbone: False when only the head trains (no LP-FT second phase).
        from_pretrained: False for the from-scratch control.
        artifact_kind: "adapter" (peft folder), "delta" (changed tensors) or "full" (whole model).
        default_lr: the ladder's starting point for this rung's LR search (the backbone LR; the
            head LR for rungs that train only the head). None: take it from the recipe's `train`.
    """

    name: ClassVar[str]
    config_cls: ClassVar[type[StrategyConfig]] = StrategyConfig
    order: ClassVar[int] = 100
    trains_backbone: ClassVar[bool] = True
    from_pretrained: ClassVar[bool] = True
    artifact_kind: ClassVar[ArtifactKind] = "delta"
    default_lr: ClassVar[float | None] = None

    def supports(self, backbone: Backbone, config: StrategyConfig) -> str | None:
        """None when this strategy fits `backbone`; otherwise why not (e.g. VeRA needs Linear targets).
        The ladder checks every rung before the first one trains, and the test matrix skips only these."""
        return None

    def init_backbone(self, backbone: Backbone, config: StrategyConfig) -> Backbone:
        """Return the backbone to adapt (the scratch control re-initialises it)."""
        return backbone

    def backbone_trainable(self, backbone: Backbone, config: StrategyConfig) -> set[str]:
        """Names of the backbone parameters (head excluded) this strategy trains."""
        raise NotImplementedError

    def configure(self, backbone: Backbone, config: StrategyConfig) -> nn.Module:
        """Set `requires_grad` (head + `backbone_trainable`) and return the model to train."""
        selected = self.backbone_trainable(backbone, config)
        head = set(backbone.layout.head_params())
        for name, param in backbone.model.named_parameters():
            param.requires_grad_(name in selected or name in head)
        return backbone.model


@dataclass
class AdaptedModel:
    """A backbone with a strategy applied: the model to train and everything needed to save it.

    Attributes:
        model: the model to train (a `peft.PeftModel` for adapter strategies).
        backbone: the backbone description (its `model` is the base model).
        strategy: the strategy's registry name.
        strategy_cls: the strategy's class (its artifact kind, whether it trains the backbone).
        config: the strategy's validated config.
        report: what is frozen and what is trainable.
    """

    model: nn.Module
    backbone: Backbone
    strategy: str
    strategy_cls: type[Strategy]
    config: StrategyConfig
    report: TrainableReport

    def logits(self, batch: dict[str, torch.Tensor], model: nn.Module | None = None) -> torch.Tensor:
        """Logits of `model` (default: this one; pass the Accelerate-wrapped one when training)."""
        return self.backbone.logits(model if model is not None else self.model, batch)

    def param_groups(
        self, *, head_lr: float, backbone_lr: float, weight_decay: float = 0.0, layer_decay: float | None = None
    ) -> list[dict[str, Any]]:
        """Optimizer groups with separate head and backbone LRs; see `build_param_groups`."""
        return build_param_groups(
            self.model,
            self.backbone.layout,
            head_lr=head_lr,
            backbone_lr=backbone_lr,
            weight_decay=weight_decay,
            layer_decay=layer_decay,
        )

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """What training changes, as CPU copies: trainable parameters plus the running statistics of
        BatchNorms that update. The delta artifacts store exactly this; the engine keeps its best epoch."""
        model = self.model
        names = {n for n, p in model.named_parameters() if p.requires_grad}
        for module_name in updating_batchnorm(model):
            names |= {f"{module_name}.{b}" for b, _ in model.get_submodule(module_name).named_buffers()}
        state = model.state_dict()
        return {n: state[n].detach().contiguous().cpu().clone() for n in sorted(names)}

"""Rung 3: unfreeze chosen blocks (the last k by default), plus the head."""

from __future__ import annotations

from pydantic import Field

from peft_ladder.backbones.backbone import Backbone
from peft_ladder.strategies.base import Strategy, StrategyConfig
from peft_ladder.strategies.registry import register_strategy


class PartialUnfreezeConfig(StrategyConfig):
    last_k: int = Field(1, ge=1, description="unfreeze the last k blocks (ignored when `blocks` is set)")
    blocks: list[int] | None = Field(
        None,
        min_length=1,
        description="explicit block indices to unfreeze (negative counts from the end); e.g. [0] for an "
        "input-level shift, where the first block matters most (Lee et al., 2023, surgical fine-tuning)",
    )
    include_stem: bool = Field(False, description="also unfreeze the stem (patch/conv stem, embeddings)")
    include_neck: bool | None = Field(
        None, description="unfreeze the neck (final norm, pooler); default: when the last block is unfrozen"
    )


@register_strategy
class PartialUnfreeze(Strategy):
    name = "partial_unfreeze"
    config_cls = PartialUnfreezeConfig
    order = 30
    default_lr = 1e-4  # between adapters and full fine-tuning: fewer weights move, so a larger step is safe

    def supports(self, backbone: Backbone, config: PartialUnfreezeConfig) -> str | None:
        n = backbone.layout.num_blocks
        if config.blocks is not None:
            outside = [i for i in config.blocks if not -n <= i < n]
            return (
                f"blocks {outside} are out of range: {backbone.spec.name} has {n} blocks (0..{n - 1})"
                if outside
                else None
            )
        if config.last_k > n:
            return f"last_k={config.last_k} but {backbone.spec.name} has {n} blocks; use `full` to train everything"
        return None

    def backbone_trainable(self, backbone: Backbone, config: PartialUnfreezeConfig) -> set[str]:
        layout = backbone.layout
        if config.blocks is not None:
            try:
                indices = {layout.block_index(i) for i in config.blocks}
            except IndexError as err:
                raise ValueError(f"strategy.blocks: {err}") from None
        else:
            if config.last_k > layout.num_blocks:
                raise ValueError(
                    f"strategy.last_k={config.last_k} but {backbone.spec.name} has {layout.num_blocks} blocks; "
                    "use `full` to train everything."
                )
            indices = set(range(layout.num_blocks - config.last_k, layout.num_blocks))
        selected = {p for i in indices for p in layout.blocks[i].params}
        include_neck = config.include_neck if config.include_neck is not None else layout.num_blocks - 1 in indices
        if include_neck:
            selected |= set(layout.neck)
        if config.include_stem:
            selected |= set(layout.stem)
        return selected

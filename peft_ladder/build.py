"""What a recipe builds before anything trains: its splits and its backbone (the engine, the ladder and the
benchmark all start here)."""

from __future__ import annotations

from accelerate import Accelerator
from datasets import DatasetDict, Image
from pydantic import BaseModel

from peft_ladder.backbones import Backbone, load_backbone
from peft_ladder.config import RunConfig
from peft_ladder.data import Splits, load_raw, make_splits


def build_splits(cfg: RunConfig, accelerator: Accelerator | None = None) -> Splits:
    """Load the recipe's dataset and make its splits (seeded by `train.seed`); under Accelerate the main
    process reads (and caches) first."""
    if accelerator is None:
        raw = load_raw(cfg.data)
    else:
        with accelerator.main_process_first():
            raw = load_raw(cfg.data)
    return make_splits(raw, cfg.data, _modality(raw), cfg.train.seed)


def backbone_for(cfg: RunConfig, label_names: list[str], *, pretrained: bool | None = None) -> Backbone:
    """Load the recipe's backbone with a fresh head for `label_names` (`pretrained=False`: random init)."""
    bcfg = cfg.backbone
    return load_backbone(
        bcfg.name,
        label_names=label_names,
        pretrained=bcfg.pretrained if pretrained is None else pretrained,
        model_kwargs=bcfg.model_kwargs,
        checkpoint=bcfg.checkpoint,
        revision=bcfg.revision,
        head=bcfg.head,
        block_pattern=bcfg.block_pattern,
        tokenizer=bcfg.tokenizer,
        pooling=bcfg.pooling.model_dump() if isinstance(bcfg.pooling, BaseModel) else bcfg.pooling,
        pooling_normalize=bcfg.pooling_normalize,
        data_config=bcfg.data_config.overrides() if bcfg.data_config else None,
        keep_head=bcfg.keep_head,
        trust_remote_code=bcfg.trust_remote_code,
        allow_pickle=bcfg.allow_pickle,
    )


def _modality(raw: DatasetDict) -> str:
    """Image when the data has an Image feature, text otherwise."""
    first = next(iter(raw.values()))
    return "image" if any(isinstance(f, Image) for f in first.features.values()) else "text"

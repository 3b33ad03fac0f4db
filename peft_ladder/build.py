"""What a recipe builds before anything trains: its splits and its backbone (the engine, the ladder and the
benchmark all start here)."""

from __future__ import annotations

import torch.nn as nn
from accelerate import Accelerator
from datasets import DatasetDict, Image
from pydantic import BaseModel

from peft_ladder.backbones import Backbone, load_backbone
from peft_ladder.config import RunConfig
from peft_ladder.data import Splits, load_raw, make_splits
from peft_ladder.tasks import Task


def build_splits(cfg: RunConfig, accelerator: Accelerator | None = None) -> Splits:
    """Load the recipe's dataset and make its splits (seeded by `train.seed`); under Accelerate the main
    process reads (and caches) first."""
    if accelerator is None:
        raw = load_raw(cfg.data)
    else:
        with accelerator.main_process_first():
            raw = load_raw(cfg.data)
    return make_splits(raw, cfg.data, _modality(raw), cfg.train.seed)


def backbone_for(
    cfg: RunConfig, label_names: list[str], *, pretrained: bool | None = None, task: Task | None = None
) -> Backbone:
    """Load the recipe's backbone with a fresh head for `label_names` (`pretrained=False`: random init); a
    transformers model's config names the `task`'s `problem_type`, so stock tools pick the same loss."""
    bcfg = cfg.backbone
    pooling = bcfg.pooling.model_dump() if isinstance(bcfg.pooling, BaseModel) else bcfg.pooling
    if task is not None and task.per_token:
        if pooling not in (None, "auto"):
            raise ValueError(
                f"backbone.pooling={pooling!r}: data.task=token_classification tags every token, so nothing is "
                "pooled; remove backbone.pooling."
            )
        pooling = "token"
    backbone = load_backbone(
        bcfg.name,
        label_names=label_names,
        pretrained=bcfg.pretrained if pretrained is None else pretrained,
        model_kwargs=bcfg.model_kwargs,
        checkpoint=bcfg.checkpoint,
        revision=bcfg.revision,
        head=bcfg.head,
        block_pattern=bcfg.block_pattern,
        tokenizer=bcfg.tokenizer,
        pooling=pooling,
        pooling_normalize=bcfg.pooling_normalize,
        data_config=bcfg.data_config.overrides() if bcfg.data_config else None,
        keep_head=bcfg.keep_head,
        trust_remote_code=bcfg.trust_remote_code,
        allow_pickle=bcfg.allow_pickle,
    )
    if backbone.modality == "text" and cfg.data.max_length is not None:
        check_max_length(cfg.data.max_length, backbone)
    config = getattr(backbone.model, "config", None)
    if task is not None and hasattr(config, "problem_type"):
        config.problem_type = task.problem_type
    return backbone


def check_max_length(max_length: int, backbone: Backbone) -> None:
    """Refuse a data.max_length longer than the text model's positions reach, before anything is tokenized or
    trained (past it, the first long batch fails inside the model: `size of tensor a (25008) must match ... (512)`).

    The reach is the learned position table's size, less the positions a family skips (RoBERTa's start at
    padding_idx + 1: 514 - 2 = 512); without such a table, the config's max_position_embeddings.
    """
    limit, source = _position_limit(backbone.model)
    if limit is not None and max_length > limit:
        raise ValueError(
            f"data.max_length={max_length} is longer than {backbone.spec.name} takes: {source} cover {limit} tokens; "
            f"set data.max_length to at most {limit}, or leave it unset (the model's length, at most 512)."
        )


def _position_limit(model: nn.Module) -> tuple[int | None, str]:
    for name, module in model.named_modules():
        if name.split(".")[-1] == "position_embeddings" and isinstance(module, nn.Embedding):
            skipped = 0 if module.padding_idx is None else module.padding_idx + 1
            what = f" less the {skipped} it skips (padding_idx + 1)" if skipped else ""
            return module.num_embeddings - skipped, f"its {module.num_embeddings} position embeddings{what}"
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return (limit, f"its positions (max_position_embeddings={limit})") if isinstance(limit, int) else (None, "")


def _modality(raw: DatasetDict) -> str:
    """Image when the data has an Image feature, text otherwise."""
    first = next(iter(raw.values()))
    return "image" if any(isinstance(f, Image) for f in first.features.values()) else "text"

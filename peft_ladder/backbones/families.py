"""The family table: what one backbone family needs, in one place (as timm keeps `group_matcher` with its
model). Nothing else in peft_ladder branches on model classes.

An entry says, for a family: its blocks (when neither timm's `group_matcher` nor "the largest list of
modules" finds them), how a text encoder pools for its head, which projections LoRA adapts by default,
which cached-tail builder fits it, whether it is a convnet (NHWC memory format pays on GPUs), and the AdamW
LR grid its from-scratch control searches (random weights train best at far higher LRs than fine-tuning). A
family not in the table takes the generic path: the head by the library's conventions, blocks by the largest
ModuleList (transformers) or `group_matcher` (timm), LoRA on the known attention names or else on every
Linear and ungrouped Conv2d in the blocks, and a tail attempt that the cache checks before using.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch.nn as nn

from peft_ladder.backbones.layout import BlockPattern
from peft_ladder.backbones.pooling import PoolingMode
from peft_ladder.backbones.tails import TailBuilder, hf_encoder_tail, sequential_tail, staged_tail

Source = Literal["timm", "hf"]


@dataclass(frozen=True)
class Family:
    """One row of the table.

    Attributes:
        name: the family's name, for logs and notes.
        source: "timm" or "hf".
        match: timm model class names, or transformers `model_type` values.
        blocks: transformers block regexes, `{prefix}` standing for the base model's attribute, each with an
            optional fixed key suffix (timm's `group_matcher` convention); empty: the library's default.
        attention: leaf names of the query and value projections: LoRA's default targets (Hu et al. adapt
            W_q and W_v; a fused qkv layer holds both). Empty: no attention (convnets).
        pooling: text families: what their `...ForSequenceClassification` feeds its head.
        pooling_candidates: text families: what the ladder's probe may compare when a checkpoint declares none.
        tail: the cached-tail builder for cuts inside the blocks; None: only the head's input is cached.
        convnet: convolutional image model (channels_last helps its convolutions).
        scratch_lrs: the AdamW LRs the from-scratch control of this architecture searches (`ladder.scratch.lrs`
            overrides them).
        scratch_max_lr: the ceiling the scratch search's edge rule may extend to (`ladder.scratch.max_lr`).
    """

    name: str
    source: Source
    match: tuple[str, ...]
    blocks: tuple[BlockPattern, ...] = ()
    attention: tuple[str, ...] = ()
    pooling: PoolingMode | None = None
    pooling_candidates: tuple[PoolingMode, ...] = ()
    tail: TailBuilder | None = None
    convnet: bool = False
    # From scratch, transformers train with AdamW at 1e-4..1e-3: BERT 1e-4 (Devlin et al., 2019), RoBERTa-base
    # 6e-4 (Liu et al., 2019), ViT/DeiT 5e-4 x batch/512 and Swin 1e-3 at batch 1024 (Touvron et al., 2021; Liu
    # et al., 2021); above ~1e-2 they diverge even with warmup. The ceiling lets the edge rule go one decade past
    # the grid. Fine-tuning LRs (1e-5..1e-3) would leave the control undertrained and flatter the rungs. A family
    # the table does not list takes these (the cautious grid: a convnet's is too hot for a transformer).
    scratch_lrs: tuple[float, ...] = (1e-4, 3e-4, 1e-3)
    scratch_max_lr: float = 1e-2


# Convnets with normalisation layers train from scratch at higher AdamW LRs: ConvNeXt used 4e-3 at batch 4096
# (Liu et al., 2022), and on our small adaptation task a reference scratch convnet run (300 steps, LR 1e-2..3e-2)
# reached 0.824 test where a control whose grid stopped at 1e-2 reached 0.512. Decades up to 3e-2, ceiling 0.1.
_CONVNET = dict(convnet=True, scratch_lrs=(1e-3, 3e-3, 1e-2, 3e-2), scratch_max_lr=0.1)

_BERT_ATTENTION = ("query", "value")
_TEXT_CLS = dict(pooling="cls", pooling_candidates=("cls", "mean"), tail=hf_encoder_tail)

FAMILIES: tuple[Family, ...] = (
    # timm: blocks from group_matcher; heads from get_classifier().
    Family("timm-vit", "timm", ("VisionTransformer",), attention=("qkv",), tail=sequential_tail(("norm",))),
    Family("timm-swin", "timm", ("SwinTransformer",), attention=("qkv",), tail=staged_tail("layers", ("norm",))),
    Family("timm-convnext", "timm", ("ConvNeXt",), tail=staged_tail("stages", ("norm_pre",)), **_CONVNET),
    Family("timm-resnet", "timm", ("ResNet",), tail=sequential_tail(), **_CONVNET),
    Family("timm-efficientnet", "timm", ("EfficientNet",), tail=sequential_tail(("conv_head", "bn2")), **_CONVNET),
    Family("timm-regnet", "timm", ("RegNet",), tail=sequential_tail(("final_conv",)), **_CONVNET),
    # transformers text encoders: the pooler (dense + tanh on [CLS]) was trained by next-sentence / sentence-
    # order prediction in BERT and ALBERT; the others' heads read the first token through a new dense layer.
    Family(
        "bert",
        "hf",
        ("bert", "albert", "ernie", "nezha"),
        attention=_BERT_ATTENTION,
        pooling="pooler",
        pooling_candidates=("pooler", "cls", "mean"),
        tail=hf_encoder_tail,
    ),
    Family("roberta", "hf", ("roberta", "xlm-roberta", "camembert"), attention=_BERT_ATTENTION, **_TEXT_CLS),
    Family("electra", "hf", ("electra",), attention=_BERT_ATTENTION, **_TEXT_CLS),
    Family("distilbert", "hf", ("distilbert",), attention=("q_lin", "v_lin"), **_TEXT_CLS),
    Family("deberta", "hf", ("deberta", "deberta-v2"), attention=("query_proj", "value_proj"), **_TEXT_CLS),
    Family("mpnet", "hf", ("mpnet",), attention=("q", "v"), **_TEXT_CLS),
    # transformers image models. ViT and DeiT: embeddings + one list of layers (names changed in 5.x).
    Family("hf-vit", "hf", ("vit", "deit"), tail=hf_encoder_tail),
    Family(
        "hf-swin",
        "hf",
        ("swin",),
        blocks=(
            (r"^{prefix}\.encoder\.layers\.(\d+)\.blocks\.(\d+)\.", None),
            # Patch merging ends a stage here (timm starts the next one with it): a block of its own.
            (r"^{prefix}\.encoder\.layers\.(\d+)\.downsample\.", (999,)),
        ),
    ),
    Family(
        "hf-convnext",
        "hf",
        ("convnext", "convnextv2"),
        blocks=(
            (r"^{prefix}\.encoder\.stages\.(\d+)\.downsampling_layer\.", (0,)),
            (r"^{prefix}\.encoder\.stages\.(\d+)\.layers\.(\d+)\.", None),
        ),
        **_CONVNET,
    ),
    Family(
        "hf-resnet",
        "hf",
        ("resnet",),
        blocks=((r"^{prefix}\.encoder\.stages\.(\d+)\.layers\.(\d+)\.", None),),
        **_CONVNET,
    ),
)

# Every attention naming the table knows, tried in this order for families it does not list.
_KNOWN_ATTENTION: tuple[tuple[str, ...], ...] = (
    ("qkv",),
    ("query", "value"),
    ("q_lin", "v_lin"),
    ("q_proj", "v_proj"),
    ("query_proj", "value_proj"),
)


def family_of(source: Source, model: nn.Module) -> Family:
    """The table entry for a loaded model, or a generic one for a family the table does not list."""
    key = type(model).__name__ if source == "timm" else getattr(getattr(model, "config", None), "model_type", "")
    found = next((f for f in FAMILIES if f.source == source and key in f.match), None)
    if found is not None:
        return found
    # Unknown: the generic tails are tried (the cache checks them against the whole model before use).
    generic_tail = sequential_tail(("norm",)) if source == "timm" else hf_encoder_tail
    return Family(
        f"generic-{source}", source, (key,), pooling="cls", pooling_candidates=("cls", "mean"), tail=generic_tail
    )


def lora_targets(model: nn.Module, layout: Any, family: Family, *, linear_only: bool = False) -> list[str]:
    """The modules a LoRA-family adapter wraps by default, computed when a strategy asks.

    The family's attention projections inside the blocks; for families not in the table, the first known
    attention naming found there; otherwise (convnets, MLP-only blocks) every Linear and every ungrouped
    Conv2d inside the blocks by full name, so the stem and head stay out. Grouped and depthwise convolutions
    are never targets: peft's LoRA needs the rank to divide the groups (ConvNeXt's conv_dw refused rank 8).

    Args:
        linear_only: for methods that wrap only `nn.Linear` (VeRA, FourierFT): no convolutions.

    Raises:
        ValueError: nothing suitable inside the blocks; the message says to pass `target_modules`.
    """
    in_blocks = [(n, m) for n, m in model.named_modules() if n and layout.block_of(n + ".weight") is not None]
    linear_leaves = {n.rsplit(".", 1)[-1] for n, m in in_blocks if isinstance(m, nn.Linear)}
    for convention in (family.attention,) if family.attention else _KNOWN_ATTENTION:
        if convention and set(convention) <= linear_leaves:
            return list(convention)
    kinds = (nn.Linear,) if linear_only else (nn.Linear, nn.Conv2d)
    chosen = [n for n, m in in_blocks if isinstance(m, kinds) and getattr(m, "groups", 1) == 1]
    if chosen:
        return chosen
    raise ValueError(
        f"no default adapter targets in {type(model).__name__} ({family.name}): its blocks hold no attention "
        f"projections named like {list(_KNOWN_ATTENTION)} and no {'Linear' if linear_only else 'Linear or ungrouped Conv2d'} "
        "layers. Pass `target_modules=[...]` to the strategy (module names or a regex, as peft takes them)."
    )

"""The family table: what one backbone family needs, in one place (as timm keeps `group_matcher` with its model).

A family is matched by its transformers `model_type` (or timm class). An unknown family still loads
through the generic path (head by the library's conventions, blocks by the largest module list).
"""

from __future__ import annotations

from dataclasses import dataclass

from peft_ladder.backbones.pooling import PoolingMode


@dataclass(frozen=True)
class TextFamily:
    """How a transformers text encoder family pools for classification.

    Attributes:
        model_types: transformers `model_type` values of the family.
        pooling: the family's convention: what its `...ForSequenceClassification` feeds a head
            (BERT and ALBERT: the pretrained pooler; RoBERTa, DistilBERT, DeBERTa, ELECTRA: the first token).
        candidates: poolings the ladder's probe may compare on the training folds when the checkpoint
            declares none.
    """

    model_types: tuple[str, ...]
    pooling: PoolingMode
    candidates: tuple[PoolingMode, ...]


TEXT_FAMILIES: tuple[TextFamily, ...] = (
    # The pooler (dense + tanh on [CLS]) was trained with next-sentence / sentence-order prediction.
    TextFamily(("bert", "albert", "ernie", "nezha"), "pooler", ("pooler", "cls", "mean")),
    # No pretrained pooler: the classification heads read the first token through a new dense layer.
    TextFamily(
        ("roberta", "xlm-roberta", "camembert", "distilbert", "deberta", "deberta-v2", "electra", "mpnet", "xlm"),
        "cls",
        ("cls", "mean"),
    ),
)
_GENERIC = TextFamily((), "cls", ("cls", "mean"))


def text_family(model_type: str) -> TextFamily:
    """The table entry for `model_type`, or the generic one (first token; cls and mean compared)."""
    return next((f for f in TEXT_FAMILIES if model_type in f.model_types), _GENERIC)

"""`EncoderClassifier`: a transformers encoder, its pooling, dropout and one linear head.

`AutoModelForSequenceClassification` fixes the pooling per family and, for RoBERTa, DeBERTa or ELECTRA,
puts a new dense + tanh layer before the output layer: a "linear probe" on it is a two-layer network on
the first token. Here every text family gets the same head, a single `nn.Linear` on the pooling the
checkpoint was trained for, so the frozen probe is a real linear probe and deeper rungs change depth only.

Parameter names follow the transformers classifiers (`<base_model_prefix>.` for the encoder, `classifier`
for the head), so a BERT with pooler pooling has exactly `BertForSequenceClassification`'s state dict.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn as nn
from transformers.modeling_outputs import SequenceClassifierOutput

from peft_ladder.backbones.pooling import Pooling, PoolingSpec
from peft_ladder.hub.modeling_peft_ladder import problem_type_loss

HEAD = "classifier"


class EncoderClassifier(nn.Module):
    """encoder -> pooling -> dropout -> `classifier` (nn.Linear).

    Args:
        encoder: an `AutoModel` (base model) with `base_model_prefix` and a config.
        num_labels: outputs of the head.
        pooling: how token states become one vector.
    """

    def __init__(self, encoder: nn.Module, num_labels: int, pooling: PoolingSpec):
        super().__init__()
        config = encoder.config
        self.base_model_prefix = encoder.base_model_prefix or "encoder"
        self.config = config  # peft and the artifacts read the label mapping and model_type from it
        if pooling.mode != "pooler" and getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # unused weights would never get a gradient (and DDP would stop on them)
        self.add_module(self.base_model_prefix, encoder)
        self.pooling = Pooling(pooling)
        dropout = getattr(config, "classifier_dropout", None)
        if dropout is None:
            dropout = getattr(config, "hidden_dropout_prob", getattr(config, "dropout", 0.1))
        self.dropout = nn.Dropout(float(dropout))
        hidden = _hidden_size(config)
        self.add_module(HEAD, nn.Linear(hidden, num_labels))
        # transformers' own initialisation of a new classifier (normal(0, initializer_range), zero bias).
        std = getattr(config, "initializer_range", 0.02)
        nn.init.normal_(self.classifier.weight, std=std)
        nn.init.zeros_(self.classifier.bias)
        self._accepts = set(inspect.signature(encoder.forward).parameters)

    @classmethod
    def from_pretrained(cls, name: str, *args: Any, **kwargs: Any) -> EncoderClassifier:
        """Refuses: stock peft's `AutoPeftModel...` reaches here for an adapter saved over this class (see
        `save_adapted`), with neither the task's labels nor the pooling; peft_ladder's own loader has both."""
        raise OSError(
            f"an adapter over {name} trained with peft_ladder's EncoderClassifier (a pooling no transformers class "
            "has): load it with `from peft_ladder import load_adapted; load_adapted(<adapter folder>)`, or write a "
            "standalone folder that transformers loads with `peft-ladder export <adapter folder> --out DIR`."
        )

    @property
    def encoder(self) -> nn.Module:
        return getattr(self, self.base_model_prefix)

    @property
    def pooling_spec(self) -> PoolingSpec:
        return self.pooling.spec

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        """Like a transformers classifier: logits, and the loss of the config's `problem_type` when `labels` are
        given."""
        kwargs.pop("num_items_in_batch", None)  # transformers' Trainer passes it along with the batch
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids, **kwargs}
        inputs = {k: v for k, v in inputs.items() if v is not None and k in self._accepts}
        out = self.encoder(**inputs)
        pooled = self.pooling(out.last_hidden_state, attention_mask, getattr(out, "pooler_output", None))
        logits = self.classifier(self.dropout(pooled))
        loss = problem_type_loss(self.config, logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


def _hidden_size(config: Any) -> int:
    for key in ("hidden_size", "dim", "d_model"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    raise ValueError(f"cannot tell the hidden size of {type(config).__name__}: no hidden_size, dim or d_model.")

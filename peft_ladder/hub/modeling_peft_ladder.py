"""A transformers encoder, the pooling its checkpoint was trained for, and one linear head.

This file is copied into exported folders whose pooling no stock `...ForSequenceClassification` class has
(mean pooling of a sentence-transformers checkpoint, the first token of a RoBERTa without the extra dense
layer). It imports only torch and transformers: the folder loads with
`AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)` or
`pipeline("text-classification", model=folder, trust_remote_code=True)`, without peft_ladder installed.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn as nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class PooledClassifierConfig(PretrainedConfig):
    """`encoder`: the encoder's own config as a dict; `pooling`: cls, mean, max, last or pooler;
    `normalize`: L2-normalise the pooled vector before the head."""

    model_type = "peft_ladder_pooled"

    def __init__(self, encoder: dict | None = None, pooling: str = "mean", normalize: bool = False, **kwargs):
        self.encoder = encoder or {}
        self.pooling = pooling
        self.normalize = normalize
        super().__init__(**kwargs)


class PooledEncoderForSequenceClassification(PreTrainedModel):
    config_class = PooledClassifierConfig
    base_model_prefix = "encoder"

    def __init__(self, config: PooledClassifierConfig):
        super().__init__(config)
        encoder_config = AutoConfig.for_model(**config.encoder)
        self.encoder = AutoModel.from_config(encoder_config)
        if config.pooling != "pooler" and getattr(self.encoder, "pooler", None) is not None:
            self.encoder.pooler = None
        hidden = getattr(encoder_config, "hidden_size", None) or encoder_config.dim
        self.dropout = nn.Dropout(getattr(encoder_config, "hidden_dropout_prob", 0.1) or 0.0)
        self.classifier = nn.Linear(hidden, config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if module is getattr(self, "classifier", None):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and "token_type_ids" in inspect.signature(self.encoder.forward).parameters:
            inputs["token_type_ids"] = token_type_ids
        out = self.encoder(**inputs)
        hidden = out.last_hidden_state
        mask = torch.ones(hidden.shape[:2], device=hidden.device) if attention_mask is None else attention_mask
        mask = mask.to(hidden.dtype)
        mode = self.config.pooling
        if mode == "cls":
            pooled = hidden[:, 0]
        elif mode == "mean":
            pooled = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
        elif mode == "max":
            pooled = hidden.masked_fill(mask.unsqueeze(-1) == 0, torch.finfo(hidden.dtype).min).max(1).values
        elif mode == "last":
            last = (mask.sum(1).long() - 1).clamp(min=0)
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        else:
            pooled = out.pooler_output
        if self.config.normalize:
            pooled = nn.functional.normalize(pooled, dim=-1)
        logits = self.classifier(self.dropout(pooled))
        loss = problem_type_loss(self.config, logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


class RungFolderConfig(PretrainedConfig):
    """The `config.json` of a rung folder that holds only part of a model (`kind`: delta, adapter): the label
    names, and an `auto_map` whose class refuses to load with a message naming what does."""

    model_type = "peft_ladder_rung"

    def __init__(self, kind: str = "delta", strategy: str = "", base: str = "", **kwargs):
        self.kind = kind
        self.strategy = strategy
        self.base = base
        super().__init__(**kwargs)


class RungFolder(PreTrainedModel):
    """Stands in for the model a partial rung folder cannot rebuild by itself: loading it raises."""

    config_class = RungFolderConfig

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        config = RungFolderConfig.from_pretrained(pretrained_model_name_or_path)
        raise OSError(refusal(str(pretrained_model_name_or_path), config.kind, config.strategy, config.base))


def refusal(folder: str, kind: str, strategy: str, base: str) -> str:
    """Why a stock loader cannot rebuild a partial rung folder, and the calls that do."""
    what = {
        "delta": "only the tensors that training changed, to be added to the base",
        "adapter": "a peft adapter over an encoder whose pooling no transformers class has",
    }.get(kind, kind)
    return (
        f"{folder} is a peft_ladder {kind} rung ({strategy} on {base}: {what}); no stock transformers class "
        f"rebuilds it. Load it with `from peft_ladder import load_adapted; load_adapted({folder!r})`, or write a "
        f"standalone folder that transformers loads with `peft-ladder export {folder} --out DIR`."
    )


def problem_type_loss(config: PretrainedConfig, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The loss transformers' sequence classifiers take for the config's `problem_type` (cross-entropy when unset)."""
    problem = getattr(config, "problem_type", None)
    if logits.dim() == 3:  # a tag per token (token classification): positions labelled -100 are ignored
        return nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    if problem == "regression":
        return nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
    if problem == "multi_label_classification":
        return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    return nn.functional.cross_entropy(logits, labels)

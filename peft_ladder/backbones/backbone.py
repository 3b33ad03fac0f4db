"""`Backbone`: a loaded model together with its uniform description."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn as nn

from peft_ladder.backbones.families import Family, lora_targets
from peft_ladder.backbones.layout import BackboneLayout
from peft_ladder.backbones.pooling import PoolingSpec

Source = Literal["timm", "hf"]
Modality = Literal["image", "text"]


@dataclass
class BackboneSpec:
    """Everything needed to load the same backbone again (JSON-serialisable, never a token).

    Attributes:
        name: the source-prefixed name or local path it was loaded from.
        num_labels: size of the task head.
        label_names: class names, index = label id.
        pretrained: whether pretrained weights were loaded.
        model_kwargs: extra constructor arguments (timm `create_model` kwargs / transformers config overrides).
        checkpoint: a local safetensors file loaded over the architecture, if any.
        revision: Hub revision (branch, tag or commit) for Hub ids.
        head: explicit head module name(s), when the library conventions are not enough.
        block_pattern: explicit block regex, when the library conventions are not enough.
        tokenizer: tokenizer id or path for text backbones, when it differs from `name`.
        pooling: text backbones: "auto" (None), a mode (`cls`, `mean`, `max`, `pooler`, `last`), or, once
            loaded, the resolved `PoolingSpec` as a dict, so that every reload pools the same way.
        pooling_normalize: L2-normalise pooled features (None: as the checkpoint declares).
        data_config: image preprocessing keys that win over the checkpoint's (input_size, mean, std, ...).
        keep_head: keep a loaded classifier of the right size instead of a fresh head (image models).
        hub_id: where the base checkpoint lives on the Hub (set when loaded; None for local folders and
            random init): what shared artifacts name as their base.
    """

    name: str
    num_labels: int
    label_names: list[str]
    pretrained: bool = True
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    revision: str | None = None
    head: list[str] | None = None
    block_pattern: str | None = None
    tokenizer: str | None = None
    pooling: str | dict[str, Any] | None = None
    pooling_normalize: bool | None = None
    data_config: dict[str, Any] | None = None
    keep_head: bool = False
    hub_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Backbone:
    """A classifier-ready model plus what every strategy needs to know about it.

    Attributes:
        model: the model, with a fresh head of `spec.num_labels` outputs.
        source: "timm" or "hf" (transformers).
        modality: "image" or "text".
        layout: head / blocks / stem / neck, see `BackboneLayout`.
        family: the family table's entry (blocks, pooling, adapter targets, cached tail, convnet).
        data_config: what the inputs need: mean/std/input_size for images, tokenizer for text.
        spec: how to load it again.
        pooling: text backbones: how token states become the head's input (None for images).
    """

    model: nn.Module
    source: Source
    modality: Modality
    layout: BackboneLayout
    family: Family
    data_config: dict[str, Any]
    spec: BackboneSpec
    pooling: PoolingSpec | None = None

    @property
    def num_labels(self) -> int:
        return self.spec.num_labels

    @property
    def input_names(self) -> tuple[str, ...]:
        if self.modality == "image":
            return ("pixel_values",)
        return ("input_ids", "attention_mask", "token_type_ids")

    def logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Run `model` (this backbone, possibly peft-wrapped) on a batch and return logits."""
        if self.source == "timm":
            return model(batch["pixel_values"])
        inputs = {k: batch[k] for k in self.input_names if k in batch}
        return model(**inputs).logits

    def head_state_dict(self) -> dict[str, torch.Tensor]:
        """The head's tensors (`<head module>.<name>`), e.g. a trained probe head to start deeper rungs from."""
        modules = dict(self.model.named_modules())
        return {
            f"{m}.{k}": v.detach().clone() for m in self.layout.head_modules for k, v in modules[m].state_dict().items()
        }

    def load_head_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load `head_state_dict()` output into this backbone's head; shapes and names must match exactly."""
        modules = dict(self.model.named_modules())
        for m in self.layout.head_modules:
            part = {k[len(m) + 1 :]: v for k, v in state.items() if k.startswith(m + ".")}
            missing, unexpected = modules[m].load_state_dict(part, strict=False)
            if missing or unexpected:
                raise ValueError(
                    f"head state does not fit head module {m!r} of {self.spec.name}: missing {missing}, "
                    f"unexpected {unexpected}. Was it trained for another backbone or label set?"
                )
        extra = [k for k in state if not any(k.startswith(m + ".") for m in self.layout.head_modules)]
        if extra:
            raise ValueError(f"head state has tensors outside the head modules {self.layout.head_modules}: {extra}")

    def default_targets(self, *, linear_only: bool = False) -> list[str]:
        """The modules an adapter wraps by default (the family's attention projections, else every Linear and
        ungrouped Conv2d in the blocks); see `families.lora_targets`. Raises ValueError when there are none."""
        return lora_targets(self.model, self.layout, self.family, linear_only=linear_only)

    def describe(self) -> str:
        """One line per part: how many blocks and parameters, for logs and notes."""
        lay = self.layout
        return (
            f"{self.spec.name} ({self.source}, {self.modality}, family {self.family.name}): {lay.num_blocks} blocks "
            f"[{lay.blocks[0].name} .. {lay.blocks[-1].name}], head={lay.head_modules}"
            + (f", pooling={self.pooling.describe()}" if self.pooling else "")
        )

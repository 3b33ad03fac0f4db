"""What a strategy froze and what it trains, per part of the backbone."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch.nn as nn

from peft_ladder.backbones.layout import BackboneLayout

# peft keeps a frozen copy of every `modules_to_save` module; it is not part of the model's size.
_PEFT_SHADOW = ".original_module."


@dataclass
class PartCount:
    """Trainable and total parameters of one part (stem, a block, neck or head)."""

    part: str
    trainable: int
    total: int

    @property
    def pct(self) -> float:
        return 100.0 * self.trainable / self.total if self.total else 0.0


@dataclass
class TrainableReport:
    """Exactly what is frozen and what is trainable, for logs, tests and the transfer note."""

    parts: list[PartCount]
    trainable_names: list[str]
    locked_batchnorm: list[str] = field(default_factory=list)

    @property
    def trainable(self) -> int:
        return sum(p.trainable for p in self.parts)

    @property
    def total(self) -> int:
        return sum(p.total for p in self.parts)

    @property
    def pct(self) -> float:
        return 100.0 * self.trainable / self.total if self.total else 0.0

    @classmethod
    def from_model(cls, model: nn.Module, layout: BackboneLayout, locked_batchnorm: list[str]) -> TrainableReport:
        order = ["stem", *(b.name for b in layout.blocks), "neck", "head"]
        counts = {part: [0, 0] for part in order}
        trainable_names = []
        for name, param in model.named_parameters():
            if _PEFT_SHADOW in name:
                continue
            role, layer_id = layout.role_of(name)
            part = layout.blocks[layer_id - 1].name if role == "block" else role
            counts[part][1] += param.numel()
            if param.requires_grad:
                counts[part][0] += param.numel()
                trainable_names.append(name)
        parts = [PartCount(p, *counts[p]) for p in order if counts[p][1]]
        return cls(parts, trainable_names, locked_batchnorm)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trainable": self.trainable,
            "total": self.total,
            "pct": self.pct,
            "parts": [{**asdict(p), "pct": p.pct} for p in self.parts],
            "locked_batchnorm": len(self.locked_batchnorm),
        }

    def __str__(self) -> str:
        width = max(len(p.part) for p in self.parts)
        lines = [f"{'part':<{width}}  {'trainable':>12}  {'total':>12}  {'%':>6}"]
        for p in self.parts:
            lines.append(f"{p.part:<{width}}  {p.trainable:>12,}  {p.total:>12,}  {p.pct:>6.2f}")
        lines.append(f"{'all':<{width}}  {self.trainable:>12,}  {self.total:>12,}  {self.pct:>6.2f}")
        if self.locked_batchnorm:
            lines.append(f"BatchNorm running statistics frozen in {len(self.locked_batchnorm)} modules")
        return "\n".join(lines)

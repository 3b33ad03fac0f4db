"""Tiny randomly initialised backbones, saved to local folders as if they were pretrained checkpoints.

Loading them by path exercises the same code as a Hub id, with no network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

NUM_LABELS = 3
IMAGE_SIZE = 32
VOCAB = 64


@dataclass(frozen=True)
class TinyBackbone:
    """A tiny backbone case: how to make it, and how to make a batch for it."""

    id: str
    modality: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def batch(self, n: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        if self.modality == "image":
            return {"pixel_values": torch.randn(n, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g)}
        ids = torch.randint(1, VOCAB, (n, 12), generator=g)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


TINY_BACKBONES = [
    TinyBackbone("timm_resnet", "image"),
    TinyBackbone("timm_vit", "image", dict(img_size=IMAGE_SIZE, depth=2)),
    TinyBackbone("hf_bert", "text"),
    TinyBackbone("hf_vit", "image"),
    TinyBackbone("hf_resnet", "image"),
]


def save_tiny(case_id: str, folder: Path) -> Path:
    """Create the tiny model for `case_id` with a seeded random init and save it like a checkpoint."""
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    if case_id.startswith("timm"):
        import timm
        from timm.models import save_for_hf

        arch, kwargs = {
            "timm_resnet": ("resnet18", {}),
            "timm_vit": ("vit_tiny_patch16_224", dict(img_size=IMAGE_SIZE, depth=2)),
        }[case_id]
        model = timm.create_model(arch, pretrained=False, num_classes=10, **kwargs)
        _like_pretrained(model)
        save_for_hf(model, str(folder), safe_serialization=True, model_args=kwargs)
        return folder
    from transformers import (
        AutoModelForImageClassification,
        AutoModelForSequenceClassification,
        BertConfig,
        ResNetConfig,
        ViTConfig,
    )

    if case_id == "hf_bert":
        config = BertConfig(
            vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37
        )
        model = AutoModelForSequenceClassification.from_config(config)
    elif case_id == "hf_vit":
        config = ViTConfig(
            image_size=IMAGE_SIZE,
            patch_size=8,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=37,
        )
        model = AutoModelForImageClassification.from_config(config)
    else:
        config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 2], layer_type="basic")
        model = AutoModelForImageClassification.from_config(config)
    _like_pretrained(model)
    model.save_pretrained(str(folder))
    return folder


def _like_pretrained(model: torch.nn.Module) -> None:
    """Give BatchNorms the non-trivial state of a trained network.

    A fresh ResNet zero-initialises the last BatchNorm of each residual branch, which blocks every
    gradient into that branch; trained checkpoints never look like that.
    """
    g = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                module.weight.copy_(0.5 + torch.rand(module.weight.shape, generator=g))
                module.running_mean.copy_(0.1 * torch.randn(module.running_mean.shape, generator=g))
                module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=g))


def make_color_images(root: Path, per_class: int = 12, size: int = 16) -> Path:
    """An image folder `root/train/{red,green}/*.png` whose class is the dominant colour channel."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for label, channel in (("red", 0), ("green", 1)):
        folder = root / "train" / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = (torch.rand(size, size, 3, generator=g) * 60).to(torch.uint8)
            pixels[..., channel] += 150
            Image.fromarray(pixels.numpy()).save(folder / f"{i}.png")
    return root

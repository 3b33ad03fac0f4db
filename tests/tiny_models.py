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
    TinyBackbone("timm_deit", "image"),
    TinyBackbone("timm_swin", "image"),
    TinyBackbone("timm_convnext", "image"),
    TinyBackbone("timm_efficientnet", "image"),
    TinyBackbone("timm_regnet", "image"),
    TinyBackbone("hf_bert", "text"),
    TinyBackbone("hf_roberta", "text"),
    TinyBackbone("hf_xlm_roberta", "text"),
    TinyBackbone("hf_distilbert", "text"),
    TinyBackbone("hf_deberta_v2", "text"),
    TinyBackbone("hf_electra", "text"),
    TinyBackbone("hf_vit", "image"),
    TinyBackbone("hf_deit", "image"),
    TinyBackbone("hf_swin", "image"),
    TinyBackbone("hf_convnext", "image"),
    TinyBackbone("hf_resnet", "image"),
]

# timm architectures and tiny settings (32 x 32 inputs, a few thousand to a few million parameters).
TIMM_TINY = {
    "timm_resnet": ("resnet18", {}),
    "timm_vit": ("vit_tiny_patch16_224", dict(img_size=IMAGE_SIZE, depth=2)),
    "timm_deit": ("deit_tiny_patch16_224", dict(img_size=IMAGE_SIZE, patch_size=8, depth=2, embed_dim=32, num_heads=2)),
    "timm_swin": (
        "swin_tiny_patch4_window7_224",
        dict(img_size=IMAGE_SIZE, depths=(1, 2), num_heads=(1, 2), embed_dim=16, window_size=4),
    ),
    "timm_convnext": ("convnext_atto", dict(depths=(1, 2, 1, 1), dims=(8, 16, 24, 32))),
    "timm_efficientnet": ("test_efficientnet", {}),
    "timm_regnet": ("regnetx_002", {}),
}


CASE_MODALITY = {case.id: case.modality for case in TINY_BACKBONES}


def save_tiny(case_id: str, folder: Path) -> Path:
    """Create the tiny model for `case_id` with a seeded random init and save it like a checkpoint."""
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    if case_id.startswith("timm"):
        import timm
        from timm.models import save_for_hf

        arch, kwargs = TIMM_TINY[case_id]
        model = timm.create_model(arch, pretrained=False, num_classes=10, **kwargs)
        _like_pretrained(model)
        save_for_hf(model, str(folder), safe_serialization=True, model_args=kwargs)
        return folder
    import transformers

    text = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
    vit = dict(image_size=IMAGE_SIZE, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2)
    configs = {
        "hf_bert": transformers.BertConfig(**text),
        "hf_roberta": transformers.RobertaConfig(**text, max_position_embeddings=40),
        "hf_xlm_roberta": transformers.XLMRobertaConfig(**text, max_position_embeddings=40),
        "hf_distilbert": transformers.DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=2, hidden_dim=37),
        "hf_deberta_v2": transformers.DebertaV2Config(**text, max_position_embeddings=40),
        "hf_electra": transformers.ElectraConfig(**text, embedding_size=16),
        "hf_vit": transformers.ViTConfig(**vit, intermediate_size=37),
        "hf_deit": transformers.DeiTConfig(**vit, intermediate_size=37),
        "hf_swin": transformers.SwinConfig(
            image_size=IMAGE_SIZE, patch_size=4, embed_dim=16, depths=[1, 2], num_heads=[1, 2], window_size=4
        ),
        "hf_convnext": transformers.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 2], num_stages=2),
        "hf_resnet": transformers.ResNetConfig(
            embedding_size=8, hidden_sizes=[8, 16], depths=[1, 2], layer_type="basic"
        ),
    }
    config = configs[case_id]
    if CASE_MODALITY[case_id] == "text":
        model = transformers.AutoModelForSequenceClassification.from_config(config)
    else:
        # DeiT maps to two classes (with and without a distillation teacher); name the plain one.
        config.architectures = config.architectures or [_image_class(config.model_type)]
        model = transformers.AutoModelForImageClassification.from_config(config)
    _like_pretrained(model)
    model.save_pretrained(str(folder))
    return folder


def _image_class(model_type: str) -> str:
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES

    names = MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES[model_type]
    return names[0] if isinstance(names, tuple) else names


def _like_pretrained(model: torch.nn.Module) -> None:
    """Give BatchNorms and layer scales the non-trivial state of a trained network.

    A fresh ResNet zero-initialises the last BatchNorm of each residual branch, which blocks every
    gradient into that branch; a fresh ConvNeXt scales each branch by 1e-6 (layer scale), so gradients into
    it are ~1e-15 and an Adam step there can round to no change at all. Trained checkpoints look like neither
    (the layer scales of a trained ConvNeXt are mostly 0.1-1).
    """
    g = torch.Generator().manual_seed(1)
    for name, param in model.named_parameters():
        if name.endswith((".gamma", ".layer_scale_parameter")):  # timm / transformers ConvNeXt layer scale
            with torch.no_grad():
                param.copy_(0.1 + 0.9 * torch.rand(param.shape, generator=g))
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

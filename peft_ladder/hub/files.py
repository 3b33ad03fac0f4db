"""What inference needs besides the weights, in the form each library reads it: the tokenizer (text) or the
image preprocessing (a transformers image processor, or timm's `pretrained_cfg`), and the label names
(`id2label` in a transformers config, `label_names` in a timm config)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from peft_ladder.backbones.backbone import Backbone
from peft_ladder.backbones.hf_source import load_tokenizer

# timm's data-config keys, as `pretrained_cfg` holds them.
DATA_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
_RESAMPLE = {"nearest": 0, "bilinear": 2, "bicubic": 3}


def write_inference_files(backbone: Backbone, folder: Path, *, with_config: bool) -> None:
    """Write the tokenizer or image preprocessing and the labels of `backbone` into `folder`.

    Args:
        with_config: also write the model config that carries the labels (False when the weights' own
            `save_pretrained` / `save_for_hf` already wrote it).
    """
    if backbone.modality == "text":
        load_tokenizer(backbone.data_config["tokenizer"]).save_pretrained(str(folder))
    elif backbone.source == "hf":
        image_processor(backbone).save_pretrained(str(folder))
    if not with_config:
        return
    if backbone.source == "hf":
        backbone.model.config.save_pretrained(str(folder))  # num_labels, id2label, label2id
    else:
        from timm.models._hub import save_config_for_hf  # public in timm but not re-exported by timm.models

        save_config_for_hf(backbone.model, str(folder / "config.json"), **timm_save_kwargs(backbone))


def image_processor(backbone: Backbone) -> Any:
    """A transformers image processor that does what training did: resize (to side / crop_pct), center crop
    when crop_pct < 1, normalise with the data config's mean and std. Square images are resized exactly as
    timm's transform does; other aspect ratios are squashed rather than shorter-side resized."""
    from transformers import DeiTImageProcessor

    cfg = backbone.data_config
    _, height, width = cfg["input_size"]
    crop = float(cfg.get("crop_pct") or 1.0)
    resize = {"height": int(round(height / crop)), "width": int(round(width / crop))}
    return DeiTImageProcessor(
        do_resize=True,
        size=resize,
        resample=_RESAMPLE.get(cfg.get("interpolation", "bilinear"), 2),
        do_center_crop=crop < 1.0,
        crop_size={"height": height, "width": width},
        do_rescale=True,
        do_normalize=True,
        image_mean=list(cfg["mean"]),
        image_std=list(cfg["std"]),
    )


def timm_save_kwargs(backbone: Backbone) -> dict[str, Any]:
    """What timm's `save_for_hf` / `save_config_for_hf` need for a config that rebuilds this model with the
    label names and the preprocessing training used."""
    return {
        "model_config": {"label_names": list(backbone.spec.label_names)},
        "model_args": dict(backbone.spec.model_kwargs),
        "data_config": {k: _jsonable(backbone.data_config[k]) for k in DATA_KEYS if k in backbone.data_config},
    }


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value

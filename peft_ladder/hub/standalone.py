"""Whole models in their library's own layout, the way stock transformers and timm load them: used by `export`
(merged or folded rungs) and by `save_adapted` for the rungs that are a whole model (full, scratch).

- timm: `config.json` (architecture, label names, the training preprocessing) and `model.safetensors`, as
  `timm.models.save_for_hf` writes them: `timm.create_model("local-dir:<folder>", pretrained=True)`.
- transformers image models: `save_pretrained`: `AutoModelForImageClassification`.
- transformers text models whose pooling is their family's stock head (BERT's pooler): the stock
  `...ForSequenceClassification` with the same weights. Other poolings (mean for sentence-transformers
  checkpoints) have no stock class: `PooledEncoderForSequenceClassification` with its module file and the
  `auto_map` transformers follows, so a plain `AutoModelForSequenceClassification` refuses (it asks for
  `trust_remote_code=True`) instead of loading the encoder under a random pooler and head.

Partial rungs (delta, and adapters on such encoders) get `write_rung_config`: a `config.json` whose class
refuses to load, with a message that names the calls that do.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from peft_ladder.backbones.backbone import Backbone
from peft_ladder.backbones.text_classifier import EncoderClassifier
from peft_ladder.hub.files import timm_save_kwargs
from peft_ladder.hub.stock import is_stock_text

MODELING_FILE = Path(__file__).with_name("modeling_peft_ladder.py")
POOLED_MODEL_TYPE = "peft_ladder_pooled"
# Where the encoder's tensors sit in `PooledEncoderForSequenceClassification`'s state dict.
POOLED_PREFIX = "encoder."


def save_standalone(model: torch.nn.Module, backbone: Backbone, folder: Path) -> str:
    """Save `model` (merged, unwrapped) in its library's layout; returns the card layout it matches
    (`export-timm`, `export-transformers` or `export-remote-code`). Preprocessing files are the caller's."""
    model = model.eval().to("cpu", memory_format=torch.contiguous_format)
    if backbone.source == "timm":
        from timm.models import save_for_hf

        save_for_hf(model, str(folder), safe_serialization=True, **timm_save_kwargs(backbone))
        return "export-timm"
    if not isinstance(model, EncoderClassifier):  # a transformers image classifier
        model.save_pretrained(str(folder))
        return "export-transformers"
    if is_stock_text(backbone.spec.pooling, backbone.family.pooling):
        _save_stock_text(model, folder)
        return "export-transformers"
    _save_pooled_text(model, folder)
    return "export-remote-code"


def write_rung_config(backbone: Backbone, folder: Path, *, kind: str, strategy: str, base: str) -> None:
    """The `config.json` of a rung folder stock loaders cannot rebuild (a delta, or an adapter over an encoder no
    stock class pools like), made so that they refuse with a message naming the calls that do.

    transformers: the label names, and an `auto_map` to `RungFolder`, whose loading raises (transformers first
    asks for `trust_remote_code=True`). timm: its own config with the label names and the preprocessing, whose
    architecture is the message (timm stops with "Unknown model (...)")."""
    from peft_ladder.hub.modeling_peft_ladder import RungFolderConfig

    if backbone.source == "timm":
        from timm.models._hub import save_config_for_hf  # public in timm but not re-exported by timm.models

        path = folder / "config.json"
        save_config_for_hf(backbone.model, str(path), **timm_save_kwargs(backbone))
        config = json.loads(path.read_text(encoding="utf-8"))
        # No ':' or '.': timm parses those in a model name before it looks the name up.
        config["architecture"] = (
            f"{config['architecture']} is not here, this is a peft_ladder {kind} rung (only what training "
            "changed); load it with peft_ladder load_adapted, or write a standalone folder with peft-ladder export"
        )
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        return
    labels = list(backbone.spec.label_names)
    id2label = dict(enumerate(labels))
    config = RungFolderConfig(
        kind=kind, strategy=strategy, base=base, id2label=id2label, label2id={v: k for k, v in id2label.items()}
    )
    classes = (
        "AutoModel",
        "AutoModelForSequenceClassification",
        "AutoModelForTokenClassification",
        "AutoModelForImageClassification",
    )
    config.auto_map = {"AutoConfig": "modeling_peft_ladder.RungFolderConfig"} | {
        c: "modeling_peft_ladder.RungFolder" for c in classes
    }
    config.save_pretrained(str(folder))
    shutil.copyfile(MODELING_FILE, folder / MODELING_FILE.name)


def pooled_encoder_config(folder: Path) -> dict[str, Any] | None:
    """The encoder's config of a folder written by `_save_pooled_text` (None for any other folder)."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return None
    config = json.loads(path.read_text(encoding="utf-8"))
    return config.get("encoder") if config.get("model_type") == POOLED_MODEL_TYPE else None


def pooled_encoder_state(folder: Path) -> dict[str, torch.Tensor]:
    """The encoder's tensors of a `_save_pooled_text` folder, under the encoder's own names."""
    state: dict[str, torch.Tensor] = {}
    for file in sorted(Path(folder).glob("model*.safetensors")):
        state.update(
            {k[len(POOLED_PREFIX) :]: v for k, v in load_file(str(file)).items() if k.startswith(POOLED_PREFIX)}
        )
    return state


def _save_stock_text(model: EncoderClassifier, folder: Path) -> None:
    """The family's own `...ForSequenceClassification` (or `...ForTokenClassification` for a tagger): the same
    parameter names (`<prefix>.*`, `classifier.*`)."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    auto = AutoModelForTokenClassification if model.pooling_spec.mode == "token" else AutoModelForSequenceClassification
    stock = auto.from_config(model.config)
    missing, unexpected = stock.load_state_dict(model.state_dict(), strict=False)
    if missing or unexpected:
        raise RuntimeError(f"the stock classifier does not match: missing {missing[:5]}, unexpected {unexpected[:5]}")
    stock.save_pretrained(str(folder))


def _save_pooled_text(model: EncoderClassifier, folder: Path) -> None:
    """The encoder, its pooling and the head as `PooledEncoderForSequenceClassification`; `save_pretrained`
    copies its module file into the folder and writes the `auto_map` transformers follows."""
    from peft_ladder.hub.modeling_peft_ladder import PooledClassifierConfig, PooledEncoderForSequenceClassification

    encoder_config: Any = model.encoder.config
    config = PooledClassifierConfig(
        encoder=encoder_config.to_dict(),
        pooling=model.pooling_spec.mode,
        normalize=model.pooling_spec.normalize,
        num_labels=encoder_config.num_labels,
        id2label=encoder_config.id2label,
        label2id=encoder_config.label2id,
        problem_type=encoder_config.problem_type,  # the task's loss for stock training code
    )
    PooledClassifierConfig.register_for_auto_class()
    PooledEncoderForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
    pooled = PooledEncoderForSequenceClassification(config)
    prefix = model.base_model_prefix + "."
    state = {
        (POOLED_PREFIX + k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in model.state_dict().items()
    }
    missing, unexpected = pooled.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(
            f"the exported classifier does not match: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    pooled.save_pretrained(str(folder))
    if not any(folder.glob("*.safetensors")):  # safetensors only, whatever the library's default
        save_file({k: v.contiguous() for k, v in pooled.state_dict().items()}, str(folder / "model.safetensors"))

"""`export`: a rung as a standalone folder in its library's own layout, loadable without peft_ladder.

- Adapter rungs are merged into the base (`merge_and_unload`, the trained head kept); delta rungs are folded
  into it; full rungs are saved as they are.
- timm models: `config.json` (architecture, pretrained_cfg with the training preprocessing, label names) and
  `model.safetensors`, as `timm.models.save_for_hf` writes: `timm.create_model("local-dir:<folder>", pretrained=True)`.
- transformers image models: `save_pretrained` plus an image processor: `AutoModelForImageClassification`,
  `pipeline("image-classification")`.
- transformers text models whose pooling is their family's stock head (BERT's pooler): the stock
  `...ForSequenceClassification` with the same weights. Other poolings (mean for sentence-transformers
  checkpoints) have no stock class: the folder carries `modeling_peft_ladder.py` (torch and transformers
  only) and loads with `trust_remote_code=True`.
The outputs equal the unmerged model's (tests check every strategy on every tiny family).
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from peft_ladder.artifacts import load_adapted
from peft_ladder.backbones.backbone import Backbone
from peft_ladder.backbones.loader import ARTIFACT_FILE
from peft_ladder.backbones.text_classifier import EncoderClassifier
from peft_ladder.hub.card import render_card, stock_text_head
from peft_ladder.hub.files import image_processor, timm_save_kwargs
from peft_ladder.hub.portable import portable, scrub_json_files, shared_files
from peft_ladder.io import swap_into_place, write_text_atomic


def artifact_folder(path: str | Path) -> Path:
    """The artifact folder of `path`: an artifact itself, or a train / ladder run folder holding `artifact/`."""
    path = Path(path)
    for candidate in (path, path / "artifact"):
        if (candidate / ARTIFACT_FILE).is_file():
            return candidate
    raise FileNotFoundError(
        f"{path} holds no peft_ladder artifact ({ARTIFACT_FILE} is missing there and in {path / 'artifact'}): pass "
        "a run's output_dir or an artifact folder."
    )


def export(
    path: str | Path,
    out: str | Path,
    *,
    merge: bool = True,
    overwrite: bool = False,
    base: str | None = None,
    token: str | None = None,
) -> Path:
    """Write `path`'s rung to `out` as a standalone folder (see the module docstring).

    Args:
        path: an artifact folder or a run folder (`output_dir`) holding `artifact/`.
        out: the new folder; refused when it exists unless `overwrite`.
        merge: fold adapters into the base. False keeps an adapter rung as a clean peft adapter folder.
        base: the base checkpoint, when it was a local folder on another machine.
        token: Hub token for a private base; used for the download only.

    Returns:
        The folder written.
    """
    source, dest = artifact_folder(path), Path(out)
    if dest.exists() and not overwrite:
        raise FileExistsError(f"{dest} exists; pass overwrite=True (--overwrite) or choose another folder.")
    meta = json.loads((source / ARTIFACT_FILE).read_text())
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        if meta["kind"] == "adapter" and not merge:
            for file in shared_files(source):
                target = tmp / file.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(file, target)
        else:
            adapted = load_adapted(source, base=base, token=token)
            model = adapted.model.merge_and_unload() if meta["kind"] == "adapter" else adapted.model
            layout = _save_standalone(model, adapted.backbone, tmp)
            scrub_json_files(tmp)
            library = "timm" if layout == "export-timm" else "transformers"
            card = render_card(portable(meta), layout=layout, library=library)
            write_text_atomic(tmp / "README.md", str(card))
        swap_into_place(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _save_standalone(model: torch.nn.Module, backbone: Backbone, folder: Path) -> str:
    """Save `model` (merged, unwrapped) in its library's layout; returns the card layout it matches."""
    model = model.eval().to("cpu", memory_format=torch.contiguous_format)
    if backbone.source == "timm":
        from timm.models import save_for_hf

        save_for_hf(model, str(folder), safe_serialization=True, **timm_save_kwargs(backbone))
        return "export-timm"
    if not isinstance(model, EncoderClassifier):  # a transformers image classifier
        model.save_pretrained(str(folder))
        image_processor(backbone).save_pretrained(str(folder))
        return "export-transformers"
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(backbone.data_config["tokenizer"]).save_pretrained(str(folder))
    if stock_text_head(
        {"modality": "text", "backbone": {"pooling": backbone.spec.pooling}, "family_pooling": backbone.family.pooling}
    ):
        _save_stock_text(model, folder)
        return "export-transformers"
    _save_remote_code_text(model, folder)
    return "export-remote-code"


def _save_stock_text(model: EncoderClassifier, folder: Path) -> None:
    """The family's own `...ForSequenceClassification`: the same parameter names (`<prefix>.*`, `classifier.*`)."""
    from transformers import AutoModelForSequenceClassification

    stock = AutoModelForSequenceClassification.from_config(model.config)
    missing, unexpected = stock.load_state_dict(model.state_dict(), strict=False)
    if missing or unexpected:
        raise RuntimeError(f"the stock classifier does not match: missing {missing[:5]}, unexpected {unexpected[:5]}")
    stock.save_pretrained(str(folder))


def _save_remote_code_text(model: EncoderClassifier, folder: Path) -> None:
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
    )
    PooledClassifierConfig.register_for_auto_class()
    PooledEncoderForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
    export = PooledEncoderForSequenceClassification(config)
    prefix = model.base_model_prefix + "."
    state = {("encoder." + k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in model.state_dict().items()}
    missing, unexpected = export.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(
            f"the exported classifier does not match: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    export.save_pretrained(str(folder))
    if not any(folder.glob("*.safetensors")):  # safetensors only, whatever the library's default
        save_file({k: v.contiguous() for k, v in export.state_dict().items()}, str(folder / "model.safetensors"))

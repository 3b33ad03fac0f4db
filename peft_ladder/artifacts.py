"""Save and load a rung in a Hugging Face Hub layout; safetensors only, never half-written.

Layouts, by the strategy's `artifact_kind`:
- adapter (lora family): peft's `adapter_config.json` + `adapter_model.safetensors`, head included
  through `modules_to_save`; stock `PeftModel.from_pretrained(base, folder)` loads it.
- delta (linear_probe, bitfit, partial_unfreeze): `delta.safetensors` with only the tensors that
  train or change (trainable parameters, running statistics of updating BatchNorms).
- full (full, scratch): the whole model as its library saves it (`save_pretrained` for transformers,
  timm's `save_for_hf` layout: `config.json` + `model.safetensors`).
Every layout has `peft_ladder.json`: the backbone spec (label names included), the strategy and its
config, the trainable report and whatever the caller adds (resolved config, metrics).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from peft_ladder.backbones.backbone import BackboneSpec
from peft_ladder.backbones.loader import ARTIFACT_FILE, load_backbone_from_spec
from peft_ladder.backbones.text_classifier import EncoderClassifier
from peft_ladder.io import swap_into_place
from peft_ladder.strategies import AdaptedModel, apply_strategy, finish_adaptation, get_strategy, make_strategy_config

FORMAT_VERSION = 1
DELTA_FILE = "delta.safetensors"
HEAD_FILE = "head.safetensors"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def save_adapted(
    adapted: AdaptedModel, path: str | os.PathLike, *, overwrite: bool = False, extra: dict | None = None
) -> str:
    """Write `adapted` to `path` atomically (temporary folder, then rename).

    Args:
        adapted: the rung to save.
        path: destination folder.
        overwrite: replace an existing folder (the old one is removed only after the new one is in place).
        extra: JSON-serialisable additions to `peft_ladder.json` (resolved config, metrics).

    Returns:
        The folder written, as a string.
    """
    dest = Path(path)
    if dest.exists() and not overwrite:
        raise FileExistsError(f"{dest} exists; pass overwrite=True or choose another output folder.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        kind = adapted.strategy_cls.artifact_kind
        backbone = adapted.backbone
        spec = replace(backbone.spec, tokenizer=backbone.data_config.get("tokenizer"))
        with _default_layout(adapted.model):
            if kind == "adapter":
                peft_config = adapted.model.peft_config["default"]
                peft_config.base_model_name_or_path = spec.name
                adapted.model.save_pretrained(str(tmp))
            elif kind == "delta":
                save_file(adapted.trainable_state(), str(tmp / DELTA_FILE), metadata={"format": "pt"})
            elif isinstance(backbone.model, EncoderClassifier):
                # The encoder in its own library's layout, the linear head beside it.
                backbone.model.encoder.save_pretrained(str(tmp))
                save_file(_contiguous(backbone.head_state_dict()), str(tmp / HEAD_FILE), metadata={"format": "pt"})
            elif backbone.source == "hf":
                backbone.model.save_pretrained(str(tmp))
            else:
                from timm.models import save_for_hf

                save_for_hf(backbone.model, str(tmp), safe_serialization=True, model_args=dict(spec.model_kwargs))
        meta = {
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "source": backbone.source,
            "modality": backbone.modality,
            "strategy": adapted.strategy,
            "strategy_config": adapted.config.model_dump(mode="json"),
            "backbone": spec.to_dict(),
            "label2id": {name: i for i, name in enumerate(spec.label_names)},
            "data_config": _jsonable(backbone.data_config),
            "report": adapted.report.to_dict(),
            **(extra or {}),
        }
        (tmp / ARTIFACT_FILE).write_text(json.dumps(meta, indent=2, default=str))
        swap_into_place(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return str(dest)


@contextmanager
def _default_layout(model: torch.nn.Module):
    """Within the block, a channels_last model holds its weights in the default layout: safetensors only
    stores contiguous tensors, and an artifact should not depend on how it was trained. Restored after."""
    nhwc = any(
        p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
        for p in model.parameters()
    )
    if nhwc:
        model.to(memory_format=torch.contiguous_format)
    try:
        yield
    finally:
        if nhwc:
            model.to(memory_format=torch.channels_last)


def load_adapted(path: str | os.PathLike, *, token: str | None = None, trust_remote_code: bool = False) -> AdaptedModel:
    """Restore any rung saved by `save_adapted`, with the same trainable set as when it was saved.

    The base backbone is rebuilt from the stored spec (its Hub id or local path must be reachable).
    Only safetensors files are read.
    """
    folder = Path(path)
    meta_file = folder / ARTIFACT_FILE
    if not meta_file.is_file():
        raise FileNotFoundError(f"{folder} is not a peft_ladder artifact: {ARTIFACT_FILE} is missing.")
    meta = json.loads(meta_file.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{meta_file}: format_version {meta.get('format_version')} is not {FORMAT_VERSION}.")
    spec = BackboneSpec(**meta["backbone"])
    strategy = meta["strategy"]
    config = make_strategy_config(strategy, meta["strategy_config"], where=f"{meta_file}:strategy_config")
    hub = dict(token=token, trust_remote_code=trust_remote_code)
    kind = meta["kind"]

    if kind == "adapter":
        from peft import PeftModel

        if not (folder / ADAPTER_WEIGHTS).is_file():
            raise FileNotFoundError(f"{folder}: {ADAPTER_WEIGHTS} is missing (pickled adapters are not loaded).")
        backbone = load_backbone_from_spec(spec, **hub)
        model = PeftModel.from_pretrained(backbone.model, str(folder), is_trainable=True)
        return finish_adaptation(model, backbone, strategy, config)
    if kind == "delta":
        adapted = apply_strategy(load_backbone_from_spec(spec, **hub), strategy, config)
        tensors = load_file(str(folder / DELTA_FILE))
        state = adapted.model.state_dict()
        unknown = sorted(set(tensors) - set(state))
        if unknown:
            raise ValueError(f"{folder / DELTA_FILE} has tensors the rebuilt model lacks: {unknown[:5]}.")
        adapted.model.load_state_dict(tensors, strict=False)
        return adapted
    # full: the folder itself is the backbone; skip `init_backbone` (scratch would re-initialise).
    # The folder's own classifier is the trained head: keep it (a same-size head is otherwise replaced).
    local = replace(
        spec,
        name=f"{meta['source']}:{folder.resolve()}",
        pretrained=True,
        checkpoint=None,
        model_kwargs={},
        keep_head=True,
    )
    backbone = load_backbone_from_spec(local, **hub)
    if (folder / HEAD_FILE).is_file():
        backbone.load_head_state(load_file(str(folder / HEAD_FILE)))
    model = get_strategy(strategy)().configure(backbone, config)
    return finish_adaptation(model, backbone, strategy, config)


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in tensors.items()}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: list(v) if isinstance(v, tuple) else str(v)))

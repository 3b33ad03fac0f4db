"""`load_predictor`: whatever the ladder produced, as one classifier ready for inference.

A source is a train / ladder run folder (its `artifact/`, the recommended rung), an artifact folder, a ladder run
folder and a rung id, a Hub repo id of a pushed artifact or export, or a standalone folder written by
`peft-ladder export`. Artifacts load through `load_adapted` and preprocess exactly as training did (the backbone's
tokenizer and max length, or its timm data config); exports load with their own library and the preprocessing
saved beside them (the tokenizer, the transformers image processor, or timm's `pretrained_cfg`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from peft_ladder.artifact_checks import read_meta
from peft_ladder.artifacts import download_artifact, load_adapted
from peft_ladder.backbones.loader import ARTIFACT_FILE
from peft_ladder.errors import UserError
from peft_ladder.hub.export import artifact_folder
from peft_ladder.hub.push import rung_artifact
from peft_ladder.inference.model import (
    DEFAULT_BOOTSTRAP_SAMPLES,
    DEFAULT_CONFIDENCE,
    DEFAULT_MAX_LENGTH,
    DEFAULT_METRICS,
    Predictor,
    RunDefaults,
    processor_image_encoder,
    text_encoder,
    timm_image_encoder,
    word_encoder,
)
from peft_ladder.logs import library_quiet
from peft_ladder.metrics import TASK_METRICS
from peft_ladder.tasks import Task

TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def load_predictor(
    source: str | Path,
    *,
    rung: str | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    token: str | None = None,
    base: str | None = None,
    max_length: int | None = None,
) -> Predictor:
    """Load `source` for inference (see the module docstring for what it may be).

    Args:
        source: a run folder, an artifact folder, an export folder or a Hub repo id.
        rung: a ladder rung id (or `scratch`): that rung's own artifact instead of the recommended one.
        trust_remote_code: run modelling code shipped with the model (an export whose pooling has no stock class).
        revision, token: for a Hub repo id; the token is used for the download only.
        base: the base checkpoint's folder, when the artifact names one that lived on another machine.
        max_length: tokenizer max length; default the run's (data.max_length), else the checkpoint's, at most 512.
    """
    folder = model_folder(source, rung=rung, revision=revision, token=token)
    if (folder / ARTIFACT_FILE).is_file():
        predictor = _from_artifact(folder, trust_remote_code, token, base, max_length)
    else:
        predictor = _from_export(folder, trust_remote_code, max_length)
    predictor.model.eval()
    return predictor


def model_folder(source: str | Path, *, rung: str | None, revision: str | None, token: str | None) -> Path:
    """The folder holding the model: an artifact or an export, local or downloaded from the Hub."""
    path = Path(source)
    if rung is not None:
        return rung_artifact(path, rung)
    if path.is_dir():
        if (path / "config.json").is_file() and not (path / ARTIFACT_FILE).is_file():
            return path  # a standalone export
        return artifact_folder(path)
    if path.exists():
        raise NotADirectoryError(
            f"{path} is a file; pass a run folder, an artifact folder, an export folder or a Hub repo id."
        )
    if str(source).startswith((".", "/", "~")) or str(source).count("/") != 1:
        raise FileNotFoundError(f"{source} does not exist; pass a run folder, an artifact folder or an export folder.")
    return download_artifact(str(source), revision=revision, token=token)


def _from_artifact(
    folder: Path, trust_remote_code: bool, token: str | None, base: str | None, max_length: int | None
) -> Predictor:
    meta = read_meta(folder / ARTIFACT_FILE)
    adapted = load_adapted(folder, token=token, trust_remote_code=trust_remote_code, base=base)
    backbone, task = adapted.backbone, Task.from_dict(meta.get("task"))
    run = meta.get("run_config") or {}
    data = run.get("data") or {}
    if backbone.modality == "text":
        length = max_length or data.get("max_length") or backbone.data_config.get("max_length", DEFAULT_MAX_LENGTH)
        encoder = word_encoder if task.per_token else text_encoder
        encode = encoder(backbone.data_config["tokenizer"], length)
    else:
        encode = timm_image_encoder(backbone.data_config)
    ladder = run.get("ladder") or {}
    recorded = {
        split: dict(result.get("metrics", {}))
        for split, result in (meta.get("metrics") or {}).get("splits", {}).items()
    }
    defaults = RunDefaults(
        text_column=data.get("text_column"),
        image_column=data.get("image_column"),
        label_column=data.get("label_column"),
        metrics=tuple(run.get("metrics") or ()) or _recorded(recorded, DEFAULT_METRICS),
        confidence=ladder.get("confidence", DEFAULT_CONFIDENCE),
        bootstrap_samples=ladder.get("bootstrap_samples", DEFAULT_BOOTSTRAP_SAMPLES),
        recorded=recorded,
    )
    return Predictor(
        model=adapted.model,
        label_names=list(backbone.spec.label_names),
        modality=backbone.modality,
        encode=encode,
        forward=backbone.logits,
        defaults=defaults,
        origin=f"artifact {folder} ({adapted.strategy}, {meta.get('kind')})",
        task=task,
    )


def _recorded(recorded: dict[str, dict[str, float]], fallback: tuple[str, ...]) -> tuple[str, ...]:
    """The metrics the run reported (a run whose recipe left `metrics` to the task's defaults names them only there)."""
    names = next(iter(recorded.values()), {})
    return tuple(name for name in names if "/" not in name) or fallback


def _from_export(folder: Path, trust_remote_code: bool, max_length: int | None) -> Predictor:
    config = json.loads((folder / "config.json").read_text())
    if "architecture" in config:  # timm's save_for_hf layout
        return _timm_export(folder, config)
    if "model_type" not in config:
        raise ValueError(
            f"{folder / 'config.json'} is neither a timm config (architecture) nor a transformers one (model_type): "
            "pass a folder written by `peft-ladder export`, an artifact folder or a run folder."
        )
    if "auto_map" in config and not trust_remote_code:
        raise UserError(
            f"{folder} ships its own modelling code (config.json auto_map): read it, then pass --trust-remote-code "
            "(trust_remote_code=True) to run it."
        )
    from transformers import AutoConfig

    kind = _transformers_kind(folder, config)
    hf_config = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    label_names = [str(hf_config.id2label[i]) for i in range(hf_config.num_labels)]
    with library_quiet():
        if kind == "tagger":
            from transformers import AutoModelForTokenClassification as AutoClassifier
        elif kind == "text":
            from transformers import AutoModelForSequenceClassification as AutoClassifier
        else:
            from transformers import AutoModelForImageClassification as AutoClassifier
        model = AutoClassifier.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    task, defaults = Task(), RunDefaults()
    if kind == "image":
        encode = processor_image_encoder(folder, trust_remote_code)
    else:
        positions = getattr(hf_config, "max_position_embeddings", None) or (
            hf_config.to_dict().get("encoder") or {}
        ).get("max_position_embeddings", DEFAULT_MAX_LENGTH)
        length = max_length or min(positions, DEFAULT_MAX_LENGTH)
        encode = (word_encoder if kind == "tagger" else text_encoder)(str(folder), length)
    if kind == "tagger":  # an export records no run: a word cut off by max_length reads as O where there is one
        fill = label_names.index("O") if "O" in label_names else 0
        task = Task("token_classification", fill_tag=fill, tags=tuple(label_names))
        defaults = RunDefaults(metrics=TASK_METRICS["token_classification"])
    return Predictor(
        model=model,
        label_names=label_names,
        modality="image" if kind == "image" else "text",
        encode=encode,
        forward=_transformers_logits,
        defaults=defaults,
        origin=f"transformers export {folder}",
        task=task,
    )


def _transformers_kind(folder: Path, config: dict[str, Any]) -> str:
    """What a transformers folder holds, by the classes its config names: a sequence classifier ("text"), a token
    classifier ("tagger") or an image classifier ("image"); anything else is refused, as is a text model saved
    without its tokenizer."""
    classes = [*(config.get("architectures") or []), *(config.get("auto_map") or {})]
    for suffix, kind in (("ForSequenceClassification", "text"), ("ForTokenClassification", "tagger")):
        if any(name.endswith(suffix) for name in classes):
            if not (folder / "tokenizer_config.json").is_file():
                raise FileNotFoundError(
                    f"{folder} holds a text model but no tokenizer (tokenizer_config.json); export the rung with "
                    "`peft-ladder export`, which saves it."
                )
            return kind
    if any(name.endswith("ForImageClassification") for name in classes):
        return "image"
    raise ValueError(
        f"{folder} holds a transformers {config['model_type']} model that is neither a sequence, token nor image "
        f"classifier (its classes: {classes}); pass a folder written by `peft-ladder export`, an artifact folder or "
        "a run folder."
    )


def _timm_export(folder: Path, config: dict[str, Any]) -> Predictor:
    import timm
    from timm.data import resolve_model_data_config

    model = timm.create_model(f"local-dir:{folder}", pretrained=True)
    classes = config.get("num_classes") or model.num_classes
    label_names = [str(name) for name in config.get("label_names") or range(classes)]
    if len(label_names) != classes:
        raise ValueError(f"{folder / 'config.json'}: {len(label_names)} label_names for {classes} classes.")
    return Predictor(
        model=model,
        label_names=label_names,
        modality="image",
        encode=timm_image_encoder(resolve_model_data_config(model)),
        forward=_timm_logits,
        defaults=RunDefaults(),
        origin=f"timm export {folder}",
    )


def _timm_logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(batch["pixel_values"])


def _transformers_logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    names = ("pixel_values",) if "pixel_values" in batch else TEXT_INPUTS
    return model(**{k: batch[k] for k in names if k in batch}).logits

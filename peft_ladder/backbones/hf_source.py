"""Load transformers classifiers (Hub ids or local folders) as a `Backbone`."""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch.nn as nn
from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
)

from peft_ladder.backbones.backbone import Backbone, BackboneSpec
from peft_ladder.backbones.families import Family, family_of
from peft_ladder.backbones.layout import describe_layout, normalise_patterns
from peft_ladder.backbones.pooling import PoolingSpec, sentence_transformers_pooling
from peft_ladder.backbones.text_classifier import EncoderClassifier
from peft_ladder.errors import hub_reason
from peft_ladder.logs import library_quiet

logger = logging.getLogger(__name__)

# ImageNet statistics: the transformers image processors' default for the families we list.
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def load_hf(
    name: str, spec: BackboneSpec, *, token: str | None, trust_remote_code: bool, allow_pickle: bool
) -> Backbone:
    """Load a transformers model for image or sequence classification with a fresh head.

    Args:
        name: Hub id or local folder.
        spec: the rest of the request.
        token: Hub token for private repos; used for the download only, never stored.
        trust_remote_code: allow custom modelling code from the repo (off unless asked).
        allow_pickle: accept `.bin` weights (loaded with `weights_only=True`) when no safetensors exist.
    """
    if spec.checkpoint:
        # Only timm architectures take a loose weights file; ignoring it would silently train the wrong weights.
        raise ValueError(
            f"checkpoint={spec.checkpoint!r} is for timm architectures; for transformers pass the folder holding "
            f"config.json and the safetensors weights as the name instead of {spec.name!r}."
        )
    hub = dict(revision=spec.revision, token=token, trust_remote_code=trust_remote_code)
    id2label = dict(enumerate(spec.label_names))
    # The head is new: the checkpoint's problem_type belonged to its old head (a classifier's config refuses one
    # output, which a regression head has). The run's task sets it when the model is saved.
    labels = {
        "num_labels": spec.num_labels,
        "id2label": id2label,
        "label2id": {v: k for k, v in id2label.items()},
        "problem_type": None,
    }
    from peft_ladder.hub.standalone import pooled_encoder_config, pooled_encoder_state  # the hub imports backbones

    # A full rung of a mean-pooled encoder is saved under a config transformers' Auto classes refuse without
    # trust_remote_code; its encoder's own config is inside it, and we know the class.
    pooled = pooled_encoder_config(Path(name)) if Path(name).is_dir() else None
    try:
        if pooled is not None:
            config = AutoConfig.for_model(**{**pooled, **labels, **spec.model_kwargs})
        else:
            config = AutoConfig.from_pretrained(name, **labels, **hub, **spec.model_kwargs)
    except OSError as err:  # transformers' words for an id, folder or revision it cannot find
        raise FileNotFoundError(f"backbone.name={spec.name!r}: transformers cannot load {name}: {_why(err)}.") from err
    if config.model_type in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES:
        modality = "image"
    elif config.model_type in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        modality = "text"
    else:
        raise ValueError(
            f"{name}: model_type {config.model_type!r} has no image- or sequence-classification class in transformers."
        )
    weights = dict(use_safetensors=None if allow_pickle else True, **hub)
    pooling = None
    if modality == "image":
        classes = MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES[config.model_type]
        if isinstance(classes, tuple) and not config.architectures:
            # DeiT maps to two classifiers (with and without a distillation teacher): the plain one, by name.
            config.architectures = [classes[0]]
        if spec.pretrained:
            # The new head has num_labels outputs, the checkpoint's may not.
            with library_quiet():  # its report lists the head we replace; ours follows
                model, info = AutoModelForImageClassification.from_pretrained(
                    name, config=config, ignore_mismatched_sizes=True, output_loading_info=True, **weights
                )
            _log_loading(name, info)
            if not spec.keep_head:
                _fresh_head_if_loaded(model, info)
        else:
            model = AutoModelForImageClassification.from_config(config, trust_remote_code=trust_remote_code)
    else:
        if spec.pretrained and pooled is not None:
            encoder = AutoModel.from_config(config)
            missing, unexpected = encoder.load_state_dict(pooled_encoder_state(Path(name)), strict=False)
            pooler_loaded = not any(".pooler." in f".{k}" for k in missing)
            info = {"missing_keys": missing, "unexpected_keys": unexpected}
            if unexpected or any(".pooler." not in f".{k}" for k in missing):
                raise ValueError(
                    f"{name}: the saved encoder does not fit its config: missing {missing[:5]}, "
                    f"unexpected {unexpected[:5]}."
                )
        elif spec.pretrained:
            with library_quiet():  # its report lists the pretraining heads left out; ours follows
                encoder, info = AutoModel.from_pretrained(name, config=config, output_loading_info=True, **weights)
            _log_loading(name, info)
            pooler_loaded = not any(".pooler." in f".{k}" for k in info.get("missing_keys", []))
        else:
            encoder = AutoModel.from_config(config, trust_remote_code=trust_remote_code)
            pooler_loaded = True
        has_pooler = getattr(encoder, "pooler", None) is not None and pooler_loaded
        pooling = resolve_pooling(spec, name, family_of("hf", encoder), has_pooler, token=token)
        model = EncoderClassifier(encoder, spec.num_labels, pooling)
        spec = replace(spec, pooling=pooling.to_dict())  # reloads (scratch, artifacts) pool exactly the same

    prefix = model.base_model_prefix
    family = family_of("hf", model)
    head = list(spec.head) if spec.head else _head_modules(model, prefix)
    if spec.block_pattern:
        patterns = normalise_patterns(spec.block_pattern)
    elif family.blocks:
        patterns = [(regex.format(prefix=re.escape(prefix)), ordinal) for regex, ordinal in family.blocks]
    else:
        patterns = normalise_patterns(_largest_module_list(model, prefix))
    layout = describe_layout(model, head, patterns)
    if modality == "image":
        data_config = _image_data_config(name, config, hub)
    else:
        data_config = dict(
            tokenizer=spec.tokenizer or name, max_length=min(getattr(config, "max_position_embeddings", 512), 512)
        )
    return Backbone(
        model=model,
        source="hf",
        modality=modality,
        layout=layout,
        family=family,
        data_config=data_config,
        spec=spec,
        pooling=pooling,
    )


def _log_loading(name: str, info: dict[str, Any]) -> None:
    """What transformers' load report would say, in one line at debug level (`--log-level debug`)."""
    counts = {k: len(v) for k, v in info.items() if isinstance(v, (list, set)) and v}
    logger.debug("loaded %s: %s", name, ", ".join(f"{n} {k}" for k, n in counts.items()) or "every weight matched")


def _why(err: OSError) -> str:
    """huggingface_hub's reason (offline, no such repo, gated, ...) and its fix, else transformers' own words."""
    reason = hub_reason(err)
    if reason is None:
        reason = " ".join(str(err).split()).rstrip(".")
    return reason


def resolve_pooling(
    spec: BackboneSpec, name: str, family: Family, has_pooler: bool, *, token: str | None = None
) -> PoolingSpec:
    """The recipe's pooling when it names one; else what a sentence-transformers checkpoint declares; else
    the family's convention (the pooler only where the checkpoint has trained pooler weights)."""
    requested = spec.pooling
    if isinstance(requested, dict):
        return PoolingSpec(**requested)
    if requested == "token":  # token classification: the head reads every token
        return PoolingSpec("token", False, "task")
    if requested not in (None, "auto"):
        if requested == "pooler" and not has_pooler:
            raise ValueError(f"backbone.pooling=pooler: {name} has no trained pooler; use cls or mean.")
        return PoolingSpec(requested, bool(spec.pooling_normalize), "recipe")
    declared = sentence_transformers_pooling(name, revision=spec.revision, token=token)
    if declared is not None:
        if spec.pooling_normalize is not None:
            declared = replace(declared, normalize=spec.pooling_normalize)
        return declared
    convention = family.pooling or "cls"
    mode = convention if convention != "pooler" or has_pooler else "cls"
    return PoolingSpec(mode, bool(spec.pooling_normalize), "family")


def _fresh_head_if_loaded(model: nn.Module, info: dict[str, Any]) -> None:
    """A checkpoint whose classifier has the task's size loads it; every rung expects a new head, so its
    linear layers get transformers' own initialisation again (normal(0, initializer_range), zero bias)."""
    fresh = {k for k in info.get("missing_keys", [])} | {
        k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys", [])
    }
    std = getattr(model.config, "initializer_range", 0.02)
    for name in _head_modules(model, model.base_model_prefix):
        for sub_name, module in model.get_submodule(name).named_modules():
            full = f"{name}.{sub_name}" if sub_name else name
            if isinstance(module, nn.Linear) and f"{full}.weight" not in fresh:
                nn.init.normal_(module.weight, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)


def _head_modules(model: nn.Module, prefix: str) -> list[str]:
    """transformers convention: the head is every top-level module outside `base_model_prefix`."""
    head = [n for n, m in model.named_children() if n != prefix and any(True for _ in m.parameters())]
    if not head:
        raise ValueError(f"{type(model).__name__} has no head module outside {prefix!r}; pass `head=`.")
    return head


def _largest_module_list(model: nn.Module, prefix: str) -> str:
    """The ModuleList holding most parameters is the stack of blocks (encoder layers)."""
    best, best_size = None, 0
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.startswith(prefix):
            size = sum(p.numel() for p in module.parameters())
            if size > best_size:
                best, best_size = name, size
    if best is None:
        raise ValueError(f"{type(model).__name__}: no stack of blocks found; pass `block_pattern=`.")
    return rf"^{re.escape(best)}\.(\d+)\."


def _image_data_config(name: str, config: Any, hub: dict) -> dict[str, Any]:
    try:
        processor = AutoImageProcessor.from_pretrained(name, **hub)
    except (OSError, ValueError):
        processor = None
    size = getattr(config, "image_size", 224)
    if processor is None:
        return dict(input_size=(3, size, size), crop_pct=1.0, mean=_IMAGENET_MEAN, std=_IMAGENET_STD, source="defaults")
    proc_size = getattr(processor, "size", None) or {}
    side = proc_size.get("height") or proc_size.get("shortest_edge") or size
    crop = getattr(processor, "crop_size", None) or {}
    cropped = getattr(processor, "do_center_crop", False) and crop.get("height")
    resample = {0: "nearest", 2: "bilinear", 3: "bicubic"}.get(int(getattr(processor, "resample", 2) or 2), "bilinear")
    return dict(
        # The processor resizes to `size` and crops to `crop_size` when it crops; timm's transform takes the
        # final side and the crop fraction (1.0: a plain resize, as ViT's processor does).
        input_size=(3, cropped or side, cropped or side),
        crop_pct=(cropped / side) if cropped else 1.0,
        interpolation=resample,
        mean=tuple(processor.image_mean),
        std=tuple(processor.image_std),
        source="image_processor",
    )


def load_tokenizer(source: str) -> Any:
    """`AutoTokenizer` for a Hub id or a folder, never running or offering to run a folder's code.

    transformers 5 reads the folder's `config.json` too; a partial rung folder's names a class that refuses to
    load (by design, see `peft_ladder.hub.standalone`), and with `trust_remote_code` unset it would ask on a
    terminal whether to run it. The tokenizer's own `tokenizer_config.json` names its class."""
    from transformers import AutoTokenizer

    with library_quiet():  # transformers falls back to a plain config for such folders and says so
        return AutoTokenizer.from_pretrained(source, trust_remote_code=False)

"""Turn splits into model inputs: the backbone's tokenizer for text, its own data config for images."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import xxhash
from datasets import Dataset, Image
from datasets.fingerprint import Hasher

from peft_ladder.backbones.backbone import Backbone
from peft_ladder.backbones.hf_source import load_tokenizer
from peft_ladder.config import DataConfig
from peft_ladder.data.images import open_image
from peft_ladder.data.splits import Splits
from peft_ladder.hub.portable import portable
from peft_ladder.logs import library_quiet

logger = logging.getLogger(__name__)
_TRANSFORM_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")


@dataclass
class Encoded:
    """Splits ready for a model.

    Attributes:
        datasets: split name -> rows the model takes (token ids, or transformed images).
        collate: rows -> a batch of tensors.
        preprocessing: what ran (tokenizer and max length, or the image transform), for records and cache keys.
    """

    datasets: dict[str, Dataset]
    collate: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]
    preprocessing: dict[str, Any]


def encode_splits(splits: Splits, backbone: Backbone, cfg: DataConfig) -> Encoded:
    """Tokenize or transform every split for `backbone`."""
    if backbone.modality != splits.modality:
        held, wanted = ("images", "an image") if splits.modality == "image" else ("text", "a text")
        raise ValueError(
            f"backbone.name={backbone.spec.name!r} takes {backbone.modality} but data.dataset holds {held}; use "
            f"{wanted} backbone, or {backbone.modality} data."
        )
    named = {"train": splits.train, **splits.eval_splits()}
    if backbone.modality == "text":
        return _encode_text(named, splits.input_column, backbone, cfg)
    return _encode_images(named, splits.input_column, backbone, cfg)


PAD_TO_MULTIPLE_OF = 8


def _encode_text(named: dict[str, Dataset], column: str, backbone: Backbone, cfg: DataConfig):
    from transformers import DataCollatorWithPadding

    source = backbone.data_config.get("tokenizer")
    try:
        tokenizer = load_tokenizer(source)
    except (OSError, ValueError, TypeError) as err:
        raise ValueError(
            f"no tokenizer at {source!r} for backbone {backbone.spec.name}: set backbone.tokenizer to a tokenizer id or folder."
        ) from err
    check_vocabulary(tokenizer, source, backbone)
    max_length = cfg.max_length or backbone.data_config.get("max_length", 512)

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        return tokenizer(batch[column], truncation=True, max_length=max_length)

    digest = _tokenizer_digest(tokenizer)
    with library_quiet():  # no "Map" bar per split: the run's own log says what was tokenized
        encoded = _tokenize_splits(named, tokenize, digest, max_length, column)
    record = {"tokenizer": portable(str(source)), "max_length": max_length}  # the note is shared: no machine path
    # A multiple of 8: few distinct shapes (torch.compile) and tensor-core friendly lengths; the padding is masked.
    record["pad_to_multiple_of"] = PAD_TO_MULTIPLE_OF
    collate = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=PAD_TO_MULTIPLE_OF, return_tensors="pt")
    return Encoded(encoded, collate, record)


def check_vocabulary(tokenizer: Any, source: Any, backbone: Backbone) -> None:
    """A tokenizer whose ids run past the model's embedding table fails deep in the first forward pass (an
    IndexError); say so here, naming the key."""
    encoder = getattr(backbone.model, "encoder", backbone.model)
    embeddings = encoder.get_input_embeddings() if hasattr(encoder, "get_input_embeddings") else None
    rows = getattr(embeddings, "num_embeddings", None)
    if rows is not None and len(tokenizer) > rows:
        raise ValueError(
            f"backbone.tokenizer: the tokenizer at {source!r} has {len(tokenizer):,} tokens, but {backbone.spec.name} "
            f"embeds only {rows:,}: it belongs to another model. Leave backbone.tokenizer unset to use the "
            "checkpoint's own, or name the tokenizer it was trained with."
        )


def _tokenize_splits(named: dict[str, Dataset], tokenize: Any, digest: str | None, max_length: int, column: str):
    return {
        name: ds.map(
            tokenize,
            batched=True,
            remove_columns=[c for c in ds.column_names if c != "labels"],
            # Without it, datasets pickles the whole tokenizer to fingerprint every map (~0.25 s each).
            new_fingerprint=Hasher.hash([ds._fingerprint, digest, max_length, column]) if digest else None,
        )
        for name, ds in named.items()
    }


def _tokenizer_digest(tokenizer: Any) -> str | None:
    """Hash of a fast tokenizer's full definition (vocabulary, normalizer, special tokens); None for slow ones."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    return xxhash.xxh3_128(f"{type(tokenizer).__name__}|{backend.to_str()}".encode()).hexdigest()


def _encode_images(named: dict[str, Dataset], column: str, backbone: Backbone, cfg: DataConfig):
    from timm.data import create_transform

    args = {k: backbone.data_config[k] for k in _TRANSFORM_KEYS if k in backbone.data_config}
    _warn_on_large_resize(named["train"], column, args.get("input_size"), backbone)
    train_tf = create_transform(**args, is_training=cfg.augment)
    eval_tf = create_transform(**args, is_training=False)

    def make(tf):
        def apply(batch: dict[str, list]) -> dict[str, list]:
            return {"pixel_values": [tf(open_image(item)) for item in batch[column]], "labels": batch["labels"]}

        return apply

    # Decoded by open_image, not by datasets, so that a file that does not decode is named in the error.
    raw = {name: ds.cast_column(column, Image(decode=False)) for name, ds in named.items()}
    encoded = {name: ds.with_transform(make(train_tf if name == "train" else eval_tf)) for name, ds in raw.items()}
    record = {"transform": {k: list(v) if isinstance(v, tuple) else v for k, v in args.items()}, "augment": cfg.augment}
    return Encoded(encoded, _stack, record)


def _warn_on_large_resize(ds: Dataset, column: str, input_size: Any, backbone: Backbone) -> None:
    """Inputs scaled by more than 2x are a sign the data config does not fit the data (32 px images blown up to
    224 px made a probe that scores 1.000 score 0.38, and every step 15x slower)."""
    if not input_size or len(ds) == 0:
        return
    width, height = ds[0][column].size
    target_h, target_w = input_size[-2:]
    scale = max(target_h / height, target_w / width, height / target_h, width / target_w)
    if scale > 2:
        logger.warning(
            "images are %dx%d but %s expects %dx%d (data config from %s): every image is resized %.1fx. If the "
            "checkpoint was trained at the data's size, set backbone.data_config.input_size.",
            width,
            height,
            backbone.spec.name,
            target_w,
            target_h,
            backbone.data_config.get("source", "the architecture's pretrained_cfg"),
            scale,
        )


def _stack(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    return {
        "pixel_values": torch.stack([r["pixel_values"] for r in rows]),
        "labels": torch.tensor([r["labels"] for r in rows]),
    }

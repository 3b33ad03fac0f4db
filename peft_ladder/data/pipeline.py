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
from peft_ladder.tasks import IGNORE, pad_rows

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
    if splits.task.per_token and backbone.modality != "text":
        raise ValueError(
            f"data.task=token_classification tags the words of a text; backbone.name={backbone.spec.name!r} takes "
            f"{backbone.modality}. Use a text backbone."
        )
    if backbone.modality == "text":
        return _encode_text(named, splits.input_column, backbone, cfg, per_word=splits.task.per_token)
    return _encode_images(named, splits.input_column, backbone, cfg)


PAD_TO_MULTIPLE_OF = 8


def _encode_text(named: dict[str, Dataset], column: str, backbone: Backbone, cfg: DataConfig, per_word: bool = False):
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

    if per_word:
        tokenize = _word_tokenizer(tokenizer, column, max_length, source)
    digest = _tokenizer_digest(tokenizer)
    with library_quiet():  # no "Map" bar per split: the run's own log says what was tokenized
        encoded = _tokenize_splits(named, tokenize, digest, max_length, column, per_word)
    record = {"tokenizer": portable(str(source)), "max_length": max_length}  # the note is shared: no machine path
    # A multiple of 8: few distinct shapes (torch.compile) and tensor-core friendly lengths; the padding is masked.
    record["pad_to_multiple_of"] = PAD_TO_MULTIPLE_OF
    if per_word:
        record["words"] = "first sub-token of each word tagged, the others ignored"
        # Said in the note too: the rungs score these words as the fill tag, the per-word baseline reads them.
        record["words_past_max_length"] = _log_cut_words(encoded)
        return Encoded(encoded, WordCollator(tokenizer), record)
    collate = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=PAD_TO_MULTIPLE_OF, return_tensors="pt")
    return Encoded(encoded, collate, record)


def _word_tokenizer(tokenizer: Any, column: str, max_length: int, source: Any) -> Callable[[dict], dict]:
    """Tokenize rows of words and align their tags as transformers' token-classification examples do: a word's
    first sub-token carries its tag, its other sub-tokens and the special tokens are IGNORE. The word-level tags
    stay beside them (`word_labels`): metrics score every word, including those cut off by max_length."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"data.task=token_classification needs a fast tokenizer (its word_ids map sub-tokens to words); the one at "
            f"{source!r} is a slow {type(tokenizer).__name__}. Set backbone.tokenizer to a fast tokenizer's id or folder."
        )

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        encoded = tokenizer(batch[column], is_split_into_words=True, truncation=True, max_length=max_length)
        aligned = []
        for i, tags in enumerate(batch["labels"]):
            word_ids = encoded.word_ids(i)
            aligned.append([tags[w] if first else IGNORE for w, first in zip(word_ids, first_subtokens(word_ids))])
        return {**encoded, "labels": aligned, "word_labels": batch["labels"]}

    return tokenize


def first_subtokens(word_ids: list[int | None]) -> list[bool]:
    """Per position, whether it is a word's first sub-token: the one that carries the word's tag in training and
    the one its prediction is read from (special tokens and later sub-tokens are not)."""
    return [w is not None and (i == 0 or w != word_ids[i - 1]) for i, w in enumerate(word_ids)]


def _log_cut_words(encoded: dict[str, Dataset]) -> dict[str, str]:
    """Per split, how many words lie past max_length ("12 of 3,000"), logged where there are any."""
    counts = {}
    for name, ds in encoded.items():
        words = sum(len(r) for r in ds["word_labels"])
        kept = sum(sum(1 for t in r if t != IGNORE) for r in ds["labels"])
        counts[name] = f"{words - kept:,} of {words:,}"
        if kept < words:
            logger.warning(
                "%s: %d of %d words lie past data.max_length and are never seen by the model; they are scored as the "
                "training rows' most frequent tag. Raise data.max_length to tag them.",
                name,
                words - kept,
                words,
            )
    return counts


class WordCollator:
    """Pads token ids and aligned tags (IGNORE) like transformers' `DataCollatorForTokenClassification`, and each
    row's word tags to the batch's longest row (IGNORE): `word_labels` (B, W)."""

    def __init__(self, tokenizer: Any):
        from transformers import DataCollatorForTokenClassification

        self.tokens = DataCollatorForTokenClassification(
            tokenizer, pad_to_multiple_of=PAD_TO_MULTIPLE_OF, return_tensors="pt"
        )

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        words = [r["word_labels"] for r in rows]
        batch = self.tokens([{k: v for k, v in r.items() if k != "word_labels"} for r in rows])
        batch["word_labels"] = torch.as_tensor(pad_rows(words))
        return batch


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


def _tokenize_splits(
    named: dict[str, Dataset], tokenize: Any, digest: str | None, max_length: int, column: str, per_word: bool = False
):
    return {
        name: ds.map(
            tokenize,
            batched=True,
            # Word rows replace their labels with the aligned ones (a per-word labels column is kept as word_labels).
            remove_columns=[c for c in ds.column_names if c != "labels" or per_word],
            # Without it, datasets pickles the whole tokenizer to fingerprint every map (~0.25 s each).
            new_fingerprint=Hasher.hash([ds._fingerprint, digest, max_length, column, *["words"] * per_word])
            if digest
            else None,
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

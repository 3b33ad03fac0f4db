"""What a loaded classifier is for inference (`Predictor`), what its run recorded (`RunDefaults`), and the
preprocessing it runs: training's own (the tokenizer and max length, or timm's eval transform for the backbone's
data config), or the transformers image processor saved beside an export."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn as nn

from peft_ladder.backbones.hf_source import load_tokenizer
from peft_ladder.config import LadderConfig
from peft_ladder.data.images import open_image
from peft_ladder.data.pipeline import PAD_TO_MULTIPLE_OF, first_subtokens
from peft_ladder.logs import library_quiet
from peft_ladder.tasks import Task

# Training's default when a run names no max length and the checkpoint no position limit (hf_source.py).
DEFAULT_MAX_LENGTH = 512
# For runs that record none (an export, an artifact saved by hand): the recipe defaults.
DEFAULT_CONFIDENCE: float = LadderConfig.model_fields["confidence"].default
DEFAULT_BOOTSTRAP_SAMPLES: int = LadderConfig.model_fields["bootstrap_samples"].default
DEFAULT_METRICS: tuple[str, ...] = ("accuracy", "f1_macro")  # a single-label run's defaults (metrics.TASK_METRICS)

Encode = Callable[[list[Any]], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class RunDefaults:
    """What the run that made the model recorded, as defaults for reading new data and scoring it.

    Attributes:
        text_column, image_column, label_column: the columns training read (None: it guessed them).
        metrics: the metrics the run reported.
        confidence, bootstrap_samples: of the ladder's intervals.
        recorded: the run's own metrics per split (validation, test, ...), for comparison.
    """

    text_column: str | None = None
    image_column: str | None = None
    label_column: str | None = None
    metrics: tuple[str, ...] = DEFAULT_METRICS
    confidence: float = DEFAULT_CONFIDENCE
    bootstrap_samples: int = DEFAULT_BOOTSTRAP_SAMPLES
    recorded: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class Predictor:
    """A classifier in eval mode with its preprocessing.

    Attributes:
        model: the module to run (a peft model, a timm model, a transformers classifier).
        label_names: class names, index = the model's output index.
        modality: "text" or "image".
        encode: a batch of raw inputs (strings, or image values as `datasets` holds them) -> model inputs.
        forward: (model, inputs) -> logits; takes the model as an argument so that it may run moved to a device.
        defaults: what the run recorded (columns, metrics, intervals); empty for an export.
        origin: what was loaded, in words, for reports.
        task: what the model predicts (an export, which records none, is single-label).
    """

    model: nn.Module
    label_names: list[str]
    modality: Literal["text", "image"]
    encode: Encode
    forward: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]
    defaults: RunDefaults
    origin: str
    task: Task = field(default_factory=Task)


def text_encoder(tokenizer_source: str, max_length: int) -> Encode:
    """Tokenize as training did: truncated to `max_length`, padded per batch to a multiple of 8."""
    tokenizer = load_tokenizer(tokenizer_source)

    def encode(texts: list[Any]) -> dict[str, torch.Tensor]:
        return _padded(tokenizer, tokenizer(texts, truncation=True, max_length=max_length))

    return encode


def word_encoder(tokenizer_source: str, max_length: int) -> Encode:
    """Rows of words tokenized as training did (`is_split_into_words`, truncated to `max_length`, padded per batch to
    a multiple of 8), with `word_starts` (B, T): True at each word's first sub-token, the position training tagged
    and the one a word's prediction is read from."""
    tokenizer = load_tokenizer(tokenizer_source)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"a token-classification model needs a fast tokenizer (its word_ids map sub-tokens to words); the one at "
            f"{tokenizer_source!r} is a slow {type(tokenizer).__name__}."
        )

    def encode(rows: list[Any]) -> dict[str, torch.Tensor]:
        encoded = tokenizer(rows, is_split_into_words=True, truncation=True, max_length=max_length)
        batch = _padded(tokenizer, encoded)
        starts = torch.zeros(batch["input_ids"].shape, dtype=torch.bool)
        for i in range(len(rows)):
            first = first_subtokens(encoded.word_ids(i))  # training's alignment rule
            starts[i, : len(first)] = torch.tensor(first, dtype=torch.bool)
        return {**batch, "word_starts": starts}

    return encode


def _padded(tokenizer: Any, encoded: Any) -> dict[str, torch.Tensor]:
    """Padded as training's collators pad (after truncation, to a multiple of 8 whatever max_length is: the
    tokenizer refuses both in one call when max_length is not a multiple)."""
    return dict(tokenizer.pad(encoded, padding=True, pad_to_multiple_of=PAD_TO_MULTIPLE_OF, return_tensors="pt"))


def timm_image_encoder(data_config: dict[str, Any]) -> Encode:
    """timm's eval transform for the data config training used (resize, center crop, normalise)."""
    from timm.data import create_transform

    from peft_ladder.hub.files import DATA_KEYS

    transform = create_transform(**{k: data_config[k] for k in DATA_KEYS if k in data_config}, is_training=False)

    def encode(images: list[Any]) -> dict[str, torch.Tensor]:
        return {"pixel_values": torch.stack([transform(open_image(item)) for item in images])}

    return encode


def processor_image_encoder(folder: Path, trust_remote_code: bool = False) -> Encode:
    """The image processor saved with a transformers export (what `pipeline("image-classification")` uses)."""
    from transformers import AutoImageProcessor

    with library_quiet():
        processor = AutoImageProcessor.from_pretrained(str(folder), trust_remote_code=trust_remote_code)

    def encode(images: list[Any]) -> dict[str, torch.Tensor]:
        pixels = processor([open_image(item) for item in images], return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixels}

    return encode

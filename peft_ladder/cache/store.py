"""Cached activations on disk: one datasets Arrow file per (fingerprint), written once, then memory-mapped.

A file is written under a temporary name and renamed into place when complete, so an interrupted
extraction leaves nothing that a later run could mistake for a finished cache. A JSON sidecar says
what the rows hold (the shape of one row, whether rows are token sequences of varying length).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, Features, List, Value
from datasets.arrow_writer import ArrowWriter

from peft_ladder.io import replace_atomic, write_text_atomic
from peft_ladder.tasks import pad_rows

logger = logging.getLogger(__name__)

# A row's label as stored: a class id; a 0/1 row over the labels (multi-label); a regression target; a tagger's
# tag per stored token (IGNORE where no word starts), with its words' tags beside it (`word_labels`: the metrics
# score every word, those max_length cut off included).
LABEL_FEATURES = {
    "class": Value("int64"),
    "multi_hot": List(Value("float32")),
    "value": Value("float64"),
    "tokens": List(Value("int64")),
}


def features(labels: str) -> Features:
    columns = {"activations": List(Value("float32")), "length": Value("int32"), "labels": LABEL_FEATURES[labels]}
    if labels == "tokens":
        columns["word_labels"] = List(Value("int64"))
    return Features(columns)


def label_kind(batch: dict[str, list]) -> str:
    """How a batch's labels are stored, from its columns and first label (a Python value)."""
    if "word_labels" in batch:
        return "tokens"
    first = batch["labels"][0]
    if isinstance(first, list):
        return "multi_hot"
    return "value" if isinstance(first, float) else "class"


@dataclass
class StoredMeta:
    """What one cache file holds.

    Attributes:
        row_shape: shape of one row's activations; for token rows, the shape of one token.
        tokens: rows are token sequences of varying length (`length` tokens each).
        rows: number of rows.
        describe: what was cached, for logs.
        labels: how each row's label is stored (class id, 0/1 row, or value).
    """

    row_shape: list[int]
    tokens: bool
    rows: int
    describe: str
    labels: str = "class"  # a key of LABEL_FEATURES


class TooLarge(RuntimeError):
    """The activations would exceed the cache's size limit."""


def default_cache_dir() -> Path:
    """`$PEFT_LADDER_CACHE`, else `peft_ladder/activations` under the datasets cache (`HF_DATASETS_CACHE`)."""
    from datasets import config

    env = os.environ.get("PEFT_LADDER_CACHE")
    return Path(env) if env else Path(config.HF_DATASETS_CACHE) / "peft_ladder" / "activations"


class ActivationStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.root / f"{key}.arrow", self.root / f"{key}.json"

    def load(self, key: str) -> tuple[Dataset, StoredMeta] | None:
        arrow, sidecar = self._paths(key)
        if not (arrow.exists() and sidecar.exists()):
            return None
        try:
            meta = StoredMeta(**json.loads(sidecar.read_text()))
            stored = Dataset.from_file(str(arrow))
            if len(stored) != meta.rows:
                raise ValueError(f"{len(stored)} rows where {meta.rows} were written")
        except Exception as err:  # noqa: BLE001 - whatever a damaged file raises, the entry is extracted again
            logger.warning(f"cache: the entry {arrow} is damaged ({type(err).__name__}: {err}); extracting it again")
            arrow.unlink(missing_ok=True)
            sidecar.unlink(missing_ok=True)
            return None
        return stored, meta

    def write(
        self,
        key: str,
        batches: Iterable[dict[str, list]],
        meta_of_first: Callable[[dict[str, list]], StoredMeta],
        total_rows: int,
        max_bytes: float,
    ) -> tuple[Dataset, StoredMeta]:
        """Write `batches` (columns activations, length, labels[, word_labels]) and return the stored dataset.

        Args:
            meta_of_first: called with the first batch, returns the `StoredMeta` (rows filled in later).
            total_rows: rows that will be written, to refuse early when the file would be too large.
            max_bytes: the size limit.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        arrow, sidecar = self._paths(key)
        meta: StoredMeta | None = None

        def write_arrow(tmp: Path) -> None:
            nonlocal meta
            rows, writer = 0, None
            try:
                for batch in batches:
                    if meta is None:
                        meta = meta_of_first(batch)
                        meta.labels = label_kind(batch)
                        writer = ArrowWriter(features=features(meta.labels), path=str(tmp))
                        per_row = sum(len(a) for a in batch["activations"]) * 4 / len(batch["activations"])
                        if per_row * total_rows > max_bytes:
                            raise TooLarge(
                                f"{per_row * total_rows / 2**30:.2f} GiB of activations for {total_rows} rows is "
                                f"above cache.max_gib={max_bytes / 2**30:g}"
                            )
                    writer.write_batch(batch)
                    rows += len(batch["labels"])
                if writer is None:
                    raise ValueError(f"no rows to cache for {key}: the split is empty.")
                writer.finalize()
            finally:
                if writer is not None:
                    writer.close()
            meta.rows = rows

        def write_entry(tmp: Path) -> None:
            write_arrow(tmp)
            write_text_atomic(sidecar, json.dumps(asdict(meta)))

        # The sidecar is renamed into place first and the .arrow last: an entry exists only when complete.
        replace_atomic(arrow, write_entry)
        return Dataset.from_file(str(arrow)), meta


def _labels(column: Any, kind: str) -> torch.Tensor:
    """Class ids (long); 0/1 rows (float32, [N, labels]); targets (float32, as the data pipeline gives them)."""
    if kind == "multi_hot":
        return torch.tensor(column.to_pylist(), dtype=torch.float32)
    values = column.to_numpy()
    return torch.tensor(values, dtype=torch.float32 if kind == "value" else torch.long)


def to_tensors(dataset: Dataset, meta: StoredMeta) -> dict[str, torch.Tensor]:
    """The stored rows as tensors: `activations` [N, *row_shape] (token rows padded to the longest, with an
    `attention_mask`) and `labels` [N] (a tagger's: [N, tokens] beside `word_labels` [N, words], IGNORE-padded)."""
    table = dataset.data.table
    column = table.column("activations").combine_chunks()
    # Copied out of the memory-mapped file: training reads these many times, and torch wants writable memory.
    flat = torch.from_numpy(np.array(column.flatten().to_numpy(zero_copy_only=False), dtype=np.float32))
    n = len(dataset)
    if not meta.tokens:
        return {"activations": flat.reshape(n, *meta.row_shape), "labels": _labels(table.column("labels"), meta.labels)}
    lengths = torch.tensor(table.column("length").to_numpy(), dtype=torch.long)
    width = int(np.prod(meta.row_shape))
    rows = torch.split(flat.reshape(-1, width), lengths.tolist())
    padded = torch.nn.utils.rnn.pad_sequence(list(rows), batch_first=True)
    mask = torch.arange(padded.shape[1])[None, :] < lengths[:, None]
    out = {"activations": padded.reshape(n, padded.shape[1], *meta.row_shape), "attention_mask": mask.long()}
    if meta.labels == "tokens":
        out["labels"] = torch.from_numpy(pad_rows(table.column("labels").to_pylist(), padded.shape[1]))
        out["word_labels"] = torch.from_numpy(pad_rows(table.column("word_labels").to_pylist()))
    else:
        out["labels"] = _labels(table.column("labels"), meta.labels)
    return out

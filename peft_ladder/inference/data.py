"""The rows to predict or evaluate: read with training's own reader (`load_raw`: csv / tsv / json / jsonl / parquet,
an image folder, a Hub dataset), one split chosen, the input (and label) column found, labels mapped to the model's
ids by name, and batched with the model's preprocessing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Image
from torch.utils.data import DataLoader

from peft_ladder.config import DataConfig
from peft_ladder.data.splits import load_raw
from peft_ladder.inference.model import Encode, Predictor
from peft_ladder.logs import library_quiet
from peft_ladder.tasks import IGNORE, pad_rows

# The column names training guesses when a recipe names none (peft_ladder/data/splits.py), so that a model trained
# on guessed columns reads new files of the same shape without options.
TEXT_NAMES = ("text", "sentence", "content", "document", "review", "question")
IMAGE_NAMES = ("image", "img", "picture")
LABEL_NAMES = ("label", "labels", "class", "target", "category")
# A tagger's rows: a list of words (or a text, split on whitespace) and one tag per word.
WORD_NAMES = ("tokens", "words", *TEXT_NAMES)
TAG_NAMES = ("ner_tags", "tags", "labels", "label")
# Files `load_raw` reads by their suffix: a missing one is a mistyped path, not a Hub dataset id.
FILE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet")
LABEL_IDS = "_label_id"  # the model's label id of each row, beside the input column
SHOWN = 5  # unknown labels, and rows of each, named in an error


@dataclass
class Rows:
    """One split, ready to batch.

    Attributes:
        dataset: the input column (images left undecoded, so that a broken file is named), and the label ids.
        input_column, label_column: the columns read (label_column None when predicting).
        labels: the model's label id of each row, when evaluating.
        paths: each image's file, when the rows name files (image folders, csv columns of paths).
        where: the data and split, in words.
    """

    dataset: Dataset
    input_column: str
    label_column: str | None
    labels: np.ndarray | None
    paths: list[str | None] | None
    where: str


def read_split(
    data: str | Path | Dataset | DatasetDict,
    *,
    split: str | None = None,
    config_name: str | None = None,
    revision: str | None = None,
    encoding: str = "utf-8",
) -> tuple[Dataset, str]:
    """One split of `data` and its description.

    Args:
        data: a csv / tsv / json / jsonl / parquet file, an image folder (`<split>/<class>/<image>` or images
            directly), a Hub dataset id, or a `datasets` Dataset / DatasetDict already loaded.
        split: default the only split, else `test`.
        config_name, revision: of a Hub dataset.
        encoding: of a csv file.
    """
    if isinstance(data, Dataset):
        return data, "the dataset given"
    if isinstance(data, DatasetDict):
        raw, name = data, "the dataset given"
    else:
        name = str(data)
        path = Path(name).expanduser()
        if not path.exists() and (path.suffix.lower() in FILE_SUFFIXES or name.startswith((".", "/", "~"))):
            raise FileNotFoundError(
                f"{name} does not exist; pass a csv / tsv / json / jsonl / parquet file, an image folder or a Hub "
                "dataset id."
            )
        config = DataConfig(
            dataset=str(path) if path.exists() else name, config_name=config_name, revision=revision, encoding=encoding
        )
        with library_quiet():  # no "Generating split" bar: the prediction's own bar follows
            raw = load_raw(config)
    if split is None:
        if len(raw) != 1 and "test" not in raw:
            raise ValueError(f"{name} has the splits {list(raw)}: choose one with --split (split=...).")
        split = next(iter(raw)) if len(raw) == 1 else "test"
    elif split not in raw:
        raise ValueError(f"--split {split!r} is not a split of {name}; its splits are {list(raw)}.")
    return raw[split], name if len(raw) == 1 else f"{name} (split {split})"


def prepare_rows(
    ds: Dataset,
    predictor: Predictor,
    where: str,
    *,
    text_column: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    with_labels: bool = False,
) -> Rows:
    """Find the input (and label) column of `ds`: the one named, else the one training read, else training's
    guesses; map labels to the model's ids by name (an unknown label is an error naming it and its rows)."""
    if len(ds) == 0:
        raise ValueError(f"{where} has no rows.")
    ds = ds.with_format(None)
    defaults = predictor.defaults
    if predictor.modality == "image":
        images = [c for c, f in ds.features.items() if isinstance(f, Image)]
        names = (*IMAGE_NAMES, *(images[:1] if len(images) == 1 else []))
        column = _pick(ds, where, image_column, defaults.image_column, names, "--image-column")
    elif predictor.task.per_token:
        column = _pick(ds, where, text_column, defaults.text_column, WORD_NAMES, "--text-column")
        words = word_rows(ds[column], column, where)
    else:
        column = _pick(ds, where, text_column, defaults.text_column, TEXT_NAMES, "--text-column")
        _check_texts(ds[column], column, where)
    labels = None
    if with_labels:
        guesses = TAG_NAMES if predictor.task.per_token else LABEL_NAMES
        label_column = _pick(ds, where, label_column, defaults.label_column, guesses, "--label-column")
        if predictor.task.name == "single_label":
            labels = label_ids(ds, label_column, predictor.label_names, where)
        elif predictor.task.per_token:
            labels = tag_ids(ds, label_column, words, predictor.label_names, where)
        else:
            labels = task_targets(ds, label_column, predictor, where)
    else:
        label_column = None
    # Words as the tokenizer takes them (a text cell split on whitespace).
    inputs = Dataset.from_dict({column: words}) if predictor.task.per_token else ds.select_columns([column])
    paths = None
    if predictor.modality == "image":
        inputs = inputs.cast_column(column, Image(decode=False))
        paths = [item.get("path") for batch in inputs.iter(batch_size=256) for item in batch[column]]
        paths = paths if any(paths) else None
    if labels is not None:
        inputs = inputs.add_column(LABEL_IDS, labels.tolist())
    return Rows(inputs, column, label_column, labels, paths, where)


def label_ids(ds: Dataset, column: str, label_names: list[str], where: str) -> np.ndarray:
    """Each row's label as the model's id, matched by name (`str` of the value, as training named classes)."""
    feature = ds.features[column]
    index = {name: i for i, name in enumerate(label_names)}
    ids = np.empty(len(ds), dtype=np.int64)
    unknown: dict[str, list[int]] = {}
    for row, value in enumerate(ds[column]):
        if isinstance(feature, ClassLabel) and value is not None:
            value = feature.int2str(value) if value >= 0 else None
        empty = value is None or value == "" or (isinstance(value, float) and value != value)
        name = "(empty)" if empty else str(value)
        if name in index:
            ids[row] = index[name]
        else:
            unknown.setdefault(name, []).append(row)
    if unknown:
        listed = "; ".join(
            f"{name!r} (rows {', '.join(map(str, rows[:SHOWN]))}{', ...' if len(rows) > SHOWN else ''})"
            for name, rows in list(unknown.items())[:SHOWN]
        )
        more = f" and {len(unknown) - SHOWN} more" if len(unknown) > SHOWN else ""
        raise ValueError(
            f"{where}: column {column!r} holds labels the model does not know: {listed}{more}. The model's labels are "
            f"{label_names}; drop or rename those rows, or name the right column with --label-column."
        )
    return ids


def task_targets(ds: Dataset, column: str, predictor: Any, where: str) -> np.ndarray:
    """A multi-label model's 0/1 rows over its label names, or a regression model's targets; a row that does not
    hold one (or names a label the model does not know) is an error naming the column and rows."""
    from peft_ladder.data.targets import label_list, multi_hot, target_value

    task, names = predictor.task.name, predictor.label_names
    index = {name: i for i, name in enumerate(names)}
    parsed = [(label_list if task == "multi_label" else target_value)(v) for v in ds[column]]
    bad = [row for row, value in enumerate(parsed) if value is None]
    unknown = sorted({n for value in parsed if value is not None and task == "multi_label" for n in value} - set(index))
    if bad or unknown:
        what = (
            f"rows {', '.join(map(str, bad[:SHOWN]))} hold no "
            + ("list of label names" if task == "multi_label" else "finite number")
            if bad
            else f"labels the model does not know: {unknown[:SHOWN]} (its labels are {names})"
        )
        raise ValueError(
            f"{where}: column {column!r} is the {task} model's target, but {what}; fix those rows, or name the right "
            "column with --label-column."
        )
    if task == "regression":
        return np.asarray(parsed, dtype=np.float64)
    return np.asarray([multi_hot(value, index) for value in parsed], dtype=np.float32).reshape(len(parsed), len(names))


def word_rows(values: list[Any], column: str, where: str) -> list[list[str]]:
    """Each row's words: a list of strings as written, or a text split on whitespace; anything else is an error
    naming the rows."""
    words, bad = [], []
    for row, value in enumerate(values):
        if isinstance(value, str):
            value = value.split()
        if not isinstance(value, (list, tuple)) or not all(isinstance(w, str) for w in value):
            bad.append(row)
            continue
        words.append(list(value))
    if bad:
        raise ValueError(
            f"{where}: column {column!r} has no words in {len(bad)} row(s), e.g. rows {', '.join(map(str, bad[:SHOWN]))}: "
            "a tagger reads a list of words per row (or a text, split on whitespace); fix those rows or name the "
            "column with --text-column."
        )
    return words


def tag_ids(ds: Dataset, column: str, words: list[list[str]], tag_names: list[str], where: str) -> np.ndarray:
    """Each row's tags as the model's ids (n, most words) padded with IGNORE: names, or a `Sequence(ClassLabel)`
    column's ids read by their names; a row without one known tag per word is an error naming the rows."""
    from peft_ladder.data.targets import tag_reader, word_tags

    read, index = tag_reader(ds, column), {name: i for i, name in enumerate(tag_names)}
    ids, bad, unknown = [], [], set()
    for row, (value, row_words) in enumerate(zip(ds[column], words)):
        tags = word_tags(read(value) if isinstance(value, (list, tuple)) else value, row_words)
        if tags is None:
            bad.append(row)
            continue
        unknown |= set(tags) - set(index)
        ids.append([index.get(t, 0) for t in tags])
    if bad or unknown:
        what = (
            f"rows {', '.join(map(str, bad[:SHOWN]))} do not hold one tag per word"
            if bad
            else f"tags the model does not know: {sorted(unknown)[:SHOWN]} (its tags are {tag_names})"
        )
        raise ValueError(
            f"{where}: column {column!r} is the tagger's target, but {what}; fix those rows, or name the right "
            "column with --label-column."
        )
    return pad_rows(ids)


def batches(rows: Rows, encode: Encode, batch_size: int) -> DataLoader:
    """Batches in row order: the model's inputs, and `labels` when the rows have them (a tagger's batch always has
    them, as training's: tags at each word's first sub-token, `word_labels` per word; zeros when predicting)."""

    def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = encode([item[rows.input_column] for item in items])
        if "word_starts" in batch:
            tags = [
                [t for t in item[LABEL_IDS] if t != IGNORE]
                if rows.labels is not None
                else [0] * len(item[rows.input_column])
                for item in items
            ]
            starts = batch.pop("word_starts")
            return {**batch, **aligned_tags(starts, tags)}
        if rows.labels is not None:
            batch["labels"] = torch.tensor([item[LABEL_IDS] for item in items])
            if batch["labels"].dtype == torch.float64:  # regression targets: the model's dtype
                batch["labels"] = batch["labels"].float()
        return batch

    return DataLoader(rows.dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)


def aligned_tags(word_starts: torch.Tensor, tags: list[list[int]]) -> dict[str, torch.Tensor]:
    """A tagger's `labels` as training aligned them (each word's tag at its first sub-token, IGNORE elsewhere; the
    words past the tokenizer's cut have no position) and `word_labels` (B, most words) padded with IGNORE."""
    labels = torch.full(word_starts.shape, IGNORE, dtype=torch.long)
    for i, row in enumerate(tags):
        positions = word_starts[i].nonzero().flatten()
        kept = min(len(positions), len(row))
        labels[i, positions[:kept]] = torch.as_tensor(row[:kept], dtype=torch.long)
    return {"labels": labels, "word_labels": torch.as_tensor(pad_rows(tags))}


def _pick(
    ds: Dataset, where: str, named: str | None, recorded: str | None, guesses: tuple[str, ...], option: str
) -> str:
    columns = ds.column_names
    if named is not None:
        if named not in columns:
            raise ValueError(f"{option} {named!r} is not a column of {where}; its columns are {columns}.")
        return named
    candidates = (recorded, *guesses) if recorded else guesses
    found = next((c for c in candidates if c in columns), None)
    if found is None:
        raise ValueError(
            f"{where} has none of the columns {list(dict.fromkeys(candidates))}; name the column to read with "
            f"{option}. Its columns are {columns}."
        )
    return found


def _check_texts(values: list[Any], column: str, where: str) -> None:
    bad = [row for row, value in enumerate(values) if not isinstance(value, str)]
    if bad:
        raise ValueError(
            f"{where}: column {column!r} has no text in {len(bad)} row(s), e.g. rows "
            f"{', '.join(map(str, bad[:SHOWN]))}; fill or drop them."
        )

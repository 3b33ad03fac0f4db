"""Load a dataset with `datasets`, find its columns and splits, normalise labels to ids."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import datasets
import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict
from datasets.exceptions import DatasetGenerationError, DatasetNotFoundError
from huggingface_hub.errors import HFValidationError

from peft_ladder.config import DataConfig
from peft_ladder.data.empty import drop_empty, refuse_empty
from peft_ladder.data.images import decodes
from peft_ladder.data.targets import check_targets, encode_targets
from peft_ladder.data.task import resolve_task
from peft_ladder.errors import hub_reason
from peft_ladder.tasks import Task

logger = logging.getLogger(__name__)

# Last in each: the columns of Hub NER datasets (conll2003, wnut_17: `tokens` and `ner_tags`), tried only when none of
# the others is there.
_LABEL_GUESSES = ("label", "labels", "class", "target", "category", "ner_tags")
_TEXT_GUESSES = ("text", "sentence", "content", "document", "review", "question", "tokens")
_IMAGE_GUESSES = ("image", "img", "picture")
_VALIDATION_GUESSES = ("validation", "valid", "val", "dev")
_FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


@dataclass
class Splits:
    """Train/validation(/test) with a `labels` column (class ids; 0/1 vectors for multi-label; numbers for
    regression) and the input column named.

    Attributes:
        decision: validation rows held out from every choice (early stopping, LR, epochs), on which the
            ladder compares rungs; `validation` is then the selection part. None outside the ladder.
        slices: slice name -> row indices into validation (`decision_slices` into decision,
            `test_slices` into test).
        notes: what was guessed or carved, for logs and the transfer note.
        label_names: the model's outputs: class names, label names (multi-label), the target column (regression).
        task: what the run predicts (`peft_ladder.tasks`).
    """

    train: Dataset
    validation: Dataset
    test: Dataset | None
    label_names: list[str]
    input_column: str
    modality: str
    slices: dict[str, list[int]] = field(default_factory=dict)
    test_slices: dict[str, list[int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    decision: Dataset | None = None
    decision_slices: dict[str, list[int]] = field(default_factory=dict)
    task: Task = field(default_factory=Task)

    def eval_splits(self) -> dict[str, Dataset]:
        """Every split that is evaluated, by name (validation first: it drives early stopping)."""
        named = {"validation": self.validation, "decision": self.decision, "test": self.test}
        return {name: ds for name, ds in named.items() if ds is not None}

    def slices_for(self, split: str) -> dict[str, list[int]]:
        return {"validation": self.slices, "decision": self.decision_slices, "test": self.test_slices}.get(split, {})


# Regression targets are stratified by quantile: both parts then span the target's range.
_TARGET_STRATA = 5


def _strata(labels: list, task: str) -> np.ndarray:
    """What the decision hold-out stratifies on: the class; the target's quantile bin (regression); nothing for
    multi-label or tokens (a row's label set, or its tag sequence, is too fine a stratum at a few hundred rows)."""
    if task in ("multi_label", "token_classification"):
        return np.zeros(len(labels), dtype=np.int64)
    labels = np.asarray(labels)
    if task == "regression":
        edges = np.quantile(labels, np.linspace(0, 1, _TARGET_STRATA + 1)[1:-1])
        return np.searchsorted(edges, labels, side="right")
    return labels


def hold_out_decision(splits: Splits, fraction: float, seed: int) -> Splits:
    """Split validation, stratified by label (`_strata`) and seeded, into a selection part (kept as `validation`)
    and a decision part that no choice ever sees.

    Choosing each rung's LR and epoch on the rows its gain is then judged on makes the best of several
    trials look better than it is, more so for the noisier deep rungs (the winner's curse).
    """
    if splits.decision is not None:
        raise ValueError("these splits already hold a decision part.")
    labels = _strata(splits.validation["labels"], splits.task.name)
    rng = np.random.default_rng(seed)
    decision_rows: list[int] = []
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        take = int(round(fraction * len(rows)))
        if len(rows) >= 2:  # both parts see every class that has two rows
            take = min(max(take, 1), len(rows) - 1)
        decision_rows.extend(rows[:take].tolist())
    decision_rows.sort()
    taken = set(decision_rows)
    selection_rows = [i for i in range(len(labels)) if i not in taken]
    if not selection_rows or not decision_rows:
        raise ValueError(
            f"validation has {len(labels)} rows: too few to hold out a decision part; add validation rows."
        )
    position = {row: i for i, row in enumerate(decision_rows)}
    kept = {row: i for i, row in enumerate(selection_rows)}
    return replace(
        splits,
        validation=splits.validation.select(selection_rows),
        decision=splits.validation.select(decision_rows),
        slices={name: [kept[r] for r in rows if r in kept] for name, rows in splits.slices.items()},
        decision_slices={name: [position[r] for r in rows if r in position] for name, rows in splits.slices.items()},
        notes=[
            *splits.notes,
            f"validation split {len(selection_rows)} / {len(decision_rows)}: the first part chooses (early stopping, "
            f"LR), the second only decides (seed {seed})",
        ],
    )


def load_raw(cfg: DataConfig) -> DatasetDict:
    """The dataset as `datasets` loads it: built-in, local files, an image folder, or a Hub id."""
    if cfg.dataset == "stdlib_docstrings":
        from peft_ladder.data.stdlib_docstrings import load_stdlib_docstrings

        return load_stdlib_docstrings()
    path = Path(cfg.dataset)
    if path.is_dir():
        try:
            return datasets.load_dataset("imagefolder", data_dir=str(path))
        except (FileNotFoundError, ValueError) as err:  # datasets' words for a folder without images
            raise ValueError(
                f"data.dataset={cfg.dataset!r}: datasets cannot read it as an image folder ({err}); lay it out as "
                "<split>/<class>/<image> (e.g. train/cat/1.png)."
            ) from err
    if path.suffix in _FILE_BUILDERS or cfg.data_files:
        files = cfg.data_files or {"train": str(path)}
        suffix = Path(next(iter(files.values()))).suffix
        missing = [f for f in files.values() if not Path(f).exists()]
        if missing:
            key = "data.data_files" if cfg.data_files else "data.dataset"
            raise FileNotFoundError(f"{key}: {', '.join(missing)} does not exist; check the path.")
        if suffix not in _FILE_BUILDERS:
            raise ValueError(f"data.data_files: unsupported file type {suffix!r}; use one of {sorted(_FILE_BUILDERS)}.")
        kwargs = {"delimiter": "\t"} if suffix == ".tsv" else {}
        if _FILE_BUILDERS[suffix] == "csv":
            kwargs["encoding"] = cfg.encoding
            _check_encoding(files, cfg.encoding)
        try:
            return datasets.load_dataset(_FILE_BUILDERS[suffix], data_files=files, **kwargs)
        except DatasetGenerationError as err:  # the file does not parse; the cause holds the parser's words
            raise ValueError(
                f"data.data_files ({', '.join(files.values())}): datasets cannot read them as "
                f"{_FILE_BUILDERS[suffix]} ({err.__cause__ or err}); check the delimiter, quoting and header."
            ) from err
        except ValueError as err:  # datasets' words for a file without rows: 'Instruction "x" corresponds to no data!'
            empty = next((split for split in files if f'"{split}" corresponds to no data' in str(err)), None)
            if empty is None:
                raise
            raise ValueError(
                f"the {empty} split is empty: data.data_files.{empty} ({files[empty]}) has no rows."
            ) from None
    try:
        return datasets.load_dataset(cfg.dataset, cfg.config_name, revision=cfg.revision)
    except (DatasetNotFoundError, ConnectionError, HFValidationError) as err:
        reason = hub_reason(err) or " ".join(str(err).split())
        raise FileNotFoundError(
            f"data.dataset={cfg.dataset!r} is neither `stdlib_docstrings`, an existing csv/json/parquet file or "
            f"image folder, nor a dataset datasets can load: {reason}."
        ) from err


def _check_encoding(files: dict[str, str], encoding: str) -> None:
    """A file that does not decode gets one clear message before datasets fails somewhere inside pandas."""
    for split, name in files.items():
        raw = Path(name).read_bytes()
        try:
            raw.decode(encoding)
        except UnicodeDecodeError as err:
            raise ValueError(
                f"data.data_files.{split}: {name} is not {encoding} text (byte 0x{raw[err.start]:02x} at offset "
                f"{err.start}); set data.encoding to the file's encoding, e.g. latin-1 or cp1252."
            ) from None
        except LookupError:
            raise ValueError(
                f"data.encoding={encoding!r} is not an encoding Python knows; use e.g. utf-8, latin-1 or cp1252."
            ) from None


# Rows read to tell the task from the label column.
TASK_SAMPLE = 2000


def make_splits(raw: DatasetDict, cfg: DataConfig, modality: str, seed: int) -> Splits:
    """Pick columns and splits, refuse (or with data.drop_empty drop) rows without input or label, carve a seeded
    validation split if needed, map labels to ids."""
    notes: list[str] = []
    if cfg.train_split not in raw:
        raise ValueError(f"data.train_split={cfg.train_split!r} is not in the dataset; its splits are {list(raw)}.")
    columns = raw[cfg.train_split].column_names
    label_col = _column(cfg.label_column, _LABEL_GUESSES, columns, "label_column", notes)
    guesses = _IMAGE_GUESSES if modality == "image" else _TEXT_GUESSES
    explicit = cfg.image_column if modality == "image" else cfg.text_column
    input_key = "image_column" if modality == "image" else "text_column"
    input_col = _column(explicit, guesses, columns, input_key, notes)

    val_name = cfg.validation_split or next((s for s in _VALIDATION_GUESSES if s in raw), None)
    if cfg.validation_split and cfg.validation_split not in raw:
        raise ValueError(
            f"data.validation_split={cfg.validation_split!r} is not in the dataset; its splits are {list(raw)}."
        )
    test_name = cfg.test_split or ("test" if "test" in raw else None)
    if cfg.test_split and cfg.test_split not in raw:
        raise ValueError(f"data.test_split={cfg.test_split!r} is not in the dataset; its splits are {list(raw)}.")
    # Before anything counts or hashes the labels: a list per row is not a class.
    sample = raw[cfg.train_split].select(range(min(len(raw[cfg.train_split]), TASK_SAMPLE)))
    task, note = resolve_task(cfg.task, label_col, sample[label_col], lambda: sample[input_col])
    notes.append(note)
    read = _usable_rows(
        raw, [cfg.train_split, val_name, test_name], {"label_column": label_col, input_key: input_col}, cfg, notes, task
    )
    train, test = read[cfg.train_split], read.get(test_name)

    if val_name is None:
        stratify = label_col if isinstance(train.features[label_col], ClassLabel) else None
        try:
            parts = train.train_test_split(test_size=cfg.validation_fraction, seed=seed, stratify_by_column=stratify)
        except ValueError as err:  # too few rows to carve (a stratified carve needs a row per class)
            raise ValueError(
                f"no validation split, and data.validation_fraction={cfg.validation_fraction} of the {len(train)} "
                f"train rows is too few to carve one ({err}{_rare_classes(train[label_col])}); give a validation split "
                "(data.validation_split, or data.data_files.validation) or raise data.validation_fraction."
            ) from None
        if task == "single_label":  # other tasks' unseen labels are named by encode_targets
            _check_carve(train, parts["train"], parts["test"], label_col, cfg)
        train, validation = parts["train"], parts["test"]
        notes.append(f"no validation split: carved {cfg.validation_fraction:.0%} of train (seed {seed})")
    else:
        validation = read[val_name]

    split_map = {"train": train, "validation": validation, "test": test}
    for split, cap in cfg.max_samples.items():
        if split not in split_map:
            raise ValueError(f"data.max_samples.{split}: unknown split; use train, validation or test.")
        if split_map[split] is not None and cap < len(split_map[split]):
            split_map[split] = split_map[split].shuffle(seed=seed).select(range(cap))
    train, validation, test = split_map["train"], split_map["validation"], split_map["test"]
    for split, ds in (("train", train), ("validation", validation), ("test", test)):
        if ds is not None and len(ds) == 0:
            dropped = ", data.drop_empty" if cfg.drop_empty else ""
            raise ValueError(
                f"the {split} split is empty (after data.max_samples{dropped} and the validation carve); give it rows."
            )
    if modality == "image" and cfg.skip_corrupt_images:
        train, validation, test = (_drop_corrupt(ds, input_col, notes) for ds in (train, validation, test))

    capped = f" (cut to {len(train)} rows by data.max_samples.train)" if "train" in cfg.max_samples else ""
    if task == "single_label":
        label_names, to_id = _label_mapping(train, label_col)
        if len(label_names) < 2:
            raise ValueError(
                f"data.label_column={label_col!r} holds a single class ({label_names}) in the train split: a "
                "classifier needs at least two; check the column or the split."
            )
        train, validation, test = (
            _with_label_ids(ds, label_col, to_id, split, capped) if ds is not None else None
            for split, ds in (("train", train), ("validation", validation), ("test", test))
        )
        run_task = Task()
    else:
        if any(s.column in (label_col, "labels") for s in cfg.slices):
            raise ValueError(
                f"data.slices: a slice on the label column {label_col!r} names classes, and data.task={task} has "
                "none; slice on another column."
            )
        named = {"train": train, "validation": validation, "test": test}
        encoded, label_names, run_task = encode_targets(named, label_col, task, capped)
        train, validation, test = encoded["train"], encoded["validation"], encoded["test"]
    slice_specs = [_slice_on_labels(s.column, s.values, label_col, label_names) for s in cfg.slices]
    slices = {s.name: _slice_rows(validation, *spec, "validation") for s, spec in zip(cfg.slices, slice_specs)}
    test_slices = (
        {s.name: _slice_rows(test, *spec, "test") for s, spec in zip(cfg.slices, slice_specs)}
        if test is not None
        else {}
    )
    for note in notes:
        logger.info(note)
    return Splits(train, validation, test, label_names, input_col, modality, slices, test_slices, notes, task=run_task)


def _usable_rows(
    raw: DatasetDict, names: list[str | None], columns: dict[str, str], cfg: DataConfig, notes: list[str], task: str
) -> dict[str, Dataset]:
    """The splits used, as read: rows without label or input refused naming them (as the file counts rows), or
    with data.drop_empty dropped and counted; then rows whose label is not the task's target (a multi-label row
    that is not a list, a regression target that is not a number) refused, naming them."""
    files = cfg.data_files or ({"train": cfg.dataset} if Path(cfg.dataset).suffix in _FILE_BUILDERS else {})
    read = {}
    for name in dict.fromkeys(n for n in names if n is not None):
        ds = raw[name]
        for key, column in columns.items():
            if column not in ds.column_names:
                raise ValueError(
                    f"data.{key}={column!r} is a column of the {cfg.train_split} split but not of the {name} split; "
                    f"its columns are {ds.column_names}."
                )
        if cfg.drop_empty:
            read[name] = drop_empty(ds, columns, name, notes)
        else:
            refuse_empty(ds, columns, name, files.get(name), cfg.encoding)
            read[name] = ds
        inputs = columns.get("text_column")
        check_targets(read[name], columns["label_column"], task, name, files.get(name), cfg.encoding, inputs)
    return read


def _check_carve(whole: Dataset, train: Dataset, carved: Dataset, label_col: str, cfg: DataConfig) -> None:
    """A carve that leaves a class only in validation: say so, and why (not "never occur in train", which blames
    rows the user never split)."""
    seen = set(train[label_col])
    stranded = sorted({v for v in carved[label_col] if v not in seen}, key=str)
    if not stranded:
        return
    shown = ", ".join(repr(v) for v in stranded[:5])
    raise ValueError(
        f"data.label_column={label_col!r}: there is no validation split, so data.validation_fraction="
        f"{cfg.validation_fraction} of the {len(whole)} train rows was carved off as one, and {len(stranded)} "
        f"class(es) ({shown}{', ...' if len(stranded) > 5 else ''}) landed in it whole, with no row left to train "
        f"on{_rare_classes(whole[label_col])}. Give a validation split (data.validation_split, or "
        "data.data_files.validation), or give those classes more rows (or drop them)."
    )


def _rare_classes(labels: list) -> str:
    """`; N of the K classes have a single row` when some have, else ``."""
    counts = Counter(labels)
    single = sum(1 for n in counts.values() if n < 2)
    if not single:
        return ""
    return (
        f"; {single} of the {len(counts)} classes have a single row, too few for both a training and a validation row"
    )


def _column(explicit: str | None, guesses: tuple[str, ...], columns: list[str], key: str, notes: list[str]) -> str:
    if explicit is not None:
        if explicit not in columns:
            raise ValueError(f"data.{key}={explicit!r} is not a column; the columns are {columns}.")
        return explicit
    found = next((c for c in guesses if c in columns), None)
    if found is None:
        raise ValueError(f"data.{key} is not set and none of {list(guesses)} is a column; the columns are {columns}.")
    notes.append(f"data.{key} guessed as {found!r}")
    return found


def _drop_corrupt(ds: Dataset | None, column: str, notes: list[str]) -> Dataset | None:
    """data.skip_corrupt_images: rows whose image does not decode are dropped, and counted in the notes."""
    if ds is None:
        return None
    raw = ds.cast_column(column, datasets.Image(decode=False))
    keep = [i for i, item in enumerate(raw[column]) if decodes(item)]
    if len(keep) < len(ds):
        notes.append(f"skipped {len(ds) - len(keep)} image(s) that do not decode (data.skip_corrupt_images)")
        logger.warning(notes[-1])
    return ds.select(keep)


def _label_mapping(train: Dataset, label_col: str) -> tuple[list[str], dict]:
    feature = train.features[label_col]
    if isinstance(feature, ClassLabel):
        return list(feature.names), {}
    values = sorted(set(train[label_col]), key=str)
    return [str(v) for v in values], {v: i for i, v in enumerate(values)}


def _with_label_ids(ds: Dataset, label_col: str, to_id: dict, split: str, capped: str) -> Dataset:
    if to_id:
        rows_of: dict = {}
        for row, value in enumerate(ds[label_col]):
            if value not in to_id:
                rows_of.setdefault(value, []).append(row)
        if rows_of:
            unknown = sorted(rows_of, key=str)
            shown = "; ".join(
                f"{v!r} (row{'s' if len(rows_of[v]) > 1 else ''} {', '.join(map(str, rows_of[v][:3]))}"
                f"{', ...' if len(rows_of[v]) > 3 else ''})"
                for v in unknown[:5]
            )
            more = f", and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise ValueError(
                f"data.label_column={label_col!r}: {len(unknown)} label(s) of the {split} split never occur in the "
                f"train split{capped}: {shown}{more} (rows counted from 0 in the {split} split as used, "
                f"{sum(map(len, rows_of.values()))} in all); remove those rows, or add train rows of those classes."
            )
        ds = ds.map(lambda row: {"labels": to_id[row[label_col]]})
        return ds.remove_columns(label_col) if label_col != "labels" else ds
    return ds.rename_column(label_col, "labels") if label_col != "labels" else ds


def _slice_on_labels(column: str, values: list, label_col: str, label_names: list[str]) -> tuple[str, list]:
    """A slice on the label column names classes (`values: [network]`); rows then hold label ids."""
    if column not in (label_col, "labels"):
        return column, values
    ids = []
    for v in values:
        if str(v) in label_names:
            ids.append(label_names.index(str(v)))
        elif isinstance(v, int) and 0 <= v < len(label_names):
            ids.append(v)
        else:
            raise ValueError(f"data.slices: {v!r} is not a class of column {column!r}; the classes are {label_names}.")
    return "labels", ids


def _slice_rows(ds: Dataset, column: str, values: list, split: str) -> list[int]:
    if column not in ds.column_names:
        raise ValueError(f"data.slices: column {column!r} is not in the {split} split; columns: {ds.column_names}.")
    wanted = set(values)
    return [i for i, v in enumerate(ds[column]) if v in wanted]

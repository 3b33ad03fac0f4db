"""`predict` and `evaluate`: run what the ladder chose (or any rung, or an export) on new rows.

`predict` writes one row per input: its index, its image file when it has one, the predicted label name and one
probability per label name (CSV or JSONL, by the file's extension; written atomically). `evaluate` scores a
labelled split with the metrics the run reported and a bootstrap interval over its rows (`ladder/stats.py`), and
writes them as JSON. Both run batch-wise through Accelerate (device and mixed precision) with a progress bar.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from accelerate import Accelerator
from datasets import Dataset, DatasetDict
from tqdm.auto import tqdm

from peft_ladder.evaluation import Evaluation, collect
from peft_ladder.evaluation import evaluate as evaluate_split
from peft_ladder.inference.data import Rows, batches, prepare_rows, read_split
from peft_ladder.inference.model import Predictor
from peft_ladder.inference.results import (
    PREDICTION_SUFFIXES,
    REPORT_SUFFIXES,
    EvaluationReport,
    Predictions,
    check_output,
    write_predictions,
    write_report,
)
from peft_ladder.inference.sources import load_predictor
from peft_ladder.ladder.stats import SUPPORTED_METRICS, bootstrap
from peft_ladder.metrics import check_metrics_for_task, reads_scores
from peft_ladder.tasks import word_predictions

Precision = Literal["no", "fp16", "bf16"]


def predict(
    model: str | Path | Predictor,
    data: str | Path | Dataset | DatasetDict,
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    split: str | None = None,
    text_column: str | None = None,
    image_column: str | None = None,
    data_config: str | None = None,
    data_revision: str | None = None,
    encoding: str = "utf-8",
    batch_size: int = 32,
    mixed_precision: Precision = "no",
    cpu: bool = False,
    progress: bool = True,
    rung: str | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    token: str | None = None,
    base: str | None = None,
    max_length: int | None = None,
) -> Predictions:
    """Predict every row of a split and write the predictions.

    Args:
        model: a train / ladder run folder (its recommended rung), an artifact folder, an export folder
            (`peft-ladder export`), a Hub repo id, or a `Predictor` already loaded (`load_predictor`).
        data: a csv / tsv / json / jsonl / parquet file, an image folder, a Hub dataset id, or a `datasets` Dataset.
        out: a `.csv` or `.jsonl` file (the extension chooses); refused when it exists unless `overwrite`.
        split: default the only split, else `test`.
        text_column, image_column: default the column training read, else training's guesses.
        data_config, data_revision, encoding: a Hub dataset's configuration and revision; a csv file's encoding.
        batch_size: rows per forward pass.
        mixed_precision: Accelerate's: no, fp16 or bf16 (a GPU's).
        cpu: run on the CPU even where a GPU is present.
        progress: show a progress bar.
        rung, trust_remote_code, revision, token, base, max_length: how `model` is loaded (see `load_predictor`).

    Returns:
        The probabilities, in row order, with the label names.
    """
    target = check_output(out, PREDICTION_SUFFIXES, overwrite) if out is not None else None
    _check_batch_size(batch_size)
    ds, where = read_split(data, split=split, config_name=data_config, revision=data_revision, encoding=encoding)
    predictor = _loaded(model, rung, trust_remote_code, revision, token, base, max_length)
    rows = prepare_rows(ds, predictor, where, text_column=text_column, image_column=image_column)
    accelerator = _accelerator(mixed_precision, cpu)
    if predictor.task.per_token:
        predictions = Predictions(
            predictor.label_names,
            _word_tags(accelerator, predictor, rows, batch_size, progress),
            task=predictor.task.name,
            words=rows.dataset[rows.input_column],
        )
    else:
        probabilities = _scores(accelerator, predictor, rows, batch_size, progress)
        predictions = Predictions(
            predictor.label_names,
            probabilities,
            rows.paths,
            task=predictor.task.name,
            threshold=predictor.task.threshold,
        )
    if target is not None and accelerator.is_main_process:
        predictions.out = write_predictions(target, predictions)
    return predictions


def evaluate(
    model: str | Path | Predictor,
    data: str | Path | Dataset | DatasetDict,
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    split: str | None = None,
    text_column: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    data_config: str | None = None,
    data_revision: str | None = None,
    encoding: str = "utf-8",
    metrics: list[str] | None = None,
    confidence: float | None = None,
    bootstrap_samples: int | None = None,
    batch_size: int = 32,
    mixed_precision: Precision = "no",
    cpu: bool = False,
    progress: bool = True,
    rung: str | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    token: str | None = None,
    base: str | None = None,
    max_length: int | None = None,
) -> EvaluationReport:
    """Score a labelled split: the run's metrics with a bootstrap interval over rows, and the loss.

    Args:
        label_column: default the column training read, else training's guesses. Labels are matched to the
            model's by name; a label it does not know is an error naming it and its rows.
        out: a `.json` file for the report; refused when it exists unless `overwrite`.
        metrics: default the metrics the run reported (accuracy and f1_macro for an export).
        confidence, bootstrap_samples: of the intervals; default the run's ladder settings (0.95, 2000).
        The other arguments are `predict`'s.
    """
    target = check_output(out, REPORT_SUFFIXES, overwrite) if out is not None else None
    _check_batch_size(batch_size)
    ds, where = read_split(data, split=split, config_name=data_config, revision=data_revision, encoding=encoding)
    predictor = _loaded(model, rung, trust_remote_code, revision, token, base, max_length)
    defaults = predictor.defaults
    confidence = defaults.confidence if confidence is None else confidence
    if not 0 < confidence < 1:
        raise ValueError(f"confidence (--confidence) {confidence} must be between 0 and 1, e.g. 0.95.")
    samples = defaults.bootstrap_samples if bootstrap_samples is None else bootstrap_samples
    if samples < 1:
        raise ValueError(f"bootstrap_samples (--bootstrap-samples) {samples} must be at least 1, e.g. 2000.")
    rows = prepare_rows(
        ds,
        predictor,
        where,
        text_column=text_column,
        image_column=image_column,
        label_column=label_column,
        with_labels=True,
    )
    names = list(metrics or defaults.metrics)
    if metrics:
        check_metrics_for_task(names, predictor.task.name)
    accelerator = _accelerator(mixed_precision, cpu)
    scored = _scored(accelerator, predictor, rows, names, batch_size, progress)
    intervals = {
        name: bootstrap(
            [scored.scores if reads_scores(name) and scored.scores is not None else scored.predictions],
            scored.labels,
            name,
            samples=samples,
            confidence=confidence,
            tags=predictor.task.tags or None,
        )
        for name in names
        if name in SUPPORTED_METRICS  # the bootstrap's weighted metrics (ladder/stats.py): every builtin one
    }
    report = EvaluationReport(
        model=predictor.origin,
        data=where,
        n=scored.result.n,
        loss=scored.result.loss,
        metrics=scored.result.metrics,
        intervals=intervals,
        recorded=defaults.recorded,
    )
    if target is not None and accelerator.is_main_process:
        report.out = write_report(target, report)
    return report


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size (--batch-size) {batch_size} must be at least 1.")


def _loaded(
    model: str | Path | Predictor,
    rung: str | None,
    trust_remote_code: bool,
    revision: str | None,
    token: str | None,
    base: str | None,
    max_length: int | None,
) -> Predictor:
    predictor = (
        model
        if isinstance(model, Predictor)
        else load_predictor(
            model,
            rung=rung,
            trust_remote_code=trust_remote_code,
            revision=revision,
            token=token,
            base=base,
            max_length=max_length,
        )
    )
    return predictor


def _accelerator(mixed_precision: Precision, cpu: bool) -> Accelerator:
    from peft_ladder.engine import fresh_accelerator_state

    fresh_accelerator_state()  # an earlier Accelerator in this process may have set another precision
    return Accelerator(mixed_precision=mixed_precision, cpu=cpu)


def _autocast(accelerator: Accelerator, predictor: Predictor) -> Callable[[torch.nn.Module, dict], torch.Tensor]:
    """The predictor's forward under Accelerate's autocast (the model itself is left unpatched)."""

    def forward(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with accelerator.autocast():
            return predictor.forward(model, batch)

    return forward


def _progress(loader: Iterable, accelerator: Accelerator, show: bool, what: str) -> Iterable:
    return tqdm(loader, desc=what, unit="batch", disable=not (show and accelerator.is_local_main_process))


@torch.inference_mode()
def _scores(accelerator: Accelerator, predictor: Predictor, rows: Rows, batch_size: int, progress: bool) -> np.ndarray:
    """Per row: class probabilities (softmax), each label's probability (multi-label), or the predicted value."""
    model = predictor.model.to(accelerator.device).eval()
    loader = accelerator.prepare_data_loader(batches(rows, predictor.encode, batch_size))
    forward = _autocast(accelerator, predictor)
    chunks = []
    for batch in _progress(loader, accelerator, progress, "predict"):
        logits = forward(model, batch).float()
        chunks.append(accelerator.gather_for_metrics(logits).cpu())
    return predictor.task.scores(torch.cat(chunks))


@torch.inference_mode()
def _word_tags(
    accelerator: Accelerator, predictor: Predictor, rows: Rows, batch_size: int, progress: bool
) -> np.ndarray:
    """A tagger's tag id per word (n, most words; IGNORE past a row's last word), read at each word's first
    sub-token as training scored it; a word past the tokenizer's cut gets the run's fill tag."""
    model = predictor.model.to(accelerator.device).eval()
    loader = accelerator.prepare_data_loader(batches(rows, predictor.encode, batch_size))
    outputs = collect(
        accelerator, model, _autocast(accelerator, predictor), _progress(loader, accelerator, progress, "predict")
    )
    tokens = predictor.task.predictions(outputs.logits)
    return word_predictions(tokens, outputs.labels.numpy(), outputs.word_labels.numpy(), predictor.task.fill_tag)


def _scored(
    accelerator: Accelerator, predictor: Predictor, rows: Rows, metrics: list[str], batch_size: int, progress: bool
) -> Evaluation:
    """The project's evaluation loop (loss, metrics, predictions in row order) over the rows."""
    model = predictor.model.to(accelerator.device).eval()
    loader = accelerator.prepare_data_loader(batches(rows, predictor.encode, batch_size))
    return evaluate_split(
        accelerator,
        model,
        _autocast(accelerator, predictor),
        _progress(loader, accelerator, progress, "evaluate"),
        metrics,
        task=predictor.task,
    )

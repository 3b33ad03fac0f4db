"""What `predict` and `evaluate` hand back, and how it is written: predictions as CSV or JSONL (one row per input:
its index, its image file when it has one, the predicted label name, one probability per label name), a report as
JSON; each file written atomically (a temporary file beside it, then a rename) and refused when it exists unless
asked to replace it."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from peft_ladder.io import replace_atomic, write_text_atomic
from peft_ladder.ladder.stats import Interval
from peft_ladder.tasks import IGNORE, MULTI_LABEL_THRESHOLD

PREDICTION_SUFFIXES = (".csv", ".jsonl")
REPORT_SUFFIXES = (".json",)
PROBABILITY_PREFIX = "prob_"


@dataclass
class Predictions:
    """Every row's scores, in row order.

    Attributes:
        label_names: the model's outputs (classes; labels of a multi-label model; a regression's target column),
            index = column of `probabilities`.
        probabilities: (rows, classes) softmax of the logits; (rows, labels) each label's sigmoid (multi-label);
            (rows,) the predicted value (regression).
        paths: each row's image file, when the rows name files.
        out: the file written, if any.
        task: single_label | multi_label | regression.
        threshold: multi_label: a label is predicted when its probability passes this (the run's, chosen on its
            validation rows).
        words: token_classification: each row's words; `probabilities` then holds each word's tag id (rows, most
            words), padded with IGNORE.
    """

    label_names: list[str]
    probabilities: np.ndarray
    paths: list[str | None] | None = None
    out: Path | None = None
    task: str = "single_label"
    threshold: float = MULTI_LABEL_THRESHOLD
    words: list[list[str]] | None = None

    @property
    def ids(self) -> np.ndarray:
        """Class ids (n,); a 0/1 matrix over the labels (multi-label)."""
        if self.task == "multi_label":
            return (self.probabilities > self.threshold).astype(np.int64)
        return self.probabilities.argmax(-1)

    @property
    def labels(self) -> list[Any]:
        """The predicted label name of each row; the list of predicted labels (multi-label); the value (regression);
        the tag of each word (token classification)."""
        if self.task == "token_classification":
            return [[self.label_names[t] for t in row[row != IGNORE]] for row in self.probabilities]
        if self.task == "regression":
            return self.probabilities.tolist()
        if self.task == "multi_label":
            return [[name for name, on in zip(self.label_names, row) if on] for row in self.ids]
        return [self.label_names[i] for i in self.ids]

    def records(self) -> list[dict[str, Any]]:
        """The rows as written: `row`, `path` (image files only), then `label` and `prob_<label name>` per class;
        multi-label: `labels` (the predicted names, `;`-joined in a CSV) and `prob_<label name>` per label;
        regression: `prediction`, the value in the target's units; token classification: `words` and `tags`, one
        tag per word (space-joined in a CSV)."""
        records = []
        for row, label in enumerate(self.labels):
            record: dict[str, Any] = {"row": row}
            if self.paths is not None:
                record["path"] = self.paths[row]
            if self.task == "token_classification":
                record.update(words=self.words[row], tags=label)
                records.append(record)
                continue
            if self.task == "regression":
                record["prediction"] = label
                records.append(record)
                continue
            record["labels" if self.task == "multi_label" else "label"] = label
            probs = self.probabilities[row].tolist()
            record.update({f"{PROBABILITY_PREFIX}{name}": p for name, p in zip(self.label_names, probs)})
            records.append(record)
        return records


@dataclass
class EvaluationReport:
    """A labelled split scored: the run's metrics, each with its bootstrap interval over rows.

    Attributes:
        model, data: what was evaluated on what, in words.
        n: rows; loss: the task's mean loss (cross-entropy for single-label).
        metrics: metric name -> value.
        intervals: metric name -> its percentile bootstrap interval (accuracy and f1_macro).
        recorded: the run's own metrics per split, for comparison (empty for an export).
        out: the JSON file written, if any.
    """

    model: str
    data: str
    n: int
    loss: float
    metrics: dict[str, float]
    intervals: dict[str, Interval]
    recorded: dict[str, dict[str, float]] = field(default_factory=dict)
    out: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "data": self.data,
            "n": self.n,
            "loss": self.loss,
            "metrics": self.metrics,
            "intervals": {name: interval.to_dict() for name, interval in self.intervals.items()},
            "recorded": self.recorded,
        }

    def summary(self) -> str:
        """A few lines: each metric with its interval, the loss, and what the run itself measured."""
        lines = [f"{self.model} on {self.data}: {self.n} rows"]
        width = max(map(len, self.metrics), default=0)
        for name, value in self.metrics.items():
            interval = self.intervals.get(name)
            span = (
                f"  [{interval.low:.4f}, {interval.high:.4f}] {interval.confidence:.0%} bootstrap interval"
                if interval
                else ""
            )
            lines.append(f"  {name:<{width}}  {value:.4f}{span}")
        lines.append(f"  {'loss':<{width}}  {self.loss:.4f}")
        for split, metrics in self.recorded.items():
            recorded = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            lines.append(f"  (the run measured on its {split} split: {recorded})")
        return "\n".join(lines)


def write_predictions(path: Path, predictions: Predictions) -> Path:
    """Write `predictions` to a `.csv` or `.jsonl` file atomically (temporary file beside it, then rename)."""
    records = predictions.records()
    if path.suffix.lower() == ".csv":
        if predictions.task == "multi_label":  # a CSV cell holds one value: the names, joined
            records = [{**r, "labels": ";".join(r["labels"])} for r in records]
        if predictions.task == "token_classification":  # words and their tags, space-joined in the same order
            records = [{**r, "words": " ".join(r["words"]), "tags": " ".join(r["tags"])} for r in records]
        fields = list(records[0]) if records else ["row", "label"]

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
                writer.writeheader()
                writer.writerows(records)

    else:

        def write(tmp: Path) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(record) + "\n" for record in records)

    return replace_atomic(path, write)


def write_report(path: Path, report: EvaluationReport) -> Path:
    """Write `report` as JSON atomically."""
    return write_text_atomic(path, json.dumps(report.to_dict(), indent=2) + "\n")


def check_output(out: str | Path, suffixes: tuple[str, ...], overwrite: bool) -> Path:
    """Checked before any work: the extension chooses the format, and an existing file needs `overwrite`."""
    path = Path(out)
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"--out {out}: the file's extension chooses the format; use {' or '.join(suffixes)}.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite (overwrite=True) or choose another file.")
    if path.is_dir():
        raise IsADirectoryError(f"--out {out} is a folder: name a file in it.")
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise NotADirectoryError(f"--out {out}: {blocking} is a file, not a folder: choose another path.")
    return path

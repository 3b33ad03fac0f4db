"""Multi-label and regression through `train`: the task is read from the label column, the model trains with the
task's loss, evaluation reports the task's metrics in the target's own units, and the artifact records the task;
bad targets are one error naming the column and rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from task_data import TAGS, tagged_images, task_rows, write_rows, write_splits

from peft_ladder import load_adapted
from peft_ladder.build import build_splits
from peft_ladder.config import load_config
from peft_ladder.engine import Engine
from peft_ladder.strategies import get_strategy, list_strategies
from peft_ladder.tasks import choose_threshold

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "tiny" / "minilm_1layer.yaml"


@pytest.fixture(scope="module")
def task_data(tmp_path_factory) -> dict[str, str]:
    return write_splits(tmp_path_factory.mktemp("task_data"), {"train": 96, "validation": 48, "test": 48})


def _config(tmp_path: Path, data: dict[str, str], label: str, *overrides: str):
    return load_config(
        TINY,
        [
            f"output_dir={tmp_path / 'run'}",
            "data.dataset=json",
            *(f"data.data_files.{split}={path}" for split, path in data.items()),
            "data.text_column=text",
            f"data.label_column={label}",
            *overrides,
        ],
    )


@pytest.mark.parametrize("strategy", ["linear_probe", "lora"])
def test_a_list_of_labels_per_row_trains_a_multi_label_model(tmp_path, task_data, strategy):
    engine = Engine(_config(tmp_path, task_data, "tags", f"strategy.name={strategy}", "train.epochs=2"))
    results = engine.run()
    # The threshold is the validation rows' best micro-F1, and every split is predicted with it.
    validation_labels = engine.predictions["validation"][1]
    threshold, _ = choose_threshold(engine.scores["validation"], validation_labels)
    assert results.task == {"name": "multi_label", "threshold": threshold}
    for split, (predicted, _) in engine.predictions.items():
        assert (predicted == (engine.scores[split] > threshold)).all(), split
    validation = results.splits["validation"]
    assert set(validation.metrics) == {"map", "f1_micro", "f1_macro", "subset_accuracy"}
    # The tag words are in the text: even one frozen layer separates them far above an all-negative guess (0).
    assert validation.metrics["f1_micro"] > 0.5 and validation.metrics["map"] > 0.5
    meta = json.loads((tmp_path / "run" / "artifact" / "peft_ladder.json").read_text())
    assert meta["task"] == results.task and list(meta["label2id"]) == sorted(TAGS)
    restored = load_adapted(tmp_path / "run" / "artifact")
    assert restored.backbone.num_labels == len(TAGS)
    if strategy == "linear_probe":
        assert results.solver["estimator"] == "multilabel_logistic" and results.solver["converged"]


def test_the_threshold_is_the_best_micro_f1_and_ties_go_to_one_half():
    truth = np.array([[1, 0], [1, 0], [0, 1], [0, 0]])
    # Label 0's positives sit at 0.3 and 0.35, every negative below 0.2: any threshold in [0.2, 0.3) finds all.
    probabilities = np.array([[0.3, 0.1], [0.35, 0.1], [0.1, 0.9], [0.15, 0.05]])
    threshold, f1 = choose_threshold(probabilities, truth)
    assert threshold == 0.25 and f1 == 1.0
    assert choose_threshold(np.array([[0.9, 0.1]]), np.array([[1, 0]]))[0] == 0.5  # 0.1 .. 0.85 all tie


@pytest.mark.parametrize("strategy", ["linear_probe", "full"])
def test_a_number_per_row_trains_a_regression_reported_in_its_own_units(tmp_path, task_data, strategy):
    config = _config(tmp_path, task_data, "score", f"strategy.name={strategy}", "train.epochs=3")
    engine = Engine(config)
    results = engine.run()
    train_scores = np.array([r["score"] for r in map(json.loads, Path(task_data["train"]).read_text().splitlines())])
    assert results.task["name"] == "regression"
    assert results.task["target_mean"] == pytest.approx(train_scores.mean())
    assert results.task["target_std"] == pytest.approx(train_scores.std())
    validation = results.splits["validation"]
    assert set(validation.metrics) == {"rmse", "mae", "r2", "spearman"}
    predictions, truth = engine.predictions["validation"]
    assert truth.dtype.kind == "f" and truth.min() >= 9.0  # the targets as written, not standardised
    # Predictions are in the target's units (about 10..19), not the standardised ones the model outputs.
    assert abs(predictions.mean() - truth.mean()) < train_scores.std()
    assert validation.metrics["rmse"] == pytest.approx(float(np.sqrt(np.mean((predictions - truth) ** 2))), rel=1e-5)
    if strategy == "linear_probe":  # ridge, solved: the tag words are counted well above predicting the mean
        assert results.solver["estimator"] == "ridge" and validation.metrics["r2"] > 0.3
    meta = json.loads((tmp_path / "run" / "artifact" / "peft_ladder.json").read_text())
    assert meta["task"]["name"] == "regression" and list(meta["label2id"]) == ["score"]
    restored = load_adapted(tmp_path / "run" / "artifact")
    assert restored.backbone.num_labels == 1


@pytest.mark.parametrize("label", ["tags", "score"])
def test_predict_and_evaluate_read_the_task_from_the_artifact(tmp_path, task_data, label):
    from peft_ladder import evaluate, predict

    engine = Engine(_config(tmp_path, task_data, label))
    results = engine.run()
    artifact = tmp_path / "run" / "artifact"
    out = predict(artifact, task_data["test"], out=tmp_path / "predictions.jsonl", progress=False)
    written = [json.loads(line) for line in out.out.read_text().splitlines()]
    assert len(written) == 48
    predicted, _ = engine.predictions["test"]
    if label == "tags":  # the names of the labels predicted, and each label's probability
        assert set(written[0]) == {"row", "labels"} | {f"prob_{t}" for t in sorted(TAGS)}
        by_name = np.array([[t in row["labels"] for t in sorted(TAGS)] for row in written])
        assert (by_name == predicted.astype(bool)).all()
    else:  # the value, in the target's units, as the run's own evaluation had it
        assert set(written[0]) == {"row", "prediction"}
        assert np.allclose([row["prediction"] for row in written], predicted, atol=1e-4)
    report = evaluate(artifact, task_data["test"], progress=False)
    for name, value in results.splits["test"].metrics.items():
        assert report.metrics[name] == pytest.approx(value, abs=1e-5), name
        assert report.intervals[name].low <= report.metrics[name] <= report.intervals[name].high, name
    # Stock transformers load the export in the task's problem_type: a regression's head carries the target's scale
    # (its units come out), a multi-label one's sigmoid is each label's probability as the run had it.
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    from peft_ladder import export

    folder = export(artifact, tmp_path / "export")
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
    assert model.config.problem_type == {"tags": "multi_label_classification", "score": "regression"}[label]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    texts = [json.loads(line)["text"] for line in Path(task_data["test"]).read_text().splitlines()]
    with torch.no_grad():
        inputs = tokenizer(texts, truncation=True, max_length=32, padding=True, return_tensors="pt")
        stock = model(**inputs).logits
    if label == "score":
        assert np.allclose(stock[:, 0].numpy(), predicted, atol=1e-3)
    else:
        assert np.allclose(torch.sigmoid(stock).numpy(), engine.scores["test"], atol=1e-4)
        # The pipeline reads problem_type and applies the sigmoid itself.
        classify = pipeline("text-classification", model=model, tokenizer=tokenizer, top_k=None)
        first = {d["label"]: d["score"] for d in classify([texts[0]], truncation=True, max_length=32)[0]}
        assert np.allclose([first[t] for t in sorted(TAGS)], engine.scores["test"][0], atol=1e-4)


@pytest.mark.parametrize("label, task", [("tags", "multi_label"), ("score", "regression")])
def test_an_image_folder_with_metadata_trains_either_task(tmp_path, label, task):
    images = tagged_images(tmp_path / "images")
    config = load_config(
        None,
        [f"output_dir={tmp_path / 'run'}"],
        backbone={
            "name": "timm:vit_tiny_patch16_224",
            "pretrained": False,
            "model_kwargs": {"img_size": 16, "depth": 1, "patch_size": 8},
        },
        data={"dataset": str(images), "label_column": label, "validation_fraction": 0.25},
        strategy={"name": "lora"},
        train={"epochs": 1, "batch_size": 8},
        log_with="none",
    )
    results = Engine(config).run()
    assert results.task["name"] == task
    restored = load_adapted(tmp_path / "run" / "artifact")
    assert restored.backbone.num_labels == (3 if task == "multi_label" else 1)


def test_a_set_task_overrides_the_guess(tmp_path, task_data):
    """Integer-valued scores read as classes; data.task=regression trains them as numbers."""
    rows = [{"text": r["text"], "stars": int(r["score"])} for r in task_rows(96, 7)]
    data = {"train": write_rows(tmp_path / "train.jsonl", rows)}
    config = _config(tmp_path, data, "stars", "data.task=regression", "data.validation_fraction=0.25")
    results = Engine(config).run()
    assert results.task["name"] == "regression" and "rmse" in results.splits["validation"].metrics


def test_the_multi_label_loss_is_binary_cross_entropy_per_label():
    from peft_ladder.tasks import Task

    logits = torch.tensor([[2.0, -1.0, 0.5], [-0.3, 0.2, 3.0]])
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    task = Task("multi_label")
    expected = torch.nn.BCEWithLogitsLoss()(logits, labels)
    assert torch.allclose(task.loss(logits, labels), expected)
    assert task.predictions(logits).tolist() == [[1, 0, 1], [0, 1, 1]]
    regression = Task("regression", target_mean=10.0, target_std=2.0)
    out = torch.tensor([[0.5], [-1.0]])
    assert regression.predictions(out).tolist() == [11.0, 8.0]
    assert torch.allclose(regression.loss(out, torch.tensor([11.0, 10.0])), torch.tensor((0.0 + 1.0) / 2))


BAD_TARGETS = [
    ("tags", lambda rows: rows[3].update(tags="river"), 4),  # a bare string among lists
    ("score", lambda rows: rows[5].update(score="high"), 6),  # a word among numbers
    ("score", lambda rows: rows[5].update(score=float("nan")), 6),  # no target
]


@pytest.mark.parametrize(
    "column, spoil, line", BAD_TARGETS, ids=["multi_label-string", "regression-word", "regression-nan"]
)
def test_a_bad_target_is_an_error_naming_the_column_and_its_line(tmp_path, column, spoil, line):
    rows = task_rows(40, 3)
    spoil(rows)
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r, allow_nan=True) + "\n" for r in rows))
    task = "multi_label" if column == "tags" else "regression"
    config = _config(tmp_path, {"train": str(train)}, column, f"data.task={task}")
    with pytest.raises(ValueError, match=f"data.label_column='{column}'.*line {line}\\b"):
        build_splits(config)


def test_a_bad_target_through_the_cli_is_one_error_paragraph(tmp_path):
    rows = task_rows(40, 3)
    rows[5]["score"] = "high"
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = _cli(tmp_path, train, "score", "data.task=regression")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "data.label_column='score'" in errors[0]


def test_a_validation_label_unseen_in_training_is_named(tmp_path):
    train, validation = task_rows(40, 1), task_rows(12, 2)
    validation[4]["tags"] = ["volcano"]
    data = {
        "train": write_rows(tmp_path / "t.jsonl", train),
        "validation": write_rows(tmp_path / "v.jsonl", validation),
    }
    with pytest.raises(ValueError, match="volcano"):
        Engine(_config(tmp_path, data, "tags")).setup()


def _cli(tmp_path: Path, train: Path, column: str, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "peft_ladder.cli",
            "train",
            "--recipe",
            str(TINY),
            "data.dataset=json",
            f"data.data_files.train={train}",
            "data.text_column=text",
            f"data.label_column={column}",
            f"output_dir={tmp_path / 'out'}",
            *overrides,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


@pytest.mark.parametrize("strategy", list_strategies())
def test_every_strategy_and_the_control_train_both_tasks_with_their_loss(tmp_path, task_data, strategy):
    """Multi-label (BCE per label) and regression (MSE on the standardised target) through every strategy of the
    registry and the scratch control: the task's loss reaches exactly what the strategy trains, and the rung
    trains, scores with the task's metrics and reloads."""
    small = ["data.max_samples.train=32", "data.max_samples.validation=16", "data.max_samples.test=16"]
    for label, metric in (("tags", "map"), ("score", "rmse")):
        run = tmp_path / label
        engine = Engine(_config(run, task_data, label, f"strategy.name={strategy}", "train.epochs=1", *small)).setup()
        model = engine.adapted.model
        trained = {n for n, p in model.named_parameters() if p.requires_grad}
        batch = next(iter(engine.train_loader))
        # engine.model: what training runs (the head over cached features for a frozen probe); its parameters are
        # the model's own.
        engine.task.loss(engine.logits_fn(engine.model, batch), batch["labels"]).backward()
        reached = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        assert reached <= trained and any("classifier" in n for n in reached), label
        assert any("classifier" not in n for n in reached) == get_strategy(strategy).trains_backbone, label
        model.zero_grad(set_to_none=True)
        results = engine.train().finish()
        assert results.task["name"] == ("multi_label" if label == "tags" else "regression")
        assert np.isfinite(results.splits["validation"].metrics[metric]), label
        assert load_adapted(run / "run" / "artifact").backbone.num_labels == (len(TAGS) if label == "tags" else 1)

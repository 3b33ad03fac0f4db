"""The ladder on multi-label, regression and token-classification tasks: every rung, the control and the baseline train with the task's
loss, the climb compares the task's metric in the right direction, and the note says which task it was."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from task_data import tagged_images, write_splits

from peft_ladder import load_adapted
from peft_ladder.config import LadderConfig, load_config
from peft_ladder.ladder import Ladder
from peft_ladder.ladder.decision import ClimbRule, RungPredictions
from peft_ladder.ladder.note import SCHEMA_PATH

REPO = Path(__file__).resolve().parents[2]
TINY_LADDER = REPO / "recipes" / "tiny" / "minilm_1layer_ladder.yaml"


@pytest.mark.parametrize(
    "label, task, metric, baseline",
    [
        ("tags", "multi_label", "map", "tfidf_ovr_logreg"),
        ("score", "regression", "rmse", "tfidf_ridge"),
        ("ner", "token_classification", "entity_f1", "word_logreg"),
    ],
)
def test_the_ladder_climbs_a_multi_label_and_a_regression_task(tmp_path, label, task, metric, baseline):
    data = write_splits(tmp_path / "data", {"train": 96, "validation": 96, "test": 48})
    config = load_config(
        TINY_LADDER,
        [
            f"output_dir={tmp_path / 'ladder'}",
            "data.dataset=json",
            *(f"data.data_files.{split}={path}" for split, path in data.items()),
            f"data.text_column={'words' if label == 'ner' else 'text'}",
            f"data.label_column={label}",
            "data.max_samples={}",
            "ladder.rungs=[{name: linear_probe}, {name: lora}]",
            "ladder.run_all=true",
        ],
    )
    note = Ladder(config).run()
    written = json.loads((tmp_path / "ladder" / "transfer_note.json").read_text())
    jsonschema.validate(written, json.loads(SCHEMA_PATH.read_text()))
    assert note.task == task and note.metric == metric and note.lower_is_better == (metric == "rmse")
    assert {r.id for r in note.rungs} == {"linear_probe", "lora"} and note.scratch is not None
    assert note.baseline is not None and note.baseline.name == baseline
    assert note.chance is not None
    probe = next(r for r in note.rungs if r.id == "linear_probe")
    if task == "regression":
        # The tag words are counted by one frozen layer far better than the training mean predicts every row.
        assert probe.metric.estimate < note.chance
        assert note.min_gain == pytest.approx(
            0.01 * np.std([json.loads(x)["score"] for x in open(data["train"])]), rel=1e-2
        )
    else:
        assert probe.metric.estimate > note.chance
    artifact = load_adapted(tmp_path / "ladder" / "artifact")
    assert artifact.backbone.num_labels == {"multi_label": 3, "regression": 1, "token_classification": 7}[task]
    assert (tmp_path / "ladder" / "transfer_note.md").read_text().count(metric) > 0
    if task == "token_classification":  # the words the rungs never see are counted where the baseline is compared
        cut = written["data"]["preprocessing"]["words_past_max_length"]
        assert set(cut) >= {"train", "validation"} and all(" of " in v for v in cut.values())


@pytest.mark.parametrize("label, task, metric", [("tags", "multi_label", "map"), ("score", "regression", "rmse")])
def test_an_image_ladder_climbs_a_multi_label_and_a_regression_task(tmp_path, tiny_dirs, label, task, metric):
    """An image folder whose metadata.jsonl holds a list or a number per image: every rung, the control and the
    pixel baseline train with the task's loss, and the note says the task."""
    images = tagged_images(tmp_path / "images", n=96, size=32)
    config = load_config(
        None,
        [],
        backbone={"name": str(tiny_dirs["timm_vit"])},
        data={"dataset": str(images), "label_column": label, "validation_fraction": 0.5},
        train={"epochs": 2, "batch_size": 16, "warmup_ratio": 0.0, "early_stopping": {"min_steps_at_peak": 1}},
        ladder={
            "rungs": [{"name": "linear_probe"}, {"name": "lora"}],
            "run_all": True,
            "lr_search": {"multipliers": [1.0]},
            "scratch": {"lrs": [1e-3]},
            "bootstrap_samples": 300,
        },
        log_with="none",
        output_dir=str(tmp_path / "ladder"),
    )
    note = Ladder(config).run()
    written = json.loads((tmp_path / "ladder" / "transfer_note.json").read_text())
    jsonschema.validate(written, json.loads(SCHEMA_PATH.read_text()))
    assert note.task == task and note.metric == metric
    assert {r.id for r in note.rungs} == {"linear_probe", "lora"} and note.scratch is not None
    assert note.baseline is not None and note.baseline.name.startswith("pixels_")
    artifact = load_adapted(tmp_path / "ladder" / "artifact")
    assert artifact.backbone.num_labels == (3 if task == "multi_label" else 1)


def _rung(rung_id: str, predictions: np.ndarray) -> RungPredictions:
    return RungPredictions(rung_id, rung_id, [predictions])


@pytest.mark.parametrize("metric", ["rmse", "mae"])
def test_an_error_metric_climbs_when_the_error_falls(metric):
    rng = np.random.default_rng(0)
    target = rng.normal(10, 3, 400)
    coarse = target + rng.normal(0, 2.0, 400)
    fine = target + rng.normal(0, 0.5, 400)
    rule = ClimbRule(LadderConfig(metric=metric, min_gain=0.1, bootstrap_samples=400), target)
    rule.observe(_rung("linear_probe", coarse))
    step = rule.observe(_rung("lora", fine))
    assert step.outcome == "climb" and step.interval.estimate > 0  # a reduction of the error
    assert rule.state.best.id == "lora"
    worse = ClimbRule(LadderConfig(metric=metric, min_gain=0.1, bootstrap_samples=400), target)
    worse.observe(_rung("linear_probe", fine))
    assert worse.observe(_rung("lora", coarse)).outcome == "stop" and worse.state.best.id == "linear_probe"


def test_a_metric_that_does_not_score_the_task_is_refused():
    with pytest.raises(ValueError, match="ladder.metric='accuracy'"):
        LadderConfig(metric="accuracy").for_task("regression")
    resolved = LadderConfig().for_task("regression", target_std=4.0)
    assert resolved.metric == "rmse" and resolved.min_gain == 0.04
    assert LadderConfig().for_task("multi_label").metric == "map"

"""The frozen evidence for multi-label and regression tasks: the depth curve and the pooling comparison pick the
block or pooling that carries the target in the direction the task's score runs (lower MSE is better), LogME
scores regression targets, H-score averages two-class scores over the labels and is None for regression, and
single-label records keep the note's schema."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import peft_ladder.ladder.frozen as frozen
from peft_ladder.ladder.frozen import FrozenPass, best_pooling, compare_poolings, depth_curve, transferability
from peft_ladder.ladder.transferability import (
    H_SCORE_NOT_FOR_REGRESSION,
    h_score,
    multilabel_h_score,
    multilabel_logme,
    regression_logme,
    transferability_scores,
    unscorable,
)

_OUTPUTS = {"single_label": 3, "multi_label": 3, "regression": 1}


def _task_data(task: str, n: int = 200, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features whose linear scores make the task's labels, the labels, and noise features of the same shape."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen)
    scores = x @ torch.randn(d, _OUTPUTS[task], generator=gen) + 0.5 * torch.randn(n, _OUTPUTS[task], generator=gen)
    if task == "single_label":
        labels = scores.argmax(1)
    elif task == "multi_label":
        labels = (scores > 0).float()
    else:
        labels = 50.0 + 20.0 * scores[:, 0]  # in its own units, as the frozen pass holds them
    return x, labels, torch.randn(n, d, generator=gen)


def _backbone(blocks: int, num_labels: int) -> SimpleNamespace:
    """What depth_curve reads of a backbone: its blocks' names and its head's outputs."""
    names = [SimpleNamespace(name=f"blocks.{i}") for i in range(blocks)]
    return SimpleNamespace(layout=SimpleNamespace(blocks=names), num_labels=num_labels)


@pytest.mark.parametrize("task", ["multi_label", "regression"])
def test_the_depth_curve_peaks_at_the_block_that_carries_the_target(task):
    x, labels, noise = _task_data(task)
    passed = FrozenPass(labels, [noise, x, torch.randn_like(x)], x, None)
    curve = depth_curve(_backbone(3, _OUTPUTS[task]), passed, seed=0, task=task)
    assert (curve.peak, curve.implied_last_k, curve.task) == (1, 1, task)
    keys = frozen.DEPTH_POINT_KEYS[task]
    assert all(set(p) == {"block", "name", *keys} for p in curve.points)
    ranked = [p[keys[0]] for p in curve.points]
    if task == "regression":  # MSE on the standardised target: lower is better, noise near 1
        assert ranked[1] < 0.3 and min(ranked[0], ranked[2]) > 0.9
    else:
        assert ranked[1] > max(ranked[0], ranked[2])
    record = curve.to_dict()
    assert record["task"] == task and record["ranked_by"] == keys[0]
    assert record["higher_is_better"] is (task == "multi_label")


@pytest.mark.parametrize(
    ("task", "ranked", "peak"),
    [
        # best block 1; block 2 within one standard error of it (0.05) is deeper, so it is the peak
        ("regression", [0.50, 0.30, 0.34, 0.90], 2),
        ("multi_label", [0.50, 0.80, 0.76, 0.20], 2),
        ("single_label", [0.50, 0.80, 0.76, 0.20], 2),
        # block 2 is outside one standard error: the best block is the peak
        ("regression", [0.50, 0.30, 0.36, 0.90], 1),
    ],
)
def test_the_one_se_rule_runs_in_the_scores_direction(task, ranked, peak, monkeypatch):
    rank, rank_se, other = frozen.DEPTH_POINT_KEYS[task]
    scores = iter([{rank: r, rank_se: 0.05, other: 0.0} for r in ranked])
    monkeypatch.setattr(frozen, "cv_score_for_task", lambda *a, **k: next(scores))
    blocks = [torch.zeros(4, 2)] * len(ranked)
    curve = depth_curve(_backbone(len(ranked), 1), FrozenPass(torch.zeros(4), blocks, blocks[0], None), 0, task)
    assert curve.peak == peak and curve.implied_last_k == len(ranked) - 1 - peak


def test_a_single_label_curve_keeps_the_notes_schema(monkeypatch):
    scores = iter([{"accuracy": a, "accuracy_se": 0.01, "log_loss": 1.0, "l2": 0.1} for a in (0.5, 0.9)])
    monkeypatch.setattr(frozen, "cv_score_for_task", lambda *a, **k: next(scores))
    blocks = [torch.zeros(4, 2)] * 2
    curve = depth_curve(_backbone(2, 2), FrozenPass(torch.zeros(4, dtype=torch.long), blocks, blocks[0], None), 0)
    assert set(curve.to_dict()) == {"points", "peak", "implied_last_k"}
    assert set(curve.points[0]) == {"block", "name", "accuracy", "accuracy_se", "log_loss"}


@pytest.mark.parametrize("task", ["multi_label", "regression"])
def test_the_pooling_comparison_keeps_the_pooling_that_carries_the_target(task):
    x, labels, noise = _task_data(task)
    passed = FrozenPass(labels, [x], x, {"cls": noise, "mean": x})
    scores = compare_poolings(passed, _OUTPUTS[task], seed=0, task=task)
    assert best_pooling(scores, task) == "mean"
    assert best_pooling({"cls": scores["mean"], "mean": scores["cls"]}, task) == "cls"


def test_best_pooling_takes_the_lowest_selection_loss_of_the_task():
    scores = {"cls": {"mse": 0.4, "bce": 0.9, "log_loss": 0.2}, "mean": {"mse": 0.6, "bce": 0.5, "log_loss": 0.3}}
    assert best_pooling(scores, "regression") == "cls"
    assert best_pooling(scores, "multi_label") == "mean"
    assert best_pooling(scores) == "cls"  # single-label: log-loss, as before


def test_logme_of_a_regression_target_is_higher_for_features_that_carry_it():
    x, targets, noise = _task_data("regression")
    informative = regression_logme(x.numpy(), targets.numpy())
    assert informative > regression_logme(noise.numpy(), targets.numpy()) + 0.5
    # The target is standardised over the rows: its units do not move the score.
    assert regression_logme(x.numpy(), 1e-3 * targets.double().numpy() + 4.0) == pytest.approx(informative)


def test_multi_label_h_score_is_the_mean_of_the_labels_two_class_h_scores():
    x, labels, noise = _task_data("multi_label")
    f, y = x.numpy(), labels.numpy()
    per_label = [h_score(f, y[:, k]) for k in range(y.shape[1])]
    assert multilabel_h_score(f, y) == pytest.approx(np.mean(per_label), rel=1e-12)
    assert multilabel_h_score(f, y) > multilabel_h_score(noise.numpy(), y)
    assert multilabel_logme(f, y) > multilabel_logme(noise.numpy(), y)


def test_labels_constant_among_the_rows_are_left_out_of_multi_label_scores():
    x, labels, _ = _task_data("multi_label")
    f, y = x.numpy(), labels.numpy()
    padded = np.concatenate([y, np.zeros((len(y), 1)), np.ones((len(y), 1))], 1)
    assert transferability_scores(f, padded, "multi_label") == pytest.approx(
        transferability_scores(f, y, "multi_label")
    )
    nothing = np.zeros_like(y)
    assert transferability_scores(f, nothing, "multi_label") == {"logme": None, "h_score": None}
    assert set(unscorable(nothing, "multi_label")) == {"logme", "h_score"} and unscorable(y, "multi_label") == {}


def _transferability_record(task: str, monkeypatch) -> dict:
    """frozen.transferability on synthetic rows, the random-init floor's pass replaced by noise features."""
    x, labels, noise = _task_data(task, n=120)
    passed = FrozenPass(labels, [x], x, None)
    positions = list(range(0, 120, 2))
    floor = FrozenPass(labels[positions], [], noise[positions], None)
    monkeypatch.setattr(frozen, "frozen_pass", lambda *a, **k: floor)
    random_init = SimpleNamespace(model=torch.nn.Identity())
    return transferability(passed, random_init, [], torch.device("cpu"), positions, task)


def test_a_regression_transferability_record_says_why_h_score_is_none(monkeypatch):
    record = _transferability_record("regression", monkeypatch)
    assert record["pretrained"]["h_score"] is None and record["random_init"]["h_score"] is None
    assert record["not_applicable"] == {"h_score": H_SCORE_NOT_FOR_REGRESSION} and record["task"] == "regression"
    assert record["pretrained"]["logme"] > record["random_init"]["logme"]


def test_a_multi_label_transferability_record_scores_both(monkeypatch):
    record = _transferability_record("multi_label", monkeypatch)
    assert record["not_applicable"] == {} and record["task"] == "multi_label"
    for score in ("logme", "h_score"):
        assert record["pretrained"][score] > record["random_init"][score]


def test_a_single_label_transferability_record_keeps_the_notes_schema(monkeypatch):
    record = _transferability_record("single_label", monkeypatch)
    assert set(record) == {"pretrained", "random_init", "n", "feature_dim", "seconds"}
    assert all(isinstance(v, float) for v in record["pretrained"].values())

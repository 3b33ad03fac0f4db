"""The cheap non-pretrained baselines: they find an easy signal, stay at chance without one, and never fit on eval."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from peft_ladder.ladder.baselines import BaselineResult, cheap_baseline, image_baseline, text_baseline

FILLER = [f"filler{i}" for i in range(200)]
KEYWORDS = [[f"alpha{i}" for i in range(3)], [f"beta{i}" for i in range(3)], [f"gamma{i}" for i in range(3)]]
# Lbfgs must reach its tolerance on these tasks: a ConvergenceWarning fails the test rather than hiding.
no_convergence_warning = pytest.mark.filterwarnings("error::sklearn.exceptions.ConvergenceWarning")


def _texts(labels: np.ndarray, rng: np.random.Generator) -> list[str]:
    """12 random filler words a row, with 2 keywords of the row's class dropped in."""
    rows = []
    for label in labels:
        words = list(rng.choice(FILLER, 12))
        for keyword in rng.choice(KEYWORDS[label], 2):
            words.insert(int(rng.integers(0, len(words) + 1)), str(keyword))
        rows.append(" ".join(words))
    return rows


def _images(labels: np.ndarray, rng: np.random.Generator, side: int = 16) -> list[Image.Image]:
    """Noisy 16x16 RGB images whose dominant channel is the row's class (0 red, 1 green, 2 blue)."""
    images = []
    for label in labels:
        mean = np.full(3, 70.0)
        mean[label] = 170.0
        pixels = np.clip(mean + rng.normal(0.0, 50.0, (side, side, 3)), 0, 255).astype(np.uint8)
        images.append(Image.fromarray(pixels, "RGB"))
    return images


MAKERS = {"text": _texts, "image": _images}


def _accuracy(result: BaselineResult, split: str, labels: np.ndarray) -> float:
    return float(np.mean(result.predictions[split] == labels))


@no_convergence_warning
@pytest.mark.parametrize("modality", ["text", "image"])
def test_baseline_finds_an_easy_signal(modality):
    rng = np.random.default_rng(0)
    train_y, eval_y = np.tile([0, 1, 2], 20), np.tile([0, 1, 2], 20)
    make = MAKERS[modality]
    result = cheap_baseline(modality, make(train_y, rng), train_y, {"eval": make(eval_y, rng)})
    assert result.name == {"text": "tfidf_logreg", "image": "pixels_logreg"}[modality]
    assert _accuracy(result, "eval", eval_y) >= 0.9
    assert result.params["converged"]


@no_convergence_warning
@pytest.mark.parametrize("modality", ["text", "image"])
def test_baseline_stays_near_chance_on_random_labels(modality):
    rng = np.random.default_rng(1)
    make = MAKERS[modality]
    # Inputs carry class signal, but the labels are drawn independently of it.
    train_x, eval_x = make(rng.integers(0, 3, 90), rng), make(rng.integers(0, 3, 300), rng)
    train_y, eval_y = rng.integers(0, 3, 90), rng.integers(0, 3, 300)
    result = cheap_baseline(modality, train_x, train_y, {"eval": eval_x})
    # 300 rows at chance 1/3: one standard deviation is 0.027.
    assert abs(_accuracy(result, "eval", eval_y) - 1 / 3) < 0.12


@pytest.mark.parametrize("modality", ["text", "image"])
def test_every_split_is_predicted_and_the_summary_is_json(modality):
    rng = np.random.default_rng(2)
    make = MAKERS[modality]
    train_y = np.tile([0, 1, 2], 10)
    splits = {"validation": make(np.tile([0, 1, 2], 4), rng), "test": make(np.array([2, 1, 0, 0, 1]), rng), "empty": []}
    result = cheap_baseline(modality, make(train_y, rng), train_y, splits)
    assert set(result.predictions) == set(splits)
    for split, inputs in splits.items():
        assert result.predictions[split].dtype == np.int64
        assert result.predictions[split].shape == (len(inputs),)
    summary = result.to_dict()
    text = json.dumps(summary)
    assert "predictions" not in summary and isinstance(summary["description"], str)
    assert json.loads(text)["params"] == summary["params"]  # nothing lost on the way: no arrays or numpy scalars
    assert result.seconds > 0


@pytest.mark.parametrize("modality", ["text", "image"])
def test_choice_of_c_ignores_the_eval_splits(modality):
    rng = np.random.default_rng(3)
    make = MAKERS[modality]
    train_y = rng.integers(0, 3, 45)
    train_x, shared, other = make(train_y, rng), make(rng.integers(0, 3, 20), rng), make(rng.integers(0, 3, 40), rng)
    alone = cheap_baseline(modality, train_x, train_y, {"shared": shared})
    beside = cheap_baseline(modality, train_x, train_y, {"other": other, "shared": shared})
    assert alone.params == beside.params
    np.testing.assert_array_equal(alone.predictions["shared"], beside.predictions["shared"])


@pytest.mark.parametrize("modality", ["text", "image"])
def test_same_seed_same_result(modality):
    rng = np.random.default_rng(4)
    make = MAKERS[modality]
    train_y = rng.integers(0, 3, 45)
    train_x, eval_x = make(train_y, rng), make(rng.integers(0, 3, 30), rng)
    first, second = (cheap_baseline(modality, train_x, train_y, {"eval": eval_x}, seed=7) for _ in range(2))
    assert first.params == second.params and first.description == second.description
    np.testing.assert_array_equal(first.predictions["eval"], second.predictions["eval"])


@pytest.mark.parametrize(
    ("train_labels", "cv"),
    [
        ([0] * 10 + [1] * 10 + [5] * 2, "stratified_kfold"),  # a 2-row class caps the folds at 2; ids skip 2..4
        ([0] * 10 + [1] * 10 + [2], "kfold"),  # a single-row class: plain KFold
        ([0] * 4 + [1], "kfold"),  # some KFold training folds then hold one class only
        ([3] * 6, "none"),  # one class: a constant prediction
        ([1], "none"),
    ],
)
@pytest.mark.parametrize("modality", ["text", "image"])
def test_rare_and_missing_classes_do_not_crash(modality, train_labels, cv):
    rng = np.random.default_rng(5)
    make = MAKERS[modality]
    train_y = np.array(train_labels)
    # Inputs from classes 0..2 whatever the label ids say; eval rows include classes training never saw.
    train_x = make(np.clip(train_y, 0, 2), rng)
    result = cheap_baseline(modality, train_x, train_y, {"eval": make(np.array([0, 1, 2, 2]), rng)})
    assert result.params["cv"] == cv
    assert set(result.predictions["eval"].tolist()) <= set(train_labels)
    if cv == "stratified_kfold":
        assert result.params["cv_folds"] == 2


def test_image_baseline_takes_any_mode_and_size():
    rng = np.random.default_rng(6)
    labels = np.tile([0, 1], 6)
    images = [im.convert(mode) for im, mode in zip(_images(labels, rng, side=40), ["L", "RGBA", "P", "RGB"] * 3)]
    result = image_baseline(images, labels, {"eval": images[:3]}, size=4, bins=4)
    assert result.params["n_features"] == 3 * 4 * 4 + 6 * 4
    assert result.predictions["eval"].shape == (3,)


def test_text_baseline_rejects_mismatched_rows_and_unknown_modality():
    with pytest.raises(ValueError, match="train_labels"):
        text_baseline(["a b", "c d"], [0], {})
    with pytest.raises(ValueError, match="audio"):
        cheap_baseline("audio", ["a"], [0], {})  # type: ignore[arg-type]


# ---- multi_label and regression ----------------------------------------------------------------------------------
LABEL_WORDS = ["apple", "river", "stone"]  # label k is signalled by LABEL_WORDS[k] in the text


def _multi_label_texts(labels: np.ndarray, rng: np.random.Generator) -> list[str]:
    """8 random filler words a row plus the word of every positive label (a row may have none)."""
    rows = []
    for row in labels:
        words = list(rng.choice(FILLER, 8)) + [LABEL_WORDS[k] for k in np.flatnonzero(row[:3])]
        rng.shuffle(words)
        rows.append(" ".join(words))
    return rows


def _multi_label_images(labels: np.ndarray, rng: np.random.Generator, side: int = 16) -> list[Image.Image]:
    """Noisy RGB images whose channel k is bright when label k is on (labels past the third leave no trace)."""
    images = []
    for row in labels:
        mean = np.where(row[:3] > 0, 170.0, 70.0)
        pixels = np.clip(mean + rng.normal(0.0, 50.0, (side, side, 3)), 0, 255).astype(np.uint8)
        images.append(Image.fromarray(pixels, "RGB"))
    return images


def _count_texts(counts: np.ndarray, rng: np.random.Generator, length: int = 12) -> list[str]:
    """Rows of `length` words, `count` of them "apple" and the rest filler (a fixed length keeps the TF-IDF row
    norm from hiding the count)."""
    rows = []
    for count in counts:
        words = list(rng.choice(FILLER, length - count)) + ["apple"] * int(count)
        rng.shuffle(words)
        rows.append(" ".join(words))
    return rows


def _red_images(levels: np.ndarray, rng: np.random.Generator, side: int = 16) -> list[Image.Image]:
    """Noisy RGB images whose red channel averages `level` (0..255); green and blue are noise around 100."""
    images = []
    for level in levels:
        mean = np.array([level, 100.0, 100.0])
        pixels = np.clip(mean + rng.normal(0.0, 30.0, (side, side, 3)), 0, 255).astype(np.uint8)
        images.append(Image.fromarray(pixels, "RGB"))
    return images


MULTI_LABEL_MAKERS = {"text": _multi_label_texts, "image": _multi_label_images}


def _regression_data(modality: str, n: int, rng: np.random.Generator) -> tuple[list, np.ndarray]:
    """Inputs and targets around 1000: 1000 + 20 x (apples in the text) or 1000 + (red level) - 128, plus noise."""
    if modality == "text":
        counts = rng.integers(0, 6, n)
        return _count_texts(counts, rng), 1000.0 + 20.0 * counts + rng.normal(0.0, 3.0, n)
    levels = rng.uniform(30.0, 225.0, n)
    return _red_images(levels, rng), 1000.0 + levels - 128.0 + rng.normal(0.0, 3.0, n)


def _micro_f1(predicted: np.ndarray, truth: np.ndarray) -> float:
    true_pos = np.sum((predicted == 1) & (truth == 1))
    return float(2 * true_pos / (np.sum(predicted) + np.sum(truth)))


def _r2(predicted: np.ndarray, truth: np.ndarray) -> float:
    return float(1.0 - np.sum((predicted - truth) ** 2) / np.sum((truth - truth.mean()) ** 2))


def _task_data(task: str, modality: str, n: int, rng: np.random.Generator) -> tuple[list, np.ndarray]:
    if task == "multi_label":
        labels = (rng.random((n, 3)) < 0.4).astype(np.int64)
        return MULTI_LABEL_MAKERS[modality](labels, rng), labels
    return _regression_data(modality, n, rng)


@no_convergence_warning
@pytest.mark.parametrize("modality", ["text", "image"])
def test_multi_label_baseline_finds_each_label(modality):
    rng = np.random.default_rng(10)
    train_x, train_y = _task_data("multi_label", modality, 200, rng)
    eval_x, eval_y = _task_data("multi_label", modality, 150, rng)
    assert (train_y.sum(axis=1) == 0).any()  # rows with no label at all are part of the task
    result = cheap_baseline(modality, train_x, train_y, {"eval": eval_x}, task="multi_label")
    assert result.name == {"text": "tfidf_ovr_logreg", "image": "pixels_ovr_logreg"}[modality]
    predicted = result.predictions["eval"]
    assert predicted.shape == (150, 3) and predicted.dtype == np.int64
    assert set(np.unique(predicted)) <= {0, 1}
    assert _micro_f1(predicted, eval_y) >= 0.9
    assert result.params["cv"] == "kfold" and result.params["cv_folds"] == 5 and result.params["converged"]
    assert (
        set(result.params["cv_log_loss"])
        == set(result.params["cv_micro_f1"])
        == {str(c) for c in result.params["C_grid"]}
    )
    assert "log-loss" in result.description and f"C={result.params['C']:g}" in result.description


@no_convergence_warning
@pytest.mark.parametrize("modality", ["text", "image"])
def test_multi_label_constant_labels_predict_their_constant(modality):
    rng = np.random.default_rng(11)
    labels = (rng.random((120, 3)) < 0.4).astype(np.int64)
    # Label 3 is on in every training row, label 4 in none; passed as a list of float rows, as a dataset column reads.
    train_y = np.concatenate([labels, np.ones((120, 1)), np.zeros((120, 1))], axis=1).astype(float).tolist()
    eval_labels = (rng.random((40, 3)) < 0.4).astype(np.int64)
    make = MULTI_LABEL_MAKERS[modality]
    result = cheap_baseline(modality, make(labels, rng), train_y, {"eval": make(eval_labels, rng)}, task="multi_label")
    predicted = result.predictions["eval"]
    assert predicted.shape == (40, 5)
    assert (predicted[:, 3] == 1).all() and (predicted[:, 4] == 0).all()
    assert result.params["constant_labels"] == [3, 4]
    assert result.params["label_positives"][3:] == [120, 0]
    assert _micro_f1(predicted[:, :3], eval_labels) >= 0.8  # the varying labels are still learned


@pytest.mark.parametrize(
    ("train_labels", "cv"),
    [
        ([[1, 0]], "none"),  # one row: nothing to cross-validate
        ([[0, 1]] * 6, "none"),  # every label constant: the constants, C never matters
        ([[0, 1]] * 5 + [[1, 1]], "kfold"),  # label 0 varies in some folds' training rows only
    ],
)
def test_multi_label_tiny_or_constant_training_sets_do_not_crash(train_labels, cv):
    rng = np.random.default_rng(12)
    train_y = np.array(train_labels)
    result = text_baseline(_multi_label_texts(train_y, rng), train_y, {"eval": ["apple river"]}, task="multi_label")
    assert result.params["cv"] == cv
    assert result.predictions["eval"].shape == (1, 2)
    if cv == "none":
        assert result.params["C"] == 1.0


@pytest.mark.parametrize("modality", ["text", "image"])
def test_regression_baseline_predicts_in_the_targets_units(modality):
    rng = np.random.default_rng(13)
    train_x, train_y = _regression_data(modality, 200, rng)
    eval_x, eval_y = _regression_data(modality, 150, rng)
    result = cheap_baseline(modality, train_x, train_y, {"eval": eval_x}, task="regression")
    assert result.name == {"text": "tfidf_ridge", "image": "pixels_ridge"}[modality]
    predicted = result.predictions["eval"]
    assert predicted.shape == (150,) and predicted.dtype == np.float64
    assert _r2(predicted, eval_y) >= 0.8
    # Around 1000, as the targets: standardising the target inside the fit never leaks into what is reported.
    assert abs(predicted.mean() - eval_y.mean()) < 10.0
    assert result.params["target_mean"] == pytest.approx(train_y.mean())
    assert result.params["cv"] == "kfold" and result.params["cv_folds"] == 5
    assert f"alpha={result.params['alpha']:g}" in result.description and "mean squared error" in result.description
    # CV MSE is in the target's units squared: the best is near the noise (3**2) plus the fit's error, far below
    # the targets' variance (hundreds or thousands).
    assert min(result.params["cv_mse"].values()) < 0.5 * np.var(train_y)


@pytest.mark.parametrize("modality", ["text", "image"])
def test_regression_alpha_grows_when_the_target_is_noise(modality):
    rng = np.random.default_rng(14)
    train_x, signal = _regression_data(modality, 200, rng)
    eval_x, _ = _regression_data(modality, 50, rng)
    noise = rng.normal(1000.0, 20.0, len(signal))  # independent of the inputs
    fitted = cheap_baseline(modality, train_x, signal, {"eval": eval_x}, task="regression")
    on_noise = cheap_baseline(modality, train_x, noise, {"eval": eval_x}, task="regression")
    # At least a decade more: on noise the held-out MSE is flat over the top alphas, so which one wins is chance.
    assert on_noise.params["alpha"] >= 10 * fitted.params["alpha"]
    # Shrunk towards the training mean: the predictions spread far less than the noise does.
    assert np.std(on_noise.predictions["eval"]) < 0.5 * np.std(noise)


@pytest.mark.parametrize(
    ("train_targets", "cv"),
    # Seven 0.1s have a std of 1.4e-17 (rounding), which must not be taken for a spread to standardise by.
    [([1234.5], "none"), ([0.1] * 7, "kfold"), ([1e6 + 0.1] * 7, "kfold"), ([1.0, 3.0], "kfold")],
)
def test_regression_tiny_or_constant_targets_do_not_crash(train_targets, cv):
    rng = np.random.default_rng(15)
    texts = _count_texts(np.arange(len(train_targets)) % 3, rng)
    result = text_baseline(texts, train_targets, {"eval": texts[:1], "empty": []}, task="regression")
    assert result.params["cv"] == cv
    assert result.predictions["empty"].shape == (0,)
    if len(set(train_targets)) == 1:  # a constant target is predicted as that constant
        np.testing.assert_allclose(result.predictions["eval"], train_targets[0])
        assert result.params["target_std"] == 1.0


@pytest.mark.parametrize("task", ["multi_label", "regression"])
@pytest.mark.parametrize("modality", ["text", "image"])
def test_new_tasks_choose_the_penalty_on_training_rows_only(task, modality):
    """The API takes no eval labels at all; what is left to check is that the eval inputs cannot move the fit."""
    rng = np.random.default_rng(16)
    train_x, train_y = _task_data(task, modality, 60, rng)
    shared, other = _task_data(task, modality, 20, rng)[0], _task_data(task, modality, 40, rng)[0]
    alone = cheap_baseline(modality, train_x, train_y, {"shared": shared}, task=task)
    beside = cheap_baseline(modality, train_x, train_y, {"other": other, "shared": shared, "empty": []}, task=task)
    assert alone.params == beside.params and alone.description == beside.description
    np.testing.assert_array_equal(alone.predictions["shared"], beside.predictions["shared"])
    assert beside.predictions["empty"].shape == ((0, 3) if task == "multi_label" else (0,))
    summary = beside.to_dict()
    assert json.loads(json.dumps(summary))["params"] == summary["params"]  # JSON-safe: no arrays or numpy scalars
    assert summary["eval_rows"] == {"other": 40, "shared": 20, "empty": 0}


@pytest.mark.parametrize(
    ("task", "labels", "message"),
    [
        ("multi_label", [0, 1, 1], r"\(n, labels\); got shape \(3,\)"),
        ("multi_label", [[0, 1], [1, 0], [1]], "equal-length rows"),
        ("multi_label", [[0, 1], [1, float("nan")], [1, 0]], "row 1, label 1 is NaN"),
        ("multi_label", [[0, 1], [1, 0], [2, 0]], "row 2, label 0 is neither 0 nor 1"),
        ("multi_label", [[], [], []], r"got shape \(3, 0\)"),
        ("regression", [[1.0], [2.0], [3.0]], r"targets \(n,\); got shape \(3, 1\)"),
        ("regression", [1.0, float("nan"), 3.0], "row 1 is NaN"),
        ("regression", [1.0, 2.0, float("inf")], "row 2 is NaN or infinite"),
        ("regression", [1.0, "a lot", 3.0], "must be numbers"),
        ("single_label", [0, 1.5, 1], "row 1 is not a whole number"),
        ("single_label", [[0], [1], [1]], r"class ids \(n,\); got shape \(3, 1\)"),
        ("ranking", [0, 1, 1], "'ranking' is not supported"),
    ],
)
def test_labels_are_checked_for_their_task(task, labels, message):
    with pytest.raises(ValueError, match=message):
        text_baseline(["a b", "c d", "e f"], labels, {}, task=task)

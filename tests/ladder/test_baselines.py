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

"""CV scores of feature sets for every task: features that carry the target beat noise in the direction each task's
reading says, the records match the fits' own CV, multi-label's penalty path ends early as cv_score's does,
regression targets are scored in standardised units, and labels that do not fit the task are refused."""

from __future__ import annotations

import pytest
import torch

from peft_ladder.probe import (
    CV_READINGS,
    DEFAULT_L2_GRID,
    cv_reading,
    cv_score,
    cv_score_for_task,
    cv_score_multilabel,
    cv_score_ridge,
    fit_multilabel_logistic,
    fit_ridge,
)

# A short grid: these tests are about the scores, not the small-l2 end of the default grid.
_GRID = [1e-3, 1e-2, 1e-1, 1.0]
_OUTPUTS = {"single_label": 3, "multi_label": 3, "regression": 1}


def _task_data(task: str, n: int = 200, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features whose linear scores make the task's labels, the labels, and noise features of the same shape."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen)
    scores = x @ torch.randn(d, _OUTPUTS[task], generator=gen) + 0.3 * torch.randn(n, _OUTPUTS[task], generator=gen)
    if task == "single_label":
        labels = scores.argmax(1)
    elif task == "multi_label":
        labels = (scores > 0).float()
    else:
        labels = 50.0 + 20.0 * scores[:, 0]  # in its own units: the dispatcher standardises
    return x, labels, torch.randn(n, d, generator=gen)


@pytest.mark.parametrize("task", list(CV_READINGS))
def test_features_that_carry_the_target_rank_above_noise_in_the_readings_direction(task):
    x, labels, noise = _task_data(task)
    reading = cv_reading(task)
    good = cv_score_for_task(x, labels, task, _OUTPUTS[task], seed=0, l2_grid=_GRID)
    bad = cv_score_for_task(noise, labels, task, _OUTPUTS[task], seed=0, l2_grid=_GRID)
    assert reading.oriented(good) > reading.oriented(bad) + 5 * max(good[reading.rank_se], bad[reading.rank_se])
    assert good[reading.select] < bad[reading.select]  # the smooth loss agrees, lower is better
    if task == "regression":
        assert not reading.higher_is_better and good["mse"] < 0.2 < 0.9 < bad["mse"]
        assert good["r2"] == pytest.approx(1 - good["mse"]) and good["r2"] > 0.8 and bad["r2"] < 0.1
    else:
        assert reading.higher_is_better
    assert {reading.rank, reading.rank_se, reading.select, "l2", "folds", "stratified"} <= set(good)


def test_single_label_is_cv_score_itself():
    x, labels, _ = _task_data("single_label")
    assert cv_score_for_task(x, labels, "single_label", 3, seed=1, l2_grid=_GRID) == cv_score(
        x, labels, 3, seed=1, l2_grid=_GRID
    )


def test_multi_label_and_ridge_records_are_the_fits_chosen_cv_records():
    x, labels, _ = _task_data("multi_label")
    fit = fit_multilabel_logistic(x, labels, l2_grid=_GRID, seed=2)
    score = cv_score_multilabel(x, labels, l2_grid=_GRID, seed=2, stop_after=None)
    assert score == {**next(r for r in fit.cv if r["l2"] == fit.l2), "folds": fit.folds, "stratified": False}

    x, targets, _ = _task_data("regression")
    targets = (targets - targets.mean()) / targets.std(correction=0)
    ridge = fit_ridge(x, targets, l2_grid=_GRID, seed=2)
    score = cv_score_ridge(x, targets, l2_grid=_GRID, seed=2)
    chosen = next(r for r in ridge.cv if r["l2"] == ridge.l2)
    assert {k: score[k] for k in chosen} == chosen


@pytest.mark.parametrize("seed", [0, 1])
def test_multi_label_path_ends_after_the_curve_turns_and_chooses_as_the_whole_path_does(seed, monkeypatch):
    from peft_ladder.probe import logistic, multilabel

    x, labels, noise = _task_data("multi_label", n=160, seed=seed)
    x = torch.cat([x, noise], 1)  # noise columns: too little penalty over-fits them, so the curve turns
    whole = cv_score_multilabel(x, labels, seed=seed, stop_after=None)
    penalties: list[float] = []
    real = multilabel.solve_penalised
    monkeypatch.setattr(multilabel, "solve_penalised", lambda *a, **k: penalties.append(a[2]) or real(*a, **k))
    ended = cv_score_multilabel(x, labels, seed=seed)
    assert ended == whole
    scored = len(penalties) // ended["folds"]
    assert scored == DEFAULT_L2_GRID[::-1].index(ended["l2"]) + 1 + logistic.CV_SCORE_STOP_AFTER < len(DEFAULT_L2_GRID)


def test_regression_scores_do_not_depend_on_the_targets_units():
    x, targets, _ = _task_data("regression")
    raw = cv_score_for_task(x, targets, "regression", 1, seed=0, l2_grid=_GRID)
    rescaled = cv_score_for_task(x, 1e-3 * targets.double() - 7.0, "regression", 1, seed=0, l2_grid=_GRID)
    assert raw["l2"] == rescaled["l2"]
    assert raw["mse"] == pytest.approx(rescaled["mse"], rel=1e-9)


@pytest.mark.parametrize(
    ("task", "labels", "outputs", "message"),
    [
        ("multi_label", torch.zeros(20), 3, "multi_label labels must be"),
        ("multi_label", torch.zeros(20, 2), 3, "multi_label labels must be"),
        ("regression", torch.arange(20), 1, "floating-point"),
        ("regression", torch.zeros(20, 1), 1, "floating-point"),
        ("regression", torch.randn(20), 2, "one output"),
        ("ranking", torch.zeros(20), 1, "task must be one of"),
    ],
)
def test_labels_that_do_not_fit_the_task_raise_a_clear_value_error(task, labels, outputs, message):
    with pytest.raises(ValueError, match=message):
        cv_score_for_task(torch.randn(20, 4), labels, task, outputs)

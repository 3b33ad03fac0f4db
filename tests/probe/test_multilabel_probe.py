"""The multi-label probe: agreement with per-label scikit-learn fits, a zero gradient, exact fold-back, the CV
records and selection rule, constant label columns, bad inputs, and fit_linear_head's multi_label dispatch."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from peft_ladder.probe import LogisticFit, fit_linear_head, fit_logistic, fit_multilabel_logistic

# A short grid: the tests are about the estimator, not the default grid's small-l2 end (most of L-BFGS's work).
_GRID = [1e-3, 1e-2, 1e-1, 1.0]


def _data(n: int = 240, d: int = 10, labels: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw features with mixed scales and offsets (the fold-back has work to do), labels from noisy linear scores."""
    gen = torch.Generator().manual_seed(seed)
    spread = torch.logspace(-1, 1, d, dtype=torch.float64)
    z = torch.randn(n, d, generator=gen, dtype=torch.float64)
    scores = z @ torch.randn(d, labels, generator=gen, dtype=torch.float64)
    y = (scores + torch.randn(n, labels, generator=gen, dtype=torch.float64) > 0.5).float()
    return (z * spread + 3.0).float(), y


def _standardised(fit, x: torch.Tensor) -> torch.Tensor:
    return (x.double() - fit.mean) / fit.scale


def _objective(fit, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The documented objective at the fit's standardised solution, and its autograd gradient."""
    z = _standardised(fit, x)
    w = fit.weight_std.clone().requires_grad_(True)
    b = fit.bias_std.clone().requires_grad_(True)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(z @ w.T + b, y.double(), reduction="sum") / len(z)
    loss = bce + fit.l2 / 2 * (w * w).sum()
    loss.backward()
    return loss, w.grad, b.grad


def _fake_backbone(num_labels: int, features: int) -> SimpleNamespace:
    """What fit_linear_head reads of a backbone: its head's module name, the model holding it, num_labels, a name."""
    model = torch.nn.Module()
    model.head = torch.nn.Linear(features, num_labels)
    return SimpleNamespace(
        layout=SimpleNamespace(head_modules=["head"]),
        model=model,
        num_labels=num_labels,
        spec=SimpleNamespace(name="fake"),
    )


@pytest.mark.parametrize("l2", [1e-2, 1e-1])
def test_matches_per_label_sklearn_logistic_regression_at_a_fixed_penalty(l2):
    x, y = _data()
    fit = fit_multilabel_logistic(x, y, l2_grid=[l2])
    assert fit.l2 == l2 and fit.converged and fit.grad_norm < 1e-5
    z = _standardised(fit, x).numpy()
    # The joint objective separates over labels: each column is sklearn's binary fit with C = 1 / (l2 * n).
    for label in range(y.shape[1]):
        sk = LogisticRegression(C=1.0 / (l2 * len(x)), tol=1e-10, max_iter=10_000).fit(z, y[:, label].numpy())
        np.testing.assert_allclose(fit.weight_std[label].numpy(), sk.coef_[0], atol=1e-4)
        assert fit.bias_std[label].item() == pytest.approx(sk.intercept_[0], abs=1e-4)


def test_the_gradient_of_the_objective_vanishes_at_the_solution():
    x, y = _data(seed=1)
    fit = fit_multilabel_logistic(x, y, l2_grid=_GRID)
    _, grad_w, grad_b = _objective(fit, x, y)
    # Independently of the solver's own bookkeeping: autograd on the documented objective.
    assert max(float(grad_w.abs().max()), float(grad_b.abs().max())) < 1e-5
    assert fit.converged and fit.grad_norm < 1e-5


def test_the_raw_head_reproduces_the_standardised_logits():
    x, y = _data(seed=2)
    fit = fit_multilabel_logistic(x, y, l2_grid=_GRID)
    head = torch.nn.Linear(x.shape[1], y.shape[1])
    with torch.no_grad():
        head.weight.copy_(fit.weight)
        head.bias.copy_(fit.bias)
        raw = head(x).double()
    standardised = _standardised(fit, x) @ fit.weight_std.T + fit.bias_std
    torch.testing.assert_close(raw, standardised, atol=1e-4, rtol=1e-5)  # float32 storage of the head only
    assert ((raw > 0) == (standardised > 0)).float().mean() > 0.99  # and the same labels come out


def test_one_cv_record_per_grid_value_and_near_ties_go_to_the_larger_penalty():
    x, y = _data(seed=3)
    fit = fit_multilabel_logistic(x, y, l2_grid=_GRID, folds=4)
    assert [r["l2"] for r in fit.cv] == sorted(_GRID, reverse=True) and fit.folds == 4
    assert set(fit.cv[0]) == {"l2", "bce", "bce_se", "micro_f1", "micro_f1_se"}
    assert all(r["bce"] > 0 and r["bce_se"] >= 0 and 0 <= r["micro_f1"] <= 1 for r in fit.cv)
    best = min(r["bce"] for r in fit.cv)
    near = [r["l2"] for r in fit.cv if r["bce"] <= best + 1e-3 * best + 1e-12]
    assert fit.l2 == max(near)
    # Informative labels: the held-out micro-F1 is far above what predicting nothing (0) would score.
    assert next(r for r in fit.cv if r["l2"] == fit.l2)["micro_f1"] > 0.7


def test_constant_label_columns_get_zero_weights_and_a_finite_pinned_bias():
    x, y = _data(seed=4, labels=2)
    n = len(x)
    rare = torch.zeros(n)
    rare[7] = 1.0  # one positive: constant in most training parts of the CV
    with_constants = torch.cat([y, torch.zeros(n, 1), torch.ones(n, 1), rare[:, None]], 1)
    fit = fit_multilabel_logistic(x, with_constants, l2_grid=[1e-2])
    alone = fit_multilabel_logistic(x, y, l2_grid=[1e-2])
    edge = math.log(0.5 / (n + 0.5))  # the log-odds of half a pseudo-row
    assert fit.constant_labels == [2, 3]
    assert torch.equal(fit.weight_std[2:4], torch.zeros(2, x.shape[1], dtype=torch.float64))
    assert fit.bias_std[2].item() == pytest.approx(edge) and fit.bias_std[3].item() == pytest.approx(-edge)
    assert torch.isfinite(fit.weight).all() and torch.isfinite(fit.bias).all()
    # The objective separates over labels: the informative ones are solved as if the others were not there.
    torch.testing.assert_close(fit.weight_std[:2], alone.weight_std, atol=1e-5, rtol=1e-5)
    assert fit.converged and all(math.isfinite(r["bce"]) for r in fit.cv)
    # The one-positive label is solved (it has both values) and predicts its rarity.
    assert torch.sigmoid(torch.tensor(fit.bias_std[4].item())) < 0.05


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda x, y: (x, y[:-1]), "multi-hot rows"),
        (lambda x, y: (x, y[:, 0]), "multi-hot rows"),
        (lambda x, y: (x.index_put((torch.tensor(0), torch.tensor(0)), torch.tensor(float("nan"))), y), "NaN"),
        (lambda x, y: (x, y.index_put((torch.tensor(0), torch.tensor(0)), torch.tensor(float("inf")))), "NaN or inf"),
        (lambda x, y: (x, y * 2), "0 or 1"),
    ],
    ids=["rows", "one_dimensional", "nan_features", "inf_labels", "not_binary"],
)
def test_bad_inputs_raise_a_clear_value_error(change, message):
    x, y = change(*_data(n=40))
    with pytest.raises(ValueError, match=message):
        fit_multilabel_logistic(x, y, l2_grid=[1e-1])


def test_same_seed_same_head_and_a_json_summary_keyed_like_the_logistic_one():
    x, y = _data(n=120, seed=5)
    a = fit_multilabel_logistic(x, y, l2_grid=_GRID, seed=3)
    b = fit_multilabel_logistic(x, y.bool(), l2_grid=_GRID, seed=3)  # bool multi-hot is the same labels
    assert torch.equal(a.weight, b.weight) and a.cv == b.cv
    summary = json.loads(json.dumps(a.to_dict()))
    single: LogisticFit = fit_logistic(x, y[:, 0].long(), l2_grid=[1e-1])
    assert single.to_dict()["estimator"] == "logistic" and summary["estimator"] == "multilabel_logistic"
    assert set(single.to_dict()) <= set(summary) and summary["num_classes"] == y.shape[1]
    assert len(summary["cv"]) == len(_GRID) and summary["constant_labels"] == []


def test_fit_linear_head_dispatches_multi_label_and_loads_the_head():
    x, y = _data(n=120, seed=6)
    backbone = _fake_backbone(num_labels=y.shape[1], features=x.shape[1])
    fit = fit_linear_head(backbone, x, y, task="multi_label", l2_grid=[1e-1], folds=3)
    assert fit.to_dict()["estimator"] == "multilabel_logistic"
    assert torch.equal(backbone.model.head.weight.detach(), fit.weight)
    assert torch.equal(backbone.model.head.bias.detach(), fit.bias)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):  # labels for a different head
        fit_linear_head(_fake_backbone(4, x.shape[1]), x, y, task="multi_label")
    with pytest.raises(ValueError, match="task must be"):
        fit_linear_head(backbone, x, y, task="token_classification")

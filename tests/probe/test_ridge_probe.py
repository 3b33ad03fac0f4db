"""The regression probe: agreement with scikit-learn's Ridge and an independent k-fold, a zero gradient, more
penalty for noisier targets, exact fold-back, bad inputs, and fit_linear_head's regression dispatch."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold
from sklearn.preprocessing import StandardScaler

from peft_ladder.probe import DEFAULT_L2_GRID, fit_linear_head, fit_ridge


def _data(n: int = 200, d: int = 12, noise: float = 1.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw features with mixed scales and offsets; a linear target plus noise, standardised as the caller does."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = z @ torch.randn(d, generator=gen, dtype=torch.float64) + noise * torch.randn(
        n, generator=gen, dtype=torch.float64
    )
    x = z * torch.logspace(-1, 1, d, dtype=torch.float64) + 3.0
    return x.float(), ((y - y.mean()) / y.std()).float()


def _standardised(fit, x: torch.Tensor) -> np.ndarray:
    return ((x.double() - fit.mean) / fit.scale).numpy()


@pytest.mark.parametrize(("n", "d"), [(200, 12), (60, 150)], ids=["tall", "wide"])
def test_matches_sklearn_ridge_on_standardised_features_at_the_chosen_penalty(n, d):
    x, y = _data(n=n, d=d)
    fit = fit_ridge(x, y)
    # Objective mse / 2 + l2 / 2 ||w||^2 is sklearn's ||y - Zw||^2 + alpha ||w||^2 over 2n: alpha = l2 * n.
    sk = Ridge(alpha=fit.l2 * n, solver="svd").fit(_standardised(fit, x), y.double().numpy())
    np.testing.assert_allclose(fit.weight_std[0].numpy(), sk.coef_, atol=1e-6, rtol=0)
    assert fit.bias_std.item() == pytest.approx(sk.intercept_, abs=1e-6)
    assert fit.weight.shape == (1, d) and fit.bias.shape == (1,)


def test_the_gradient_vanishes_at_the_closed_form_solution():
    x, y = _data(n=80, d=40, seed=1)
    fit = fit_ridge(x, y)
    z = torch.from_numpy(_standardised(fit, x))
    w = fit.weight_std.clone().requires_grad_(True)
    b = fit.bias_std.clone().requires_grad_(True)
    loss = ((z @ w.T + b - y.double()[:, None]) ** 2).mean() / 2 + fit.l2 / 2 * (w * w).sum()
    loss.backward()
    assert max(float(w.grad.abs().max()), float(b.grad.abs().max())) < 1e-10  # autograd, not the fit's own sum
    assert fit.converged and fit.iterations == 0 and fit.grad_norm < 1e-10


def test_cross_validation_picks_more_penalty_as_the_noise_grows():
    chosen = [fit_ridge(*_data(noise=noise, seed=2)).l2 for noise in (0.1, 1.0, 3.0, 10.0)]
    assert chosen == sorted(chosen) and chosen[-1] > 100 * chosen[0], chosen


def test_cv_records_are_an_independent_kfold_of_sklearn_ridge_and_near_ties_go_to_the_larger_penalty():
    x, y = _data(n=150, noise=3.0, seed=3)
    fit = fit_ridge(x, y, folds=4, seed=7)
    assert [r["l2"] for r in fit.cv] == sorted(DEFAULT_L2_GRID, reverse=True) and fit.folds == 4
    xs, ys = x.double().numpy(), y.double().numpy()
    for record in fit.cv[::4]:  # every fourth grid value: enough to catch a wrong fold, scaler or alpha
        errors = []
        for train, val in KFold(4, shuffle=True, random_state=7).split(xs):
            scaler = StandardScaler().fit(xs[train])
            sk = Ridge(alpha=record["l2"] * len(train), solver="svd").fit(scaler.transform(xs[train]), ys[train])
            errors.append(float(np.mean((sk.predict(scaler.transform(xs[val])) - ys[val]) ** 2)))
        assert record["mse"] == pytest.approx(np.mean(errors), rel=1e-9)
        assert record["mse_se"] == pytest.approx(np.std(errors, ddof=1) / 2, rel=1e-6)
    best = min(r["mse"] for r in fit.cv)
    assert fit.l2 == max(r["l2"] for r in fit.cv if r["mse"] <= best + 1e-3 * best + 1e-12)


def test_the_raw_head_reproduces_the_standardised_predictions_and_ignores_a_constant_column():
    x, y = _data(seed=4)
    x = torch.cat([x, torch.full((len(x), 1), 5.0)], 1)
    fit = fit_ridge(x, y)
    head = torch.nn.Linear(x.shape[1], 1)
    with torch.no_grad():
        head.weight.copy_(fit.weight)
        head.bias.copy_(fit.bias)
        raw = head(x).double()[:, 0]
    standardised = torch.from_numpy(_standardised(fit, x)) @ fit.weight_std[0] + fit.bias_std
    torch.testing.assert_close(raw, standardised, atol=1e-5, rtol=1e-5)  # float32 storage of the head only
    assert fit.weight[0, -1] == 0.0  # nothing to learn from a constant


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda x, y: (x, y[:-1]), r"targets must be \(40,\)"),
        (lambda x, y: (x, y[:, None]), r"targets must be \(40,\)"),
        (lambda x, y: (x, y.round().long()), "floating point"),
        (lambda x, y: (x, y.index_put((torch.tensor(3),), torch.tensor(float("nan")))), "NaN"),
        (lambda x, y: (x.index_put((torch.tensor(0), torch.tensor(1)), torch.tensor(float("inf"))), y), "NaN or inf"),
        (lambda x, y: (x[:, 0], y), r"features must be \(N, D\)"),
    ],
    ids=["rows", "column", "integer", "nan_targets", "inf_features", "one_dimensional_features"],
)
def test_bad_inputs_raise_a_clear_value_error(change, message):
    x, y = change(*_data(n=40))
    with pytest.raises(ValueError, match=message):
        fit_ridge(x, y)


def test_fit_linear_head_dispatches_regression_and_loads_the_head():
    x, y = _data(n=100, seed=5)
    model = torch.nn.Module()
    model.head = torch.nn.Linear(x.shape[1], 1)
    backbone = SimpleNamespace(
        layout=SimpleNamespace(head_modules=["head"]), model=model, num_labels=1, spec=SimpleNamespace(name="fake")
    )
    fit = fit_linear_head(backbone, x, y, task="regression", folds=3)
    summary = json.loads(json.dumps(fit.to_dict()))
    assert summary["estimator"] == "ridge" and summary["iterations"] == 0 and summary["converged"]
    assert len(summary["cv"]) == len(DEFAULT_L2_GRID)
    assert torch.equal(model.head.weight.detach(), fit.weight) and torch.equal(model.head.bias.detach(), fit.bias)
    backbone.num_labels = 2
    with pytest.raises(ValueError, match="one output"):
        fit_linear_head(backbone, x, y, task="regression")

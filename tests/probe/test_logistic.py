"""The converged frozen baseline: agreement with scikit-learn, exact fold-back, convergence, edge cases."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from peft_ladder.probe import DEFAULT_L2_GRID, LogisticFit, cv_score, fit_logistic


def _data(seed: int = 0, n: int = 2300, classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    x, y = make_classification(
        n_samples=n,
        n_features=20,
        n_informative=8,
        n_redundant=0,
        n_classes=classes,
        n_clusters_per_class=1,
        random_state=seed,
    )
    return x.astype(np.float32), y


# A short grid for tests about something other than the grid: the small-l2 end of the default one holds most
# of the L-BFGS iterations.
_SHORT_GRID = [1e-3, 1e-2, 1e-1, 1.0]


def _separable(n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes told apart by a tiny column (margin 0.002) next to nine columns of large noise."""
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    signal = (2 * y - 1) * (0.002 + 0.01 * torch.rand(n, generator=gen))
    return torch.cat([signal[:, None], 10 * torch.randn(n, 9, generator=gen)], 1), y


def _head_accuracy(fit: LogisticFit, x: np.ndarray, y: np.ndarray) -> float:
    logits = torch.from_numpy(x) @ fit.weight.T + fit.bias
    return float((logits.argmax(1).numpy() == y).mean())


@pytest.mark.parametrize("scaled", [False, True], ids=["unit_scale", "mixed_scales"])
def test_held_out_accuracy_matches_sklearn_logistic_regression_cv(scaled):
    x, y = _data()
    if scaled:  # columns from 1e-3 to 1e3 apart, offsets as large as the spread: standardisation must undo both
        rng = np.random.default_rng(0)
        spread = (10 ** rng.uniform(-3, 3, x.shape[1])).astype(np.float32)
        x = x * spread + spread * rng.normal(size=x.shape[1]).astype(np.float32)
    train, test = slice(0, 300), slice(300, None)
    fit = fit_logistic(torch.from_numpy(x[train]), torch.from_numpy(y[train]))
    # Same grid in sklearn's units (C = 1 / (l2 * n_train)) and the same criterion: with accuracy scoring the
    # CV curve has plateaus and either library may land anywhere on them (gaps up to 0.034 over 12 seeds).
    cs = [1.0 / (l2 * 300) for l2 in DEFAULT_L2_GRID]
    sk = make_pipeline(
        StandardScaler(),
        LogisticRegressionCV(Cs=cs, cv=StratifiedKFold(5), max_iter=5000, scoring="neg_log_loss"),
    ).fit(x[train], y[train])
    expected = float((sk.predict(x[test]) == y[test]).mean())
    assert fit.converged
    assert _head_accuracy(fit, x[test], y[test]) == pytest.approx(expected, abs=0.01)


def test_raw_head_gives_the_standardised_space_logits():
    x, y = _data(n=300)
    x = x * np.linspace(0.1, 10, x.shape[1], dtype=np.float32) + 3.0  # non-trivial mean and scale to fold back
    fit = fit_logistic(torch.from_numpy(x), torch.from_numpy(y))
    head = torch.nn.Linear(x.shape[1], fit.weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(fit.weight)
        head.bias.copy_(fit.bias)
        raw = head(torch.from_numpy(x)).double()
    z = (torch.from_numpy(x).double() - fit.mean) / fit.scale
    standardised = z @ fit.weight_std.T + fit.bias_std
    # float32 storage of the head is the only difference (logits here are of order 10).
    torch.testing.assert_close(raw, standardised, atol=1e-4, rtol=1e-5)


def test_separable_problem_that_slow_sgd_has_not_solved_reaches_training_accuracy_one():
    x, y = _separable()
    n = len(y)
    sgd_head = torch.nn.Linear(10, 2)
    torch.nn.init.zeros_(sgd_head.weight)
    torch.nn.init.zeros_(sgd_head.bias)
    optimizer = torch.optim.SGD(sgd_head.parameters(), lr=1e-3)
    for _ in range(20):  # 20 epochs of batch-size-10 SGD
        for rows in torch.arange(n).split(10):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(sgd_head(x[rows]), y[rows]).backward()
            optimizer.step()
    with torch.no_grad():
        assert (sgd_head(x).argmax(1) == y).float().mean() < 0.9
    fit = fit_logistic(x, y)
    assert fit.converged and fit.grad_norm < 1e-3
    assert ((x @ fit.weight.T + fit.bias).argmax(1) == y).float().mean() == 1.0


def test_stronger_penalty_shrinks_the_weights():
    x, y = _data(n=300)
    grid = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    norms = [
        float(fit_logistic(torch.from_numpy(x), torch.from_numpy(y), l2_grid=[l2]).weight_std.norm()) for l2 in grid
    ]
    assert all(a > b for a, b in zip(norms, norms[1:])), norms


def test_constant_columns_a_two_row_class_and_extra_classes():
    x, y = _data(n=200, classes=3)
    x = np.concatenate([x, np.zeros((200, 1), np.float32), np.full((200, 1), 5.0, np.float32)], 1)
    y = y.copy()
    y[np.flatnonzero(y == 2)[2:]] = 0  # class 2 keeps two rows
    fit = fit_logistic(torch.from_numpy(x), torch.from_numpy(y), num_classes=5)
    assert fit.weight.shape == (5, 22) and fit.bias.shape == (5,)
    assert torch.isfinite(fit.weight).all() and torch.isfinite(fit.bias).all()
    assert fit.folds == 2 and fit.stratified  # k drops to the two-row class's count
    assert torch.equal(fit.weight[:, 20:], torch.zeros(5, 2))  # nothing to learn from a constant
    logits = torch.from_numpy(x) @ fit.weight.T + fit.bias
    # Classes 3 and 4 never occur: their logits sit below every present class on every row.
    assert (logits[:, 3:].max(1).values < logits[:, :3].max(1).values).all()
    assert fit.converged
    assert all(np.isfinite(r["log_loss"]) for r in fit.cv)


def test_single_row_class_falls_back_to_plain_folds():
    x, y = _data(n=150, classes=3)
    y = y.copy()
    y[np.flatnonzero(y == 2)[1:]] = 1  # class 2 keeps one row: it cannot be stratified
    fit = fit_logistic(torch.from_numpy(x), torch.from_numpy(y))
    assert not fit.stratified and fit.folds == 2
    assert fit.weight.shape == (3, 20) and torch.isfinite(fit.weight).all()


def test_same_seed_same_head_and_json_summary():
    x, y = _data(n=200)
    a = fit_logistic(torch.from_numpy(x), torch.from_numpy(y), seed=3, l2_grid=_SHORT_GRID)
    b = fit_logistic(torch.from_numpy(x), torch.from_numpy(y), seed=3, l2_grid=_SHORT_GRID)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias) and a.cv == b.cv
    summary = json.loads(json.dumps(a.to_dict()))
    assert summary["l2"] == a.l2 and len(summary["cv"]) == len(_SHORT_GRID)


@pytest.mark.parametrize("select", ["log_loss", "accuracy"])
def test_selection_takes_the_best_cv_score_and_breaks_ties_towards_more_penalty(select):
    # On the separable problem CV accuracy is 1.0 at every l2 up to 0.01: a plateau whose largest l2 must win.
    x, y = _separable() if select == "accuracy" else map(torch.from_numpy, _data(n=200))
    grid = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    fit = fit_logistic(x, y, select=select, l2_grid=grid)
    sign = 1.0 if select == "log_loss" else -1.0
    best = min(sign * r[select] for r in fit.cv)
    near = [r["l2"] for r in fit.cv if sign * r[select] <= best + 1e-3 * abs(best) + 1e-12]
    assert fit.l2 == max(near)
    if select == "accuracy":
        assert len(near) >= 2  # the tie was there to break
    score = cv_score(x, y, select=select, l2_grid=grid)
    chosen = next(r for r in fit.cv if r["l2"] == fit.l2)
    assert score["l2"] == fit.l2
    assert {k: score[k] for k in chosen} == chosen


def test_a_dead_feature_column_does_not_blow_up_the_head():
    """A column at 1e-33 everywhere (all-MiniLM-L6-v2 has one) must not be divided by its own spread."""
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=200, n_features=12, n_informative=6, n_classes=3, random_state=0)
    x = torch.tensor(x, dtype=torch.float32)
    x[:, 5] = torch.randn(200) * 1e-33
    kept = [i for i in range(12) if i != 5]
    fit = fit_logistic(x, torch.tensor(y), folds=3, l2_grid=[1e-2, 1e-1])
    without = fit_logistic(x[:, kept], torch.tensor(y), folds=3, l2_grid=[1e-2, 1e-1])
    assert torch.isfinite(fit.weight).all() and fit.weight.abs().max() < 1e3
    # The dead column contributes nothing: the head is the one fitted without it.
    torch.testing.assert_close(fit.weight[:, kept], without.weight, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cv_score_ends_the_path_after_the_curve_turns_and_chooses_as_the_whole_path_does(seed, monkeypatch):
    from peft_ladder.probe import logistic

    x, y = map(torch.from_numpy, _data(seed=seed, n=240))
    x = x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))  # overlap: the curve turns
    whole = cv_score(x, y, stop_after=None, seed=seed)
    solves = []
    real = logistic._solve
    monkeypatch.setattr(logistic, "_solve", lambda *a, **k: solves.append(a[2]) or real(*a, **k))
    ended = cv_score(x, y, seed=seed)
    assert ended == whole  # the same l2 and the same fold scores
    folds = ended["folds"]
    scored = len(solves) // folds
    # It stopped CV_SCORE_STOP_AFTER grid values after the chosen one, before the smallest penalties.
    assert scored == DEFAULT_L2_GRID[::-1].index(ended["l2"]) + 1 + logistic.CV_SCORE_STOP_AFTER < len(DEFAULT_L2_GRID)
    assert min(solves) > min(DEFAULT_L2_GRID)


def test_grouped_folds_keep_a_sentence_in_one_fold():
    """A tagger's tokens share their sentence: here every token of a sentence carries the sentence's random vector
    and random tag, so the tag is learnable only by having seen the sentence. Folds that split sentences score that
    memory; folds grouped by sentence score what generalises (chance)."""
    g = torch.Generator().manual_seed(0)
    sentences, per = 80, 5
    vectors, tags = torch.randn(sentences, 40, generator=g), torch.randint(0, 2, (sentences,), generator=g)
    groups = torch.arange(sentences).repeat_interleave(per)
    features = vectors[groups] + 0.01 * torch.randn(sentences * per, 40, generator=g)
    labels = tags[groups]
    split = cv_score(features, labels, 2, seed=0)
    grouped = cv_score(features, labels, 2, seed=0, groups=groups)
    assert split["accuracy"] > 0.9 and grouped["accuracy"] < 0.7

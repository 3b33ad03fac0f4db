"""The cheap baselines' estimators, one per task, each with its penalty chosen by k-fold CV on the training rows.

single_label: a multinomial logistic regression, C by stratified k-fold accuracy. multi_label: one binary
logistic regression per label sharing one C, chosen by k-fold held-out binary log-loss. regression: ridge on the
standardised target, alpha chosen by k-fold held-out mean squared error. The eval splits are only ever predicted.
token_classification's estimator (word_baseline.py) reuses single_label's with one row per word: `choose_c_on` over
its sentence-grouped folds, then `refit_logreg`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold

from peft_ladder.tasks import MULTI_LABEL_THRESHOLD

# One value per decade, ascending (ties go to the first). Wide enough for both feature kinds: l2-normalised
# TF-IDF rows need a large C to move off the majority class, a few hundred standardised pixels can want a small one.
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
# One value per decade, ascending (near-ties go to the last, the most regularised). scikit-learn's ridge penalises
# the summed squared error, so useful alphas grow with the row count; at the top the fit is about the training mean,
# which is where a target with no signal in the features should land. Below 0.001 the held-out MSE was flat (the
# minimum-norm interpolant) on TF-IDF, the features that want the smallest alphas.
ALPHA_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0)
# lbfgs stopped within ~110 iterations in every check (3,000 texts, 3,000 images, scikit-learn's digits; C from
# 0.001 to 100). 2000 leaves room; a fit that still runs out warns: ConvergenceWarning is never silenced here.
MAX_ITER = 2000
CV_TOL = 1e-3  # the final fit keeps scikit-learn's 1e-4
MAX_FOLDS = 5
# multi_label and regression: mean CV losses within 0.1% of the best count as ties and go to the more regularised
# model, as in the solved probe (peft_ladder/probe/logistic.py): differences that small sit far inside the
# fold-to-fold spread, and on a target the features cannot predict the loss curve is that flat over the top alphas.
NEAR_TIE = 1e-3
# Held-out probabilities are clipped here before the log, so one confident miss costs ~35 nats, not infinity.
PROBABILITY_FLOOR = 1e-15

Features = np.ndarray | sparse.spmatrix


@dataclass
class Fitted:
    """One estimator fitted on a feature matrix: everything a baseline reports that does not depend on the features.

    Attributes:
        tag: the baseline name's second half: "logreg", "ovr_logreg" or "ridge".
        estimator: the description's opening words, e.g. "Ridge regression (...)".
        how: the description's clause saying how the penalty was chosen.
        predictions: split name -> predictions (see `BaselineResult.predictions`; token_classification: one tag id
            per word of the split, in order, which the baseline pads into rows).
        params: the chosen penalty, the CV scores behind it and the estimator's settings (JSON-safe).
        scores: multi_label: split name -> each label's probability (n, labels), what mAP ranks; else None.
    """

    tag: str
    estimator: str
    how: str
    predictions: dict[str, np.ndarray]
    params: dict[str, Any]
    scores: dict[str, np.ndarray] | None = None


def _near_best(losses: np.ndarray) -> np.ndarray:
    """Indices of the losses within `NEAR_TIE` of the smallest, ascending."""
    return np.flatnonzero(losses <= losses.min() + NEAR_TIE * abs(losses.min()) + 1e-12)


def _predict_splits(evals: dict[str, Features], predict: Any, empty: np.ndarray) -> dict[str, np.ndarray]:
    """`predict` on every split; an empty split gets `empty` (scikit-learn refuses zero rows)."""
    return {split: predict(x) if x.shape[0] else empty for split, x in evals.items()}


# ---- single_label ------------------------------------------------------------------------------------------------
@dataclass
class ChosenC:
    """The outcome of cross-validating C."""

    c: float
    cv: str  # "stratified_kfold", "kfold", "group_kfold" or "none"
    folds: int
    scores: dict[str, float]  # str(C) -> mean fold accuracy


def _splitter(labels: np.ndarray, seed: int) -> StratifiedKFold | KFold | None:
    """Stratified k folds with k = min(5, smallest class count); plain KFold when a class has one row."""
    counts = np.unique(labels, return_counts=True)[1]
    if len(counts) < 2 or len(labels) < 2:
        return None
    smallest = int(counts.min())
    if smallest >= 2:
        return StratifiedKFold(n_splits=min(MAX_FOLDS, smallest), shuffle=True, random_state=seed)
    return KFold(n_splits=min(MAX_FOLDS, len(labels)), shuffle=True, random_state=seed)


def _fit(features: Features, labels: np.ndarray, c: float, seed: int) -> LogisticRegression | DummyClassifier:
    """A logistic regression (lbfgs handles sparse input); a constant when only one class is seen."""
    if np.unique(labels).size < 2:
        return DummyClassifier(strategy="most_frequent").fit(features, labels)
    return LogisticRegression(C=c, solver="lbfgs", max_iter=MAX_ITER, random_state=seed).fit(features, labels)


def _path_model(seed: int) -> LogisticRegression:
    """The CV model: each fit warm-starts from the previous, smaller C's solution and stops at a looser tol.

    The scores only rank the Cs, and together these cut the CV time about 3x on 3,000 texts with unchanged rankings.
    """
    return LogisticRegression(solver="lbfgs", tol=CV_TOL, max_iter=MAX_ITER, warm_start=True, random_state=seed)


def _fold_scores(features: Features, labels: np.ndarray, train: np.ndarray, val: np.ndarray, seed: int) -> list[float]:
    """Validation accuracy of every C in `C_GRID` on one fold."""
    if np.unique(labels[train]).size < 2:
        return [float(np.mean(labels[val] == labels[train][0]))] * len(C_GRID)
    model = _path_model(seed)
    scores = []
    for c in C_GRID:
        model.set_params(C=c).fit(features[train], labels[train])
        scores.append(float(np.mean(model.predict(features[val]) == labels[val])))
    return scores


def choose_c_on(
    features: Features, labels: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], kind: str, seed: int
) -> ChosenC:
    """Mean fold accuracy per C over `folds`; ties go to the smaller C (the more regularised model). No folds: C=1.

    Args:
        features: training features.
        labels: their label ids (n,) int64.
        folds: (train, validation) row indices per fold; single_label's are stratified, token_classification's keep
            each sentence in one fold.
        kind: how the folds were made, reported as `cv`.
        seed: seeds the fits.

    Returns:
        The chosen C, with the folds and the mean accuracy of every C behind it.
    """
    if not folds:
        return ChosenC(c=1.0, cv="none", folds=0, scores={})
    means = np.mean([_fold_scores(features, labels, tr, va, seed) for tr, va in folds], axis=0)
    best = int(np.flatnonzero(means == means.max())[0])  # C_GRID ascends, so the first best is the smallest C
    return ChosenC(c=C_GRID[best], cv=kind, folds=len(folds), scores={str(c): float(m) for c, m in zip(C_GRID, means)})


def _choose_c(features: Features, labels: np.ndarray, seed: int) -> ChosenC:
    """single_label's choice of C: stratified k-fold accuracy on the training rows (see `_splitter`)."""
    splitter = _splitter(labels, seed)
    if splitter is None:
        return choose_c_on(features, labels, [], "none", seed)
    folds = list(splitter.split(np.zeros(len(labels)), labels))
    kind = "stratified_kfold" if isinstance(splitter, StratifiedKFold) else "kfold"
    return choose_c_on(features, labels, folds, kind, seed)


def _n_iter(model: Any) -> int:
    return int(np.max(model.n_iter_)) if isinstance(model, LogisticRegression) else 0


def refit_logreg(
    train: Features, y: np.ndarray, evals: dict[str, Features], seed: int, choice: ChosenC, scored_by: str, few: str
) -> tuple[dict[str, np.ndarray], dict[str, Any], str]:
    """Refit at the chosen C on all of `train` and predict label ids (int64) for every eval split.

    Args:
        train: training features.
        y: their label ids (n,) int64.
        evals: split name -> features to predict.
        seed: seeds the fit.
        choice: the C from `choose_c_on`.
        scored_by: what the folds scored, e.g. "stratified kfold accuracy".
        few: what was too few to cross-validate, e.g. "rows or classes".

    Returns:
        The predictions, the params and the description's clause on how C was chosen.
    """
    model = _fit(train, y, choice.c, seed)
    predictions = _predict_splits(evals, lambda x: model.predict(x).astype(np.int64), np.empty(0, dtype=np.int64))
    n_iter = _n_iter(model)
    params = {
        "C": choice.c,
        "C_grid": list(C_GRID),
        "cv": choice.cv,
        "cv_folds": choice.folds,
        "cv_accuracy": choice.scores,
        "n_train": len(y),
        "classes": [int(c) for c in np.unique(y)],
        "n_iter": n_iter,
        "converged": n_iter < MAX_ITER,
    }
    if choice.cv == "none":
        return predictions, params, f"C=1 (too few {few} to cross-validate)"
    grid = f"{C_GRID[0]:g}..{C_GRID[-1]:g}"
    how = f"C={choice.c:g} chosen from {grid} by {choice.folds}-fold {scored_by} on the training rows"
    return predictions, params, how


def fit_single_label(train: Features, y: np.ndarray, evals: dict[str, Features], seed: int) -> Fitted:
    """Choose C on `train`, refit on all of it, predict label ids (int64) for every eval split.

    Args:
        train: training features.
        y: their label ids (n,) int64.
        evals: split name -> features to predict.
        seed: seeds the CV shuffle.
    """
    choice = _choose_c(train, y, seed)
    scored_by = f"{choice.cv.replace('_', ' ')} accuracy"
    predictions, params, how = refit_logreg(train, y, evals, seed, choice, scored_by, "rows or classes")
    return Fitted("logreg", "Logistic regression (lbfgs, multinomial)", how, predictions, params)


# ---- multi_label -------------------------------------------------------------------------------------------------
def _plain_folds(n_rows: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffled KFold with k = min(5, rows); none below two rows. Stratification needs one class per row."""
    if n_rows < 2:
        return []
    return list(KFold(n_splits=min(MAX_FOLDS, n_rows), shuffle=True, random_state=seed).split(np.zeros(n_rows)))


def _varies(column: np.ndarray) -> bool:
    return bool(column.min() != column.max())


def _confusion(predicted: np.ndarray, truth: np.ndarray) -> list[int]:
    """True positives, false positives and false negatives of 0/1 predictions."""
    predicted, truth = predicted.astype(bool), truth.astype(bool)
    return [int(np.sum(predicted & truth)), int(np.sum(predicted & ~truth)), int(np.sum(~predicted & truth))]


def _binary_log_loss(positive: np.ndarray, probability: np.ndarray) -> float:
    """Summed binary cross-entropy of 0/1 targets under predicted probabilities of 1."""
    p = np.clip(probability, PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)
    return float(-np.sum(positive * np.log(p) + (1 - positive) * np.log(1.0 - p)))


def _multi_label_fold(
    features: Features, y: np.ndarray, train: np.ndarray, val: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Held-out mean binary log-loss and micro-F1 of every C on one fold; None when no label varies in its training.

    A label constant in the fold's training rows is predicted as that constant whatever C is, so it joins the
    micro-F1 counts but not the log-loss, which it could only shift by the same amount at every C.
    """
    varying = [k for k in range(y.shape[1]) if _varies(y[train, k])]
    if not varying:
        return None
    loss = np.zeros(len(C_GRID))
    counts = np.zeros((len(C_GRID), 3))  # true positives, false positives, false negatives
    for k in range(y.shape[1]):
        truth = y[val, k]
        if k not in varying:
            counts += _confusion(np.full(len(val), y[train[0], k]), truth)
            continue
        model = _path_model(seed)
        for i, c in enumerate(C_GRID):
            probability = model.set_params(C=c).fit(features[train], y[train, k]).predict_proba(features[val])[:, 1]
            loss[i] += _binary_log_loss(truth, probability)
            counts[i] += _confusion(probability > MULTI_LABEL_THRESHOLD, truth)
    true_pos, false_pos, false_neg = counts.T
    # micro-F1 is 1 when there is nothing to find and nothing was predicted (no positives anywhere in the fold).
    f1 = np.where(counts.sum(axis=1) > 0, 2 * true_pos / np.maximum(2 * true_pos + false_pos + false_neg, 1), 1.0)
    return loss / (len(val) * len(varying)), f1


def fit_multi_label(train: Features, y: np.ndarray, evals: dict[str, Features], seed: int) -> Fitted:
    """One binary logistic regression per label, one shared C; predicts a 0/1 (n, K) int64 matrix at p > 0.5.

    C is chosen by the held-out mean binary log-loss, not micro-F1: log-loss is smooth in C and scores every
    probability, where micro-F1 only counts the rows that cross 0.5, ties often on a few hundred rows and ignores
    rare labels that never get predicted. Near-ties go to the smaller C. Micro-F1 is still reported per C.

    Args:
        train: training features.
        y: their labels (n, K) int64 0/1.
        evals: split name -> features to predict.
        seed: seeds the CV shuffle.
    """
    n_labels = y.shape[1]
    scored = [s for tr, va in _plain_folds(len(y), seed) if (s := _multi_label_fold(train, y, tr, va, seed))]
    c = 1.0
    params: dict[str, Any] = {"C": c, "C_grid": list(C_GRID), "cv": "none", "cv_folds": 0}
    if scored:
        loss, f1 = np.mean([s[0] for s in scored], axis=0), np.mean([s[1] for s in scored], axis=0)
        c = C_GRID[int(_near_best(loss)[0])]  # C_GRID ascends: the first near-best is the most regularised
        params.update(C=c, cv="kfold", cv_folds=len(scored))
        params["cv_log_loss"] = {str(g): float(v) for g, v in zip(C_GRID, loss)}
        params["cv_micro_f1"] = {str(g): float(v) for g, v in zip(C_GRID, f1)}
    models = [_fit(train, y[:, k], c, seed) for k in range(n_labels)]

    def probabilities(x: Features) -> np.ndarray:
        # DummyClassifier's predict_proba has one column when it saw one class, so constants come from predict.
        columns = [m.predict_proba(x)[:, 1] if isinstance(m, LogisticRegression) else m.predict(x) for m in models]
        return np.stack(columns, axis=1).astype(np.float64)

    scores = _predict_splits(evals, probabilities, np.empty((0, n_labels), dtype=np.float64))
    predictions = {split: (p > MULTI_LABEL_THRESHOLD).astype(np.int64) for split, p in scores.items()}
    n_iter = max(_n_iter(m) for m in models)
    params.update(
        n_train=len(y),
        n_labels=n_labels,
        label_positives=[int(v) for v in y.sum(axis=0)],
        constant_labels=[k for k in range(n_labels) if not _varies(y[:, k])],
        threshold=MULTI_LABEL_THRESHOLD,
        n_iter=n_iter,
        converged=n_iter < MAX_ITER,
    )
    if not scored:
        how = "C=1 (too few rows, or no label varies within a fold's training rows, to cross-validate)"
    else:
        grid = f"{C_GRID[0]:g}..{C_GRID[-1]:g}"
        how = (
            f"one shared C={c:g} chosen from {grid} by {len(scored)}-fold held-out mean binary log-loss on the "
            f"training rows"
        )
    estimator = (
        f"One-vs-rest logistic regression (lbfgs, one binary model per label, a label predicted at "
        f"p > {MULTI_LABEL_THRESHOLD:g}; a label constant in training predicts that constant)"
    )
    return Fitted("ovr_logreg", estimator, how, predictions, params, scores)


# ---- regression --------------------------------------------------------------------------------------------------
def fit_regression(train: Features, y: np.ndarray, evals: dict[str, Features], seed: int) -> Fitted:
    """Ridge regression on the standardised target, alpha by k-fold held-out MSE; predicts float64 in its units.

    Ridge's solution is linear in the target, so standardising it changes neither the chosen alpha nor the
    predictions in exact arithmetic. It is done for precision: scikit-learn solves in the features' dtype (float32
    for TF-IDF), which cannot hold a target of 1e6 +- 1 once the mean is inside it.

    Args:
        train: training features.
        y: their targets (n,) float64.
        evals: split name -> features to predict.
        seed: seeds the CV shuffle.
    """
    mean, spread = float(y.mean()), float(y.std())
    # A constant target's std is rounding, not 0 (seven 0.1s give 1.4e-17): dividing by it would blow rounding up
    # to unit-sized targets. Such a target is left centred (all zeros) and predicted as its mean.
    std = spread if spread > 1e-12 * max(abs(mean), 1.0) else 1.0
    z = (y - mean) / std
    folds = _plain_folds(len(y), seed)
    alpha = 1.0
    params: dict[str, Any] = {"alpha": alpha, "alpha_grid": list(ALPHA_GRID), "cv": "none", "cv_folds": 0}
    if folds:
        mse = np.zeros(len(ALPHA_GRID))
        for tr, va in folds:
            for i, a in enumerate(ALPHA_GRID):
                predicted = Ridge(alpha=a).fit(train[tr], z[tr]).predict(train[va])
                mse[i] += np.mean((predicted - z[va]) ** 2) / len(folds)
        alpha = ALPHA_GRID[int(_near_best(mse)[-1])]  # ALPHA_GRID ascends: the last near-best is the most regularised
        params.update(alpha=alpha, cv="kfold", cv_folds=len(folds))
        # In the target's units squared, as the metrics read them; std**2 times the standardised MSE.
        params["cv_mse"] = {str(a): float(v * std**2) for a, v in zip(ALPHA_GRID, mse)}
    model = Ridge(alpha=alpha).fit(train, z)
    predictions = _predict_splits(
        evals, lambda x: model.predict(x).astype(np.float64) * std + mean, np.empty(0, dtype=np.float64)
    )
    params.update(n_train=len(y), target_mean=mean, target_std=std)
    if not folds:
        how = "alpha=1 (too few rows to cross-validate)"
    else:
        grid = f"{ALPHA_GRID[0]:g}..{ALPHA_GRID[-1]:g}"
        how = (
            f"alpha={alpha:g} chosen from {grid} by {len(folds)}-fold held-out mean squared error on the training rows"
        )
    estimator = "Ridge regression (target standardised over the training rows, predictions in its units)"
    return Fitted("ridge", estimator, how, predictions, params)


FITTERS = {"single_label": fit_single_label, "multi_label": fit_multi_label, "regression": fit_regression}


def fit_for_task(task: str, train: Features, y: np.ndarray, evals: dict[str, Features], seed: int) -> Fitted:
    """The estimator for `task` (a key of `FITTERS`), with its penalty chosen on `train` alone.

    token_classification is not here: its folds need each word's sentence (`word_baseline.fit_token_classification`).
    """
    if task not in FITTERS:
        raise ValueError(f"no row-level estimator for task {task!r}; use one of {', '.join(FITTERS)}.")
    return FITTERS[task](train, y, evals, seed)

"""Transferability of frozen features, before any training: LogME and a regularised H-score.

Both only rank: a higher score says the frozen features separate the target labels better. Neither
predicts an accuracy, so the ladder records them and never decides on them. The same scores of a
randomly initialised copy of the architecture give the reference point that "pretrained" must beat.

By task: LogME is a Bayesian linear regression per target column, averaged over the columns, so it takes
single-label (one-hot columns), multi-label (one 0/1 column per label) and regression (the standardised target)
alike. H-score compares class means: multi-label averages it over the labels, each a two-class problem;
regression has no classes, and its H-score is None (`unscorable` says why).
"""

from __future__ import annotations

import numpy as np
from sklearn.covariance import ledoit_wolf

from peft_ladder.tasks import Task

# Why H-score is left out of a regression's record.
H_SCORE_NOT_FOR_REGRESSION = (
    "H-score compares class means against the feature spread; a continuous target has no classes"
)


def logme(features: np.ndarray, labels: np.ndarray, max_iter: int = 100, tol: float = 1e-3) -> float:
    """LogME (You et al., ICML 2021): mean over classes of the log marginal evidence per sample of a
    Bayesian linear model from features to the one-hot label, with the prior and noise precisions
    (alpha, beta) set by MacKay's fixed-point updates.

    Args:
        features: (N, D) frozen features.
        labels: (N,) class ids.

    Returns:
        The evidence per sample, averaged over classes (higher = more transferable).
    """
    y_all = np.asarray(labels)
    onehot = (y_all[:, None] == np.unique(y_all)[None, :]).astype(np.float64)  # the classes present, in order
    return logme_columns(features, onehot, max_iter, tol)


def logme_columns(features: np.ndarray, targets: np.ndarray, max_iter: int = 100, tol: float = 1e-3) -> float:
    """LogME's evidence per sample of each target column, averaged over the columns (`logme`'s method).

    Args:
        features: (N, D) frozen features.
        targets: (N, K) real-valued targets, one Bayesian linear regression per column.

    Returns:
        The mean over columns of the log evidence per sample.
    """
    f = np.asarray(features, dtype=np.float64)
    n, d = f.shape
    # Eigen-decomposition of F^T F once; every column reuses it.
    s, v = np.linalg.eigh(f.T @ f)
    s = np.clip(s, 0.0, None)
    evidences = []
    for y in np.ascontiguousarray(np.asarray(targets, dtype=np.float64).T):  # each column contiguous
        proj = v.T @ (f.T @ y)  # F^T y in the eigenbasis
        alpha, beta = 1.0, 1.0
        for _ in range(max_iter):
            gamma = float(np.sum(beta * s / (alpha + beta * s)))
            m = v @ (beta * proj / (alpha + beta * s))  # posterior mean of the weights
            m2 = float(m @ m)
            res2 = float(np.sum((y - f @ m) ** 2))
            new_alpha = gamma / max(m2, 1e-12)
            new_beta = max(n - gamma, 1e-12) / max(res2, 1e-12)
            done = abs(new_alpha / new_beta - alpha / beta) <= tol * (alpha / beta)
            alpha, beta = new_alpha, new_beta
            if done:
                break
        m = v @ (beta * proj / (alpha + beta * s))
        m2, res2 = float(m @ m), float(np.sum((y - f @ m) ** 2))
        evidence = (
            d / 2 * np.log(alpha)
            + n / 2 * np.log(beta)
            - 0.5 * np.sum(np.log(alpha + beta * s))
            - beta / 2 * res2
            - alpha / 2 * m2
            - n / 2 * np.log(2 * np.pi)
        )
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def h_score(features: np.ndarray, labels: np.ndarray) -> float:
    """Regularised H-score: Bao et al.'s (2019) H-score tr(cov(f)^-1 cov(E[f | y])) with the feature
    covariance replaced by its Ledoit-Wolf shrinkage estimate, as Ibrahim et al. (ICLR 2023) advise
    when there are few samples per dimension (the plain inverse is then unstable). Unlike their
    variant we do not scale the between-class term by (1 - shrinkage): near-isotropic features would
    drive the shrinkage to 1 and every score to 0, which no longer ranks anything.

    Args:
        features: (N, D) frozen features.
        labels: (N,) class ids.

    Returns:
        The score (higher = class means stand further apart relative to the feature spread).
    """
    f, inverse = _centred_and_inverse_spread(features)
    return _h_score(f, inverse, np.asarray(labels))


def _centred_and_inverse_spread(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The centred features and the pseudo-inverse of their Ledoit-Wolf covariance (`h_score`)."""
    f = np.asarray(features, dtype=np.float64)
    f = f - f.mean(axis=0, keepdims=True)
    shrunk, _ = ledoit_wolf(f, assume_centered=True)
    return f, np.linalg.pinv(shrunk, hermitian=True)


def _h_score(f: np.ndarray, inverse: np.ndarray, y: np.ndarray) -> float:
    """tr(inverse @ cov(E[f | y])) for centred features `f` and class ids `y`."""
    class_means = np.zeros_like(f)
    for c in np.unique(y):
        rows = y == c
        class_means[rows] = f[rows].mean(axis=0)
    between = class_means.T @ class_means / len(f)
    return float(np.trace(inverse @ between))


def varying_labels(labels: np.ndarray) -> np.ndarray:
    """Indices of the multi-label columns that are 1 in some rows and 0 in others.

    A label constant among the rows says nothing about the features: its H-score is 0 whatever they are, and an
    all-zero column has no finite LogME (the fit is exact, so the noise precision runs to infinity).
    """
    y = np.asarray(labels, dtype=np.float64)
    positives = y.sum(axis=0)
    return np.flatnonzero((positives > 0) & (positives < len(y)))


def multilabel_logme(features: np.ndarray, labels: np.ndarray, max_iter: int = 100, tol: float = 1e-3) -> float:
    """LogME of a multi-label task: each label's 0/1 column a target, as single-label's one-hot columns are, the
    evidence averaged over the labels that vary among the rows (`varying_labels`).

    Args:
        features: (N, D) frozen features.
        labels: (N, K) 0/1 rows, at least one label varying.
    """
    y = np.asarray(labels, dtype=np.float64)
    return logme_columns(features, y[:, _some_varying(y)], max_iter, tol)


def multilabel_h_score(features: np.ndarray, labels: np.ndarray) -> float:
    """The mean over the labels that vary among the rows (`varying_labels`) of each label's two-class H-score
    (`h_score` of the label's 0/1 column); the feature covariance is estimated once for all of them.

    Args:
        features: (N, D) frozen features.
        labels: (N, K) 0/1 rows, at least one label varying.
    """
    y = np.asarray(labels, dtype=np.float64)
    f, inverse = _centred_and_inverse_spread(features)
    return float(np.mean([_h_score(f, inverse, y[:, k]) for k in _some_varying(y)]))


def _some_varying(labels: np.ndarray) -> np.ndarray:
    varying = varying_labels(labels)
    if not len(varying):
        raise ValueError("no label is 1 in some rows and 0 in others: nothing to score the features against")
    return varying


def regression_logme(features: np.ndarray, targets: np.ndarray, max_iter: int = 100, tol: float = 1e-3) -> float:
    """LogME of a regression task (You et al. 2021 score regression targets natively): the Bayesian linear
    regression to the target standardised over the rows. Standardised, because the evidence per sample shifts by
    -log(scale) with the target's units; pretrained and random-init features see the same target either way.

    Args:
        features: (N, D) frozen features.
        targets: (N,) real-valued targets, not constant.
    """
    y = np.asarray(targets, dtype=np.float64)
    if np.ptp(y) == 0:
        raise ValueError("the target is constant among the rows: nothing to score the features against")
    stats = Task.for_regression(y)
    return logme_columns(features, ((y - stats.target_mean) / stats.target_std)[:, None], max_iter, tol)


def unscorable(labels: np.ndarray, task: str = "single_label") -> dict[str, str]:
    """The scores `transferability_scores` reports as None for `task` on these labels, each with the reason."""
    y = np.asarray(labels)
    if task == "regression":
        if np.ptp(y) == 0:
            return {"logme": "the target is constant among the rows", "h_score": H_SCORE_NOT_FOR_REGRESSION}
        return {"h_score": H_SCORE_NOT_FOR_REGRESSION}
    if task == "multi_label" and not len(varying_labels(y)):
        reason = "no label is 1 in some rows and 0 in others"
        return {"logme": reason, "h_score": reason}
    return {}


def transferability_scores(
    features: np.ndarray, labels: np.ndarray, task: str = "single_label"
) -> dict[str, float | None]:
    """Both scores, for the report; None for a score `unscorable` names.

    Args:
        features: (N, D) frozen features.
        labels: single_label: (N,) class ids; multi_label: (N, K) 0/1 rows; regression: (N,) targets.
        task: single_label, multi_label or regression.
    """
    scorers = {
        "single_label": (logme, h_score),
        "multi_label": (multilabel_logme, multilabel_h_score),
        "regression": (regression_logme, None),
    }
    if task not in scorers:
        raise ValueError(f"task must be one of {', '.join(scorers)}, got {task!r}")
    skipped = unscorable(labels, task)
    scores: dict[str, float | None] = {}
    for name, scorer in zip(("logme", "h_score"), scorers[task]):
        scores[name] = None if name in skipped or scorer is None else scorer(features, labels)
    return scores

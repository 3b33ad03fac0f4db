"""Transferability of frozen features, before any training: LogME and a regularised H-score.

Both only rank: a higher score says the frozen features separate the target labels better. Neither
predicts an accuracy, so the ladder records them and never decides on them. The same scores of a
randomly initialised copy of the architecture give the reference point that "pretrained" must beat.
"""

from __future__ import annotations

import numpy as np
from sklearn.covariance import ledoit_wolf


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
    f = np.asarray(features, dtype=np.float64)
    y_all = np.asarray(labels)
    n, d = f.shape
    # Eigen-decomposition of F^T F once; every class reuses it.
    s, v = np.linalg.eigh(f.T @ f)
    s = np.clip(s, 0.0, None)
    evidences = []
    for c in np.unique(y_all):
        y = (y_all == c).astype(np.float64)
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
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    f = f - f.mean(axis=0, keepdims=True)
    shrunk, _ = ledoit_wolf(f, assume_centered=True)
    class_means = np.zeros_like(f)
    for c in np.unique(y):
        rows = y == c
        class_means[rows] = f[rows].mean(axis=0)
    between = class_means.T @ class_means / len(f)
    return float(np.trace(np.linalg.pinv(shrunk, hermitian=True) @ between))


def transferability_scores(features: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Both scores, for the report."""
    return {"logme": logme(features, labels), "h_score": h_score(features, labels)}

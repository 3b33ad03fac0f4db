"""The converged frozen baseline for regression: ridge regression on frozen features, solved in closed form, its
L2 strength chosen by k-fold CV on held-out mean squared error.

Ridge is the exact minimiser of its objective, so there is nothing to converge; the gradient at the solution is
still computed and reported, so that "solved" is checked, not assumed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from peft_ladder.probe.logistic import (
    best_index,
    check_features,
    plain_problem,
    standardize,
    unstandardize,
)

# The closed form's gradient is rounding only (about 1e-15 on standardised targets); above the L-BFGS probes'
# own tolerance something went wrong in the solve, and the fit says so instead of claiming convergence.
_GRAD_TOL = 1e-6


@dataclass
class RidgeFit:
    """A ridge regression ready to load into ``nn.Linear(D, 1)`` on raw features.

    ``weight``/``bias`` act on raw features; ``weight_std``/``bias_std`` are the same solution in the
    standardised space it was solved in (z = (x - mean) / scale), kept for diagnostics and checks.
    """

    weight: torch.Tensor  # (1, D) float32, CPU
    bias: torch.Tensor  # (1,) float32, CPU
    l2: float  # chosen penalty: objective = mean squared error / 2 + l2 / 2 * ||weight_std||^2
    cv: list[dict]  # per grid value, largest l2 first: l2, mse, mse_se
    folds: int
    converged: bool  # closed form: True unless its gradient came out above 1e-6 (a broken solve)
    iterations: int  # always 0: closed form
    grad_norm: float  # final fit: max-abs gradient of the objective at the returned point
    seconds: float
    mean: torch.Tensor  # (D,) float64, CPU: the training rows' mean
    scale: torch.Tensor  # (D,) float64, CPU: the training rows' std, floored
    weight_std: torch.Tensor  # (1, D) float64, CPU
    bias_std: torch.Tensor  # (1,) float64, CPU

    def to_dict(self) -> dict:
        """JSON-safe summary (no tensors), keyed like ``LogisticFit.to_dict``.

        Returns:
            The head's shape, the chosen l2, the CV records and the final fit's gradient.
        """
        return {
            "estimator": "ridge",
            "num_classes": int(self.weight.shape[0]),  # the head's outputs: 1
            "num_features": int(self.weight.shape[1]),
            "l2": self.l2,
            "cv": [dict(r) for r in self.cv],
            "folds": self.folds,
            "stratified": False,  # plain KFold: a continuous target has no classes
            "converged": self.converged,
            "iterations": self.iterations,
            "grad_norm": self.grad_norm,
            "seconds": self.seconds,
        }


@dataclass
class _RidgePath:
    """One training part's SVD, from which the solution at any l2 costs one (r,) scaling and a matmul."""

    rows: int
    right: torch.Tensor  # (D, r): right singular vectors of the standardised rows
    singular: torch.Tensor  # (r,)
    projected: torch.Tensor  # (r,): U^T (y - mean(y))
    target_mean: float  # the unpenalised bias: z is centred, so the bias decouples from the weights

    def weights(self, l2: float) -> torch.Tensor:
        """w solving (Z^T Z / n + l2 I) w = Z^T y / n, as V diag(s / (s^2 + n l2)) U^T y."""
        return self.right @ (self.singular / (self.singular**2 + self.rows * l2) * self.projected)


def _path(z: torch.Tensor, targets: torch.Tensor) -> _RidgePath:
    # Thin SVD once per training part: the whole grid is then a rescaling of singular values. Z = U S V^T is
    # better conditioned than the normal equations' eigendecomposition (their condition number is squared).
    left, singular, right_t = torch.linalg.svd(z, full_matrices=False)
    target_mean = float(targets.mean())
    return _RidgePath(z.shape[0], right_t.T, singular, left.T @ (targets - target_mean), target_mean)


def _check(features: torch.Tensor, targets: torch.Tensor) -> None:
    check_features(features)
    if targets.shape != (features.shape[0],):
        raise ValueError(f"targets must be ({features.shape[0]},), one number per row, got {tuple(targets.shape)}")
    if not targets.dtype.is_floating_point:
        raise ValueError(f"targets must be floating point (standardised by the caller), got {targets.dtype}")
    if not torch.isfinite(targets).all():
        raise ValueError("targets contain NaN or inf")


def _prepare(
    features: torch.Tensor, targets: torch.Tensor, l2_grid: Sequence[float] | None, folds: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, list[float], list[tuple[np.ndarray, np.ndarray]]]:
    """Checked float64 features and targets, the penalty grid (largest first) and the seeded plain folds."""
    _check(features, targets)
    return plain_problem(features, targets, l2_grid, folds, seed)


def _cross_validate(
    x: torch.Tensor, targets: torch.Tensor, grid: list[float], splits: list[tuple[np.ndarray, np.ndarray]]
) -> list[dict]:
    """Held-out MSE of every grid value on every fold, each fold standardised with its own training part."""
    scores = np.zeros((len(grid), len(splits)))
    for f, (train, val) in enumerate(splits):
        train_t = torch.as_tensor(train, device=x.device)
        val_t = torch.as_tensor(val, device=x.device)
        z1, shift, scale = standardize(x[train_t])
        path = _path(z1[:, :-1], targets[train_t])
        val_z = (x[val_t] - shift) / scale
        for g, l2 in enumerate(grid):
            residual = val_z @ path.weights(l2) + path.target_mean - targets[val_t]
            scores[g, f] = float((residual**2).mean())
    se = scores.std(1, ddof=1) / math.sqrt(len(splits))
    return [{"l2": l2, "mse": float(scores[g].mean()), "mse_se": float(se[g])} for g, l2 in enumerate(grid)]


def fit_ridge(
    features: torch.Tensor,
    targets: torch.Tensor,
    *,
    l2_grid: Sequence[float] | None = None,
    folds: int = 5,
    seed: int = 0,
) -> RidgeFit:
    """Fit a one-output linear head on frozen features in closed form, its L2 strength chosen by k-fold CV.

    Objective on standardised features z: mean squared error / 2 + l2 / 2 * ||w_z||^2 (bias not penalised), so
    scikit-learn's ``Ridge(alpha=l2 * n_train)`` on standardised features is the same model. Folds are plain
    shuffled KFold; l2 minimises the mean held-out MSE, near-ties (within 0.1%) going to the larger l2. The
    standardisation is folded back into the head, so it applies to raw features.

    Args:
        features: (N, D) frozen features, CPU or CUDA; solved in float64 on that device.
        targets: (N,) floating-point targets, standardised by the caller (the head predicts the standardised
            target). The fit is equivariant to the targets' scale, so this only sets the units of mse and grad_norm.
        l2_grid: penalties to try; default DEFAULT_L2_GRID (15 values from 1e-6 to 10, log-spaced).
        folds: k of the k-fold, at most N and at least 2.
        seed: shuffles the folds; the same seed gives the same head.

    Returns:
        The head (float32, CPU), the CV record of every grid value and the final fit's gradient.
    """
    start = time.perf_counter()
    x, y, grid, splits = _prepare(features, targets, l2_grid, folds, seed)
    records = _cross_validate(x, y, grid, splits)
    chosen = best_index(records, "mse")
    l2 = grid[chosen]
    z1, mean, scale = standardize(x)
    z = z1[:, :-1]
    path = _path(z, y)
    weight_std = path.weights(l2)[None, :]
    bias_std = torch.tensor([path.target_mean], dtype=x.dtype, device=x.device)
    # The gradient of the objective at the solution (a solve that went wrong shows here, not later in training).
    residual = z @ weight_std[0] + bias_std - y
    gradient = torch.cat([z.T @ residual / len(y) + l2 * weight_std[0], residual.mean()[None]])
    grad_norm = float(gradient.abs().max())
    weight, bias = unstandardize(weight_std, bias_std, mean, scale)
    return RidgeFit(
        weight=weight.float().cpu(),
        bias=bias.float().cpu(),
        l2=l2,
        cv=records,
        folds=len(splits),
        converged=grad_norm <= _GRAD_TOL,
        iterations=0,
        grad_norm=grad_norm,
        seconds=time.perf_counter() - start,
        mean=mean.cpu(),
        scale=scale.cpu(),
        weight_std=weight_std.cpu(),
        bias_std=bias_std.cpu(),
    )


def cv_score_ridge(
    features: torch.Tensor,
    targets: torch.Tensor,
    *,
    l2_grid: Sequence[float] | None = None,
    folds: int = 5,
    seed: int = 0,
) -> dict:
    """The best cross-validated score of a feature set for a regression task, without the final fit: the ridge
    counterpart of ``cv_score``, for comparing feature sets (pooling modes, per-block features) on the same rows
    and folds.

    The whole grid is scored: ``cv_score``'s early end of the penalty path saves the slow small-l2 L-BFGS fits,
    and here every grid value costs one rescaling of a fold's singular values (the SVD, done once per fold, is
    the work), so ending early would save nothing.

    Args:
        features, targets and the keywords: as for ``fit_ridge`` (targets standardised by the caller).

    Returns:
        {"mse", "mse_se", "r2", "l2", "folds", "stratified"} at the l2 with the lowest mean held-out MSE (near-ties
        to the larger l2). r2 = 1 - mse / var(targets), so 1 - mse on standardised targets: a reading aid, the
        same ranking as mse. "stratified" is always False (plain KFold).
    """
    x, y, grid, splits = _prepare(features, targets, l2_grid, folds, seed)
    records = _cross_validate(x, y, grid, splits)
    best = records[best_index(records, "mse")]
    variance = float(y.var(correction=0))
    # A constant target has no variance to explain: 1 when it is predicted exactly, else 0, as scikit-learn's
    # r2_score(force_finite=True) reports it (a NaN would not survive the note's JSON).
    r2 = 1.0 - best["mse"] / variance if variance > 0 else float(best["mse"] == 0)
    return {**best, "r2": r2, "folds": len(splits), "stratified": False}

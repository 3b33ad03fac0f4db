"""The converged frozen baseline for multi-label tasks: one logistic regression per label, solved jointly to
convergence with the multinomial probe's L-BFGS, its L2 strength chosen by k-fold CV on held-out cross-entropy.

The objective separates over labels (each label's column of the head sees only its own data term and penalty), so
the joint solution is the one-vs-rest one; solving it jointly shares the matmuls and the penalty path.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from peft_ladder.probe.logistic import (
    CV_SCORE_STOP_AFTER,
    DataTerm,
    best_index,
    check_features,
    plain_problem,
    solve_penalised,
    standardize,
    standardize_like,
    unstandardize,
)


@dataclass
class MultiLabelLogisticFit:
    """A multi-label logistic regression ready to load into ``nn.Linear(D, K)`` on raw features (sigmoid per logit).

    ``weight``/``bias`` act on raw features; ``weight_std``/``bias_std`` are the same solution in the
    standardised space it was solved in (z = (x - mean) / scale), kept for diagnostics and checks.
    """

    weight: torch.Tensor  # (K, D) float32, CPU
    bias: torch.Tensor  # (K,) float32, CPU
    l2: float  # chosen penalty: objective = mean over rows of the summed BCE + l2 / 2 * ||weight_std||^2
    cv: list[dict]  # per grid value, largest l2 first: l2, bce, micro_f1, bce_se, micro_f1_se
    folds: int
    converged: bool  # final fit
    iterations: int  # final fit
    grad_norm: float  # final fit: max-abs gradient of the objective at the returned point (solved labels)
    seconds: float
    mean: torch.Tensor  # (D,) float64, CPU: the training rows' mean
    scale: torch.Tensor  # (D,) float64, CPU: the training rows' std, floored
    weight_std: torch.Tensor  # (K, D) float64, CPU
    bias_std: torch.Tensor  # (K,) float64, CPU
    constant_labels: list[int] = field(default_factory=list)  # all 0 or all 1 in the training rows: bias pinned

    def to_dict(self) -> dict:
        """JSON-safe summary (no tensors), keyed like ``LogisticFit.to_dict``.

        Returns:
            The head's shape, the chosen l2, the CV records, the final fit's convergence and the pinned labels.
        """
        return {
            "estimator": "multilabel_logistic",
            "num_classes": int(self.weight.shape[0]),  # the head's outputs: one per label
            "num_features": int(self.weight.shape[1]),
            "l2": self.l2,
            "cv": [dict(r) for r in self.cv],
            "folds": self.folds,
            "stratified": False,  # plain KFold: stratification has no single class to stratify on
            "converged": self.converged,
            "iterations": self.iterations,
            "grad_norm": self.grad_norm,
            "seconds": self.seconds,
            "constant_labels": list(self.constant_labels),
        }


def _sigmoid_term(targets: torch.Tensor) -> DataTerm:
    """Binary cross-entropy with logits, summed over rows and labels; its logit gradient is sigmoid - y."""

    def term(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # log(1 + e^x) exactly: F.softplus returns x itself above x = 20, a 2e-9 step in the loss that the line
        # search's 1e-12 tolerance_change would see.
        total = torch.logaddexp(logits, torch.zeros_like(logits)).sum() - (targets * logits).sum()
        return total, torch.sigmoid(logits).sub_(targets)

    return term


def _edge_bias(rows: int) -> float:
    """The bias of a label that is never (negative sign: always) present in `rows` training rows.

    Its objective has no minimiser: the weights go to 0 exactly (z is centred, so by Jensen any weight only adds
    loss) and the unpenalised bias to -inf, so L-BFGS would stop wherever the gradient e^b passed tol (b near
    -14 at tol 1e-6, or far beyond after one long line-search step). Pinned instead at the log-odds of half a
    pseudo-row, log(0.5 / (rows + 0.5)): finite, independent of tol, and a held-out positive then costs
    log(2 * rows + 1) nats rather than an arbitrary amount.
    """
    return math.log(0.5 / (rows + 0.5))


def _solve_labels(
    z1: torch.Tensor, targets: torch.Tensor, l2: float, init: torch.Tensor, max_iter: int, tol: float
) -> tuple[torch.Tensor, int, float, bool]:
    """The joint fit: L-BFGS on the labels with both values among the rows, the pinned edge for the others.

    Returns:
        params (K, D + 1), iterations, max-abs gradient over the solved labels, converged.
    """
    positives = targets.sum(0)
    solved = (positives > 0) & (positives < targets.shape[0])
    params = torch.zeros_like(init)
    edge = _edge_bias(targets.shape[0])
    params[:, -1] = torch.where(positives > 0, -edge, edge)  # only read where a label is constant
    if not solved.any():
        return params, 0, 0.0, True
    solution = solve_penalised(z1, _sigmoid_term(targets[:, solved]), l2, init[solved], max_iter, tol)
    params[solved] = solution.params
    return params, solution.iterations, solution.grad_norm, solution.converged


def _bce(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean over rows of the BCE summed over labels: the objective's data term, on held-out rows."""
    total = torch.logaddexp(logits, torch.zeros_like(logits)).sum() - (targets * logits).sum()
    return float(total) / logits.shape[0]


def _micro_f1(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Micro-averaged F1 of the labels with p > 0.5 (logit > 0); 0 when there is nothing to find and nothing
    found, as scikit-learn's f1_score(average="micro") reports it."""
    predicted = logits > 0
    actual = targets > 0.5
    true_pos = float((predicted & actual).sum())
    counted = float(predicted.sum() + actual.sum())
    return 2.0 * true_pos / counted if counted > 0 else 0.0


def _check(features: torch.Tensor, labels: torch.Tensor) -> None:
    check_features(features)
    if labels.ndim != 2 or labels.shape[0] != features.shape[0] or labels.shape[1] == 0:
        raise ValueError(f"labels must be ({features.shape[0]}, K) multi-hot rows, got shape {tuple(labels.shape)}")
    values = labels.double()
    if not torch.isfinite(values).all():
        raise ValueError("labels contain NaN or inf")
    if not ((values == 0) | (values == 1)).all():
        odd = values[(values != 0) & (values != 1)]
        raise ValueError(f"labels must be 0 or 1 (multi-hot), got values such as {odd[:3].tolist()}")


def _prepare(
    features: torch.Tensor, labels: torch.Tensor, l2_grid: Sequence[float] | None, folds: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, list[float], list[tuple[np.ndarray, np.ndarray]]]:
    """Checked float64 features and labels, the penalty grid (largest first) and the seeded plain folds."""
    _check(features, labels)
    return plain_problem(features, labels, l2_grid, folds, seed)


def _cross_validate(
    x: torch.Tensor,
    targets: torch.Tensor,
    grid: list[float],
    splits: list[tuple[np.ndarray, np.ndarray]],
    max_iter: int,
    tol: float,
    stop_after: int | None = None,
) -> tuple[list[dict], list[list[torch.Tensor]]]:
    """Score grid values (largest first, each fold warm-started down the path) on every fold.

    With `stop_after`, the path ends once that many grid values have come after the best one (by held-out BCE)
    without beating it, as the multinomial probe's ``cv_score`` ends it; without it every grid value is scored.

    Returns:
        One record per grid value scored, and the standardised-space solutions as [fold][grid index].
    """
    folds = []
    for train, val in splits:
        train_t = torch.as_tensor(train, device=x.device)
        val_t = torch.as_tensor(val, device=x.device)
        z1, shift, scale = standardize(x[train_t])
        folds.append((z1, standardize_like(x[val_t], shift, scale), targets[train_t], targets[val_t]))
    thetas = [torch.zeros(targets.shape[1], x.shape[1] + 1, dtype=x.dtype, device=x.device) for _ in splits]
    solutions: list[list[torch.Tensor]] = [[] for _ in splits]
    records: list[dict] = []
    for l2 in grid:
        scores = np.zeros((len(splits), 2))  # BCE, micro-F1
        for f, (z1, val1, train_targets, val_targets) in enumerate(folds):
            thetas[f] = _solve_labels(z1, train_targets, l2, thetas[f], max_iter, tol)[0]
            solutions[f].append(thetas[f])
            logits = val1 @ thetas[f].T
            scores[f] = _bce(logits, val_targets), _micro_f1(logits, val_targets)
        se = scores.std(0, ddof=1) / math.sqrt(len(splits))
        records.append(
            {
                "l2": l2,
                "bce": float(scores[:, 0].mean()),
                "micro_f1": float(scores[:, 1].mean()),
                "bce_se": float(se[0]),
                "micro_f1_se": float(se[1]),
            }
        )
        if stop_after is not None and len(records) - 1 - best_index(records, "bce") >= stop_after:
            break
    return records, solutions


def fit_multilabel_logistic(
    features: torch.Tensor,
    labels: torch.Tensor,
    *,
    l2_grid: Sequence[float] | None = None,
    folds: int = 5,
    seed: int = 0,
    max_iter: int = 500,
    tol: float = 1e-6,
) -> MultiLabelLogisticFit:
    """Fit a sigmoid-per-label head on frozen features to convergence, its L2 strength chosen by k-fold CV.

    Objective on standardised features z: mean over rows of sum over labels of BCE-with-logits
    + l2 / 2 * ||W_z||^2 (bias not penalised). It separates over labels, so scikit-learn's
    ``LogisticRegression(C=1 / (l2 * n_train))`` fitted on each label's column of standardised features is the
    same model. Folds are plain shuffled KFold (a row holds several labels, so there is no class to stratify on);
    l2 minimises the mean held-out BCE, near-ties (within 0.1%) going to the larger l2. The standardisation of
    the final fit is folded back into the head, so it applies to raw features.

    A label that is all 0 (or all 1) in a training part has no finite optimum (its bias runs to -inf or +inf):
    its weights are 0 and its bias is pinned at the log-odds of half a pseudo-row (see ``_edge_bias``); the final
    fit lists such labels in ``constant_labels`` and leaves them out of ``grad_norm`` and ``converged``.

    Args:
        features: (N, D) frozen features, CPU or CUDA; solved in float64 on that device.
        labels: (N, K) multi-hot rows, every value 0 or 1 (float, integer or bool).
        l2_grid: penalties to try; default DEFAULT_L2_GRID (15 values from 1e-6 to 10, log-spaced).
        folds: k of the k-fold, at most N and at least 2.
        seed: shuffles the folds; the same seed gives the same head.
        max_iter: L-BFGS iterations per fit.
        tol: convergence when the max-abs gradient of the objective falls below it.

    Returns:
        The head (float32, CPU), the CV record of every grid value and the final fit's convergence.
    """
    start = time.perf_counter()
    x, targets, grid, splits = _prepare(features, labels, l2_grid, folds, seed)
    records, solutions = _cross_validate(x, targets, grid, splits, max_iter, tol)
    chosen = best_index(records, "bce")
    z1, mean, scale = standardize(x)
    # The folds' solutions at the chosen l2 lie close to the full-data one: their mean is a warm start.
    init = torch.stack([path[chosen] for path in solutions]).mean(0)
    params, iterations, grad_norm, converged = _solve_labels(z1, targets, grid[chosen], init, max_iter, tol)
    weight_std, bias_std = params[:, :-1], params[:, -1]
    weight, bias = unstandardize(weight_std, bias_std, mean, scale)
    positives = targets.sum(0)
    constant = ((positives == 0) | (positives == targets.shape[0])).nonzero().flatten().tolist()
    return MultiLabelLogisticFit(
        weight=weight.float().cpu(),
        bias=bias.float().cpu(),
        l2=grid[chosen],
        cv=records,
        folds=len(splits),
        converged=converged,
        iterations=iterations,
        grad_norm=grad_norm,
        seconds=time.perf_counter() - start,
        mean=mean.cpu(),
        scale=scale.cpu(),
        weight_std=weight_std.cpu(),
        bias_std=bias_std.cpu(),
        constant_labels=constant,
    )


def cv_score_multilabel(
    features: torch.Tensor,
    labels: torch.Tensor,
    *,
    l2_grid: Sequence[float] | None = None,
    folds: int = 5,
    seed: int = 0,
    max_iter: int = 500,
    tol: float = 1e-6,
    stop_after: int | None = CV_SCORE_STOP_AFTER,
) -> dict:
    """The best cross-validated score of a feature set for a multi-label task, without the final fit: the
    multi-label counterpart of ``cv_score``, for comparing feature sets (pooling modes, per-block features) on the
    same rows and folds.

    Args:
        features, labels and the keywords: as for ``fit_multilabel_logistic``.
        stop_after: end the penalty path this many grid values after the best by held-out BCE (None: the whole
            grid), for the reason ``cv_score`` gives.

    Returns:
        {"bce", "bce_se", "micro_f1", "micro_f1_se", "l2", "folds", "stratified"} at the l2 with the lowest mean
        held-out BCE (near-ties to the larger l2); "stratified" is always False (plain KFold).
    """
    x, targets, grid, splits = _prepare(features, labels, l2_grid, folds, seed)
    records, _ = _cross_validate(x, targets, grid, splits, max_iter, tol, stop_after)
    return {**records[best_index(records, "bce")], "folds": len(splits), "stratified": False}

"""Paired bootstrap intervals on validation predictions: is a rung's gain larger than the noise?

Every rung is evaluated on the same validation examples, so two rungs are compared example by
example (paired), which is far tighter than comparing two independent accuracies. With several
seeds the bootstrap resamples seeds as well as examples (a two-level bootstrap), so the interval
also carries the run-to-run variation of training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


def weighted_metric(name: str, preds: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    """`accuracy` or `f1_macro` with per-example weights (bootstrap counts); unweighted with ones.

    f1_macro averages over the classes present in the labels or predictions, like scikit-learn's.
    """
    if name == "accuracy":
        return float(np.sum(weights * (preds == labels)) / np.sum(weights))
    if name == "f1_macro":
        k = int(max(preds.max(), labels.max())) + 1
        tp = np.bincount(labels[preds == labels], weights[preds == labels], minlength=k)
        true = np.bincount(labels, weights, minlength=k)
        pred = np.bincount(preds, weights, minlength=k)
        present = (true + pred) > 0
        f1 = np.divide(2 * tp, true + pred, out=np.zeros(k), where=present)
        return float(f1[present].mean())
    raise ValueError(f"bootstrap metric {name!r} is not supported; use accuracy or f1_macro.")


@dataclass
class Interval:
    """A point estimate with its bootstrap interval.

    Attributes:
        estimate: mean over seeds of the metric (or of the difference) on all examples.
        low, high: percentile interval at `confidence`.
        n: validation examples; seeds: training seeds behind the estimate.
    """

    estimate: float
    low: float
    high: float
    confidence: float
    n: int
    seeds: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bootstrap(
    preds_a: Sequence[np.ndarray],
    labels: np.ndarray,
    metric: str = "accuracy",
    preds_b: Sequence[np.ndarray] | None = None,
    *,
    samples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Interval of metric(a), or of metric(a) - metric(b) when `preds_b` is given (paired).

    Args:
        preds_a: predictions of rung a, one array per training seed, all over the same examples.
        labels: the examples' labels.
        preds_b: the same for rung b; seeds are paired by position and resampled together.
        samples: bootstrap replicates.
        confidence: of the percentile interval.
        seed: of the resampling (the result is deterministic).
    """
    labels = np.asarray(labels)
    a = [np.asarray(p) for p in preds_a]
    b = [np.asarray(p) for p in preds_b] if preds_b is not None else None
    if b is not None and len(b) != len(a):
        raise ValueError(f"paired bootstrap needs as many seeds for both rungs, got {len(a)} and {len(b)}.")
    if any(p.shape != labels.shape for p in a + (b or [])):
        raise ValueError("every prediction array must cover exactly the validation examples, in the same order.")
    n, n_seeds = len(labels), len(a)

    def value(s: int, w: np.ndarray) -> float:
        out = weighted_metric(metric, a[s], labels, w)
        return out - weighted_metric(metric, b[s], labels, w) if b is not None else out

    ones = np.ones(n)
    estimate = float(np.mean([value(s, ones) for s in range(n_seeds)]))
    rng = np.random.default_rng(seed)
    reps = np.empty(samples)
    for r in range(samples):
        weights = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        seeds = rng.integers(0, n_seeds, n_seeds) if n_seeds > 1 else [0]
        reps[r] = np.mean([value(s, weights) for s in seeds])
    tail = (1 - confidence) / 2
    low, high = np.quantile(reps, [tail, 1 - tail])
    return Interval(estimate, float(low), float(high), confidence, n, n_seeds)


def examples_to_resolve(interval: Interval, gain: float) -> int | None:
    """Validation examples needed for a gain of `gain` to clear the interval, if the interval's width
    shrinks like 1/sqrt(n) (what a paired comparison of this noise level would need)."""
    half = (interval.high - interval.low) / 2
    if gain <= 0 or half <= 0:
        return None
    return int(np.ceil(interval.n * (half / gain) ** 2))

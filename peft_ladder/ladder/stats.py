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
        n: examples; seeds: training seeds behind the estimate (of the candidate, for a difference);
        reference_seeds: the reference's training seeds, for a difference (0 otherwise).
    """

    estimate: float
    low: float
    high: float
    confidence: float
    n: int
    seeds: int
    reference_seeds: int = 0

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Replicates are weighted in chunks so that memory stays at chunk x examples, whatever the split's size.
_CHUNK = 256


def _per_seed_values(metric: str, preds: list[np.ndarray], labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """metric of every seed under every weight row: (seeds, replicates)."""
    if metric == "accuracy":
        correct = np.stack([p == labels for p in preds]).astype(np.float64)  # (seeds, n)
        return correct @ weights.T / weights.sum(1)
    return np.array([[weighted_metric(metric, p, labels, w) for w in weights] for p in preds])


def point_estimate(preds: Sequence[np.ndarray], labels: np.ndarray, metric: str = "accuracy") -> float:
    """The metric on all examples, averaged over seeds (what `bootstrap` reports as `estimate`)."""
    labels = np.asarray(labels)
    return float(_per_seed_values(metric, [np.asarray(p) for p in preds], labels, np.ones((1, len(labels)))).mean())


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
    """Interval of metric(a), or of metric(a) - metric(b) when `preds_b` is given (paired over examples).

    Two levels: every replicate resamples the examples (the same resample for a and b: they are
    scored on the same rows) and, independently for a and b, their training seeds. The interval then
    carries both the example noise and the run-to-run variation of training (weight init, data order),
    which are comparable in size for fine-tuning (Dodge et al., 2020). A deterministic rung (the
    converged probe) has one "seed".

    Args:
        preds_a: predictions of rung a, one array per training seed, all over the same examples.
        labels: the examples' labels.
        preds_b: the same for rung b (any number of seeds).
        samples: bootstrap replicates.
        confidence: of the percentile interval.
        seed: of the resampling (the result is deterministic).
    """
    labels = np.asarray(labels)
    a = [np.asarray(p) for p in preds_a]
    b = [np.asarray(p) for p in preds_b] if preds_b is not None else []
    if not a or (preds_b is not None and not b):
        raise ValueError("bootstrap needs at least one prediction array per rung.")
    if any(p.shape != labels.shape for p in a + b):
        raise ValueError("every prediction array must cover exactly the same examples, in the same order.")
    n = len(labels)
    ones = np.ones((1, n))
    estimate = float(_per_seed_values(metric, a, labels, ones).mean())
    if b:
        estimate -= float(_per_seed_values(metric, b, labels, ones).mean())
    rng = np.random.default_rng(seed)
    reps = np.empty(samples)
    for start in range(0, samples, _CHUNK):
        size = min(_CHUNK, samples - start)
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=size).astype(np.float64)
        values = _resampled_seed_mean(_per_seed_values(metric, a, labels, weights), rng)
        if b:
            values -= _resampled_seed_mean(_per_seed_values(metric, b, labels, weights), rng)
        reps[start : start + size] = values
    tail = (1 - confidence) / 2
    low, high = np.quantile(reps, [tail, 1 - tail])
    return Interval(estimate, float(low), float(high), confidence, n, len(a), len(b))


def _resampled_seed_mean(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per replicate, the mean over a resample (with replacement) of the seeds: (seeds, R) -> (R,)."""
    n_seeds, reps = values.shape
    if n_seeds == 1:
        return values[0]
    pick = rng.integers(0, n_seeds, (reps, n_seeds))
    return np.take_along_axis(values.T, pick, axis=1).mean(1)


def examples_to_resolve(interval: Interval, threshold: float = 0.0) -> int | None:
    """Examples for the interval to clear `threshold` on the side its estimate lies, if its width shrinks
    like 1/sqrt(n) (what a paired comparison at this noise level would need). None: the estimate sits on
    the threshold, so no sample size separates them."""
    half = (interval.high - interval.low) / 2
    distance = abs(interval.estimate - threshold)
    if distance <= 0 or half <= 0:
        return None
    return int(np.ceil(interval.n * (half / distance) ** 2))

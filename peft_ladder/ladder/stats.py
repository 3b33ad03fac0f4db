"""Paired bootstrap intervals on validation predictions: is a rung's gain larger than the noise?

Every rung is evaluated on the same validation examples, so two rungs are compared example by
example (paired), which is far tighter than comparing two independent scores. With several
seeds the bootstrap resamples seeds as well as examples (a two-level bootstrap), so the interval
also carries the run-to-run variation of training.

The metrics follow the task, told apart by name and array shape (`SUPPORTED_METRICS`):
- single_label, 1-D class ids: accuracy, f1_macro;
- multi_label, (rows, labels) 0/1 arrays: f1_micro, f1_macro, subset_accuracy (a row is resampled whole); map
  reads (rows, labels) probabilities instead;
- regression, 1-D values in the target's units: rmse, mae (lower is better), r2, spearman;
- token_classification, (rows, words) tag ids padded with -100, told apart by name: entity_f1, entity_precision,
  entity_recall (seqeval's micro averages over entities), token_accuracy. They need the tag names (`tags=`); a
  sentence (row) is resampled whole, never its words alone.

Direction: a difference interval always reads "positive = a is better than b". For an error (rmse, mae) that
is metric(b) - metric(a); a level interval, and `point_estimate`, are the plain metric value.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from peft_ladder.metrics import higher_is_better
from peft_ladder.metrics.inputs import PAD, check_tags, token_arrays

# A metric of every seed under R weightings of the same rows:
# (predictions stacked over seeds (seeds, *labels.shape), labels, weights (R, n)) -> (seeds, R).
# A weight row holds bootstrap counts: row i counts as if it appeared weights[r, i] times, so each replicate
# recomputes the whole metric on its resample (F1, r2 and spearman are not means of per-row values). Metrics built
# from sums over rows get every replicate's sums from one matrix product with the weights.
Batched = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _mean(per_row: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted means of per-row values (seeds, n) under every weight row: (seeds, R)."""
    return per_row @ weights.T / weights.sum(1)


def _accuracy(preds: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return _mean((preds == labels).astype(np.float64), weights)


def _f1_macro_classes_one(preds: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    """Single-label f1_macro of one seed under one weight row, averaged over the classes present in labels or
    predictions (like scikit-learn's)."""
    k = int(max(preds.max(), labels.max())) + 1
    tp = np.bincount(labels[preds == labels], weights[preds == labels], minlength=k)
    true = np.bincount(labels, weights, minlength=k)
    pred = np.bincount(preds, weights, minlength=k)
    present = (true + pred) > 0
    f1 = np.divide(2 * tp, true + pred, out=np.zeros(k), where=present)
    return float(f1[present].mean())


def _f1_macro_classes(preds: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    # One replicate at a time: the classes present change with the resample.
    return np.array([[_f1_macro_classes_one(p, labels, w) for w in weights] for p in preds])


def _f1(hits: np.ndarray, marked: np.ndarray) -> np.ndarray:
    """2tp / (2tp + fp + fn), with marked = predicted + true positives = 2tp + fp + fn; 0 where nothing is
    marked (scikit-learn's zero_division=0)."""
    return np.divide(2 * hits, marked, out=np.zeros(np.shape(hits)), where=marked > 0)


def _f1_micro(preds: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Multi-label f1_micro: true positives and marks pooled over all labels, so per row they are two numbers."""
    hits = np.sum(preds * labels, 2, dtype=np.float64)
    marked = np.sum(preds, 2, dtype=np.float64) + np.sum(labels, 1, dtype=np.float64)
    return _f1(hits @ weights.T, marked @ weights.T)


def _f1_macro_labels(preds: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Multi-label f1_macro: per-label F1 averaged over every label column (a label nobody marks scores 0)."""
    p, y = preds.astype(np.float64), labels.astype(np.float64)
    return _f1(weights @ (p * y), weights @ (p + y)).mean(2)  # (R, n) @ (seeds, n, labels) -> (seeds, R, labels)


def _subset_accuracy(preds: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return _mean(np.all(preds == labels, axis=2).astype(np.float64), weights)


def _average_precision(scores: np.ndarray, truth: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One label's weighted average precision under every weight row, and each row's weight of positives.

    scikit-learn's definition (precision at each distinct score, weighted by the recall it adds): rows are ranked
    once; precision is read at the end of each row's group of tied scores. (R,) and (R,).
    """
    order = np.argsort(-scores, kind="stable")
    ranked, positive = scores[order], truth[order].astype(np.float64)
    ends = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])
    group_end = ends[np.searchsorted(ends, np.arange(len(ranked)))]
    w = weights[:, order]
    found = np.cumsum(w * positive, 1)[:, group_end]
    seen = np.cumsum(w, 1)[:, group_end]
    precision = np.divide(found, seen, out=np.zeros_like(found), where=seen > 0)
    weight_pos = w @ positive
    ap = np.divide((w * positive * precision).sum(1), weight_pos, out=np.zeros(len(w)), where=weight_pos > 0)
    return ap, weight_pos


def _map(preds: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Multi-label mAP: each label's average precision, averaged over the labels with a positive row in the
    resample (the metric script's rule); `preds` are probabilities."""
    out = np.zeros((len(preds), len(weights)))
    for seed, scores in enumerate(preds):
        total, counted = np.zeros(len(weights)), np.zeros(len(weights))
        for k in range(labels.shape[1]):
            ap, weight_pos = _average_precision(scores[:, k], labels[:, k], weights)
            total += ap
            counted += weight_pos > 0
        np.divide(total, counted, out=out[seed], where=counted > 0)
    return out


def _rmse(preds: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return np.sqrt(_mean((preds - labels) ** 2, weights))


def _mae(preds: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return _mean(np.abs(preds - labels), weights)


def _r2(preds: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    mean = weights @ labels / weights.sum(1)
    # The label mean moves with the resample, so the total sum of squares is taken per replicate (chunk x rows).
    total = np.sum(weights * (labels - mean[:, None]) ** 2, 1)
    residual = ((labels - preds) ** 2) @ weights.T
    spread = total > 0
    # scikit-learn's force_finite: constant labels score 1 when predicted exactly and 0 otherwise, not -inf or nan.
    constant = np.where(residual > 0, 0.0, 1.0)
    return np.where(spread, 1 - residual / np.where(spread, total, 1.0), constant)


def _weighted_ranks(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each row's rank among the rows repeated by their weights, ties at their average rank: (R, n).

    A value whose copies fill positions below + 1 .. below + count gets below + (count + 1) / 2, which is
    scipy.stats.rankdata(method="average") on the repeated rows.
    """
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    new_value = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.empty(len(values), dtype=np.intp)
    group[order] = np.cumsum(new_value) - 1
    count = np.add.reduceat(weights[:, order], np.flatnonzero(new_value), axis=1)  # (R, distinct values)
    below = np.cumsum(count, 1) - count
    return np.take(below + (count + 1) / 2, group, axis=1)


def _spearman(preds: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Spearman's rho: the Pearson correlation of the ranks, ranked afresh on every resample.

    A constant side (no rank spread) scores 0, where scipy gives nan: one nan replicate would void the interval.
    """
    middle = (weights.sum(1, keepdims=True) + 1) / 2  # the mean rank of any N rows is (N + 1) / 2
    dl = _weighted_ranks(labels, weights) - middle  # shared by every seed
    weighted_dl = weights * dl
    label_spread = np.sum(weighted_dl * dl, 1)
    rho = np.zeros((len(preds), len(weights)))
    for seed, p in enumerate(preds):
        dp = _weighted_ranks(p, weights) - middle
        spread = np.sqrt(np.sum(weights * dp**2, 1) * label_spread)
        np.divide(np.sum(weighted_dl * dp, 1), spread, out=rho[seed], where=spread > 0)
    return rho


def _ratio(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """part / whole, 0 where whole is 0 (seqeval's zero_division=0)."""
    return np.divide(part, whole, out=np.zeros(np.shape(part)), where=whole > 0)


# Token classification: each row's counts, in this order along the last axis, make every metric a ratio of sums.
_CORRECT, _PREDICTED, _TRUE, _RIGHT_WORDS, _WORDS = range(5)
# name -> the metric of weighted count sums (..., 5) -> (...).
_TOKEN_METRICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "entity_f1": lambda s: _f1(s[..., _CORRECT], s[..., _PREDICTED] + s[..., _TRUE]),
    "entity_precision": lambda s: _ratio(s[..., _CORRECT], s[..., _PREDICTED]),
    "entity_recall": lambda s: _ratio(s[..., _CORRECT], s[..., _TRUE]),
    "token_accuracy": lambda s: _ratio(s[..., _RIGHT_WORDS], s[..., _WORDS]),
}


def _entity_rows(rows: list[list[str]], starts: np.ndarray) -> dict[tuple[str, int, int], int]:
    """Each entity (type, first, last word) of the rows, with the row it starts in.

    seqeval's own chunking (default mode) on the whole list, as its f1_score does: it joins the rows with an "O"
    between them and numbers the words of that joined sequence, where row i begins at starts[i].
    """
    # Imported here: seqeval's metrics import scikit-learn, a second or more that only token metrics need.
    from seqeval.metrics.sequence_labeling import get_entities

    entities = get_entities(rows)
    owners = np.searchsorted(starts, [first for _, first, _ in entities], side="right") - 1
    return dict(zip(entities, owners.tolist(), strict=True))


def _token_counts(preds: np.ndarray, labels: np.ndarray, tags: Sequence[str]) -> np.ndarray:
    """Each row's counts for the token metrics: correct, predicted and true entities, right words, words.

    Counted once: every bootstrap replicate then weights these sums (the metrics are ratios of them, not means of
    per-row values).

    Args:
        preds: (seeds, n, W) tag ids, read only where labels hold a word.
        labels: (n, W) tag ids, each row's words a prefix padded with -100.
        tags: the tag names the ids index.

    Returns:
        (seeds, n, 5) float64 counts.
    """
    tag_names = check_tags(tags)
    preds = np.stack([token_arrays(p, labels, tag_names)[0] for p in preds])  # every word's id must index the tags
    labels = labels.astype(np.int64)
    names = np.asarray(tag_names, dtype=object)
    words = labels != PAD
    lengths = words.sum(1)
    starts = np.cumsum(lengths + 1) - (lengths + 1)  # each row's first word in seqeval's joined sequence
    truth = _entity_rows([names[row[:k]].tolist() for row, k in zip(labels, lengths, strict=True)], starts)
    n = len(labels)
    true_per_row = np.bincount(list(truth.values()), minlength=n)
    counts = np.zeros((len(preds), n, 5))
    for seed, p in enumerate(preds):
        found = _entity_rows([names[row[:k]].tolist() for row, k in zip(p, lengths, strict=True)], starts)
        counts[seed, :, _CORRECT] = np.bincount([row for e, row in found.items() if e in truth], minlength=n)
        counts[seed, :, _PREDICTED] = np.bincount(list(found.values()), minlength=n)
        counts[seed, :, _TRUE] = true_per_row
        counts[seed, :, _RIGHT_WORDS] = np.sum((p == labels) & words, 1)
        counts[seed, :, _WORDS] = lengths
    return counts


def _counted(ratio: Callable[[np.ndarray], np.ndarray]) -> Batched:
    """A token metric on counts (`_token_counts`) in place of predictions: every replicate's sums in one product."""

    def batched(counts: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return ratio(weights @ counts)  # (R, n) @ (seeds, n, 5) -> (seeds, R, 5)

    return batched


def _token_metric(
    ratio: Callable[[np.ndarray], np.ndarray],
    tags: Sequence[str],
    preds: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
) -> np.ndarray:
    return _counted(ratio)(_token_counts(preds, labels, tags), labels, weights)


# name -> {dimensions of predictions and labels: the metric}. f1_macro on 1-D class ids is the single-label one,
# on 2-D 0/1 rows the multi-label one.
_METRICS: dict[str, dict[int, Batched]] = {
    "accuracy": {1: _accuracy},
    "f1_macro": {1: _f1_macro_classes, 2: _f1_macro_labels},
    "f1_micro": {2: _f1_micro},
    "subset_accuracy": {2: _subset_accuracy},
    "map": {2: _map},
    "rmse": {1: _rmse},
    "mae": {1: _mae},
    "r2": {1: _r2},
    "spearman": {1: _spearman},
}
SUPPORTED_METRICS: tuple[str, ...] = tuple(_METRICS) + tuple(_TOKEN_METRICS)
_FORMS = {
    1: "1-D arrays (class ids, or values for regression)",
    2: "2-D (rows, labels) arrays (0/1; map: probabilities)",
}


def _metric(name: str, labels: np.ndarray, tags: Sequence[str] | None = None) -> Batched:
    """The batched metric `name` for labels of this shape; ValueError for an unknown name or the wrong shape.

    `tags` (the tag names) is required by the token metrics and ignored by the others.
    """
    if name in _TOKEN_METRICS:
        if labels.ndim != 2:
            raise ValueError(
                f"bootstrap metric {name!r} takes 2-D (rows, words) tag ids padded with {PAD}; "
                f"got labels of shape {labels.shape}."
            )
        if tags is None:
            raise ValueError(f"bootstrap metric {name!r} needs tags= (the tag names its ids index).")
        return functools.partial(_token_metric, _TOKEN_METRICS[name], check_tags(tags))
    forms = _METRICS.get(name)
    if forms is None:
        raise ValueError(f"bootstrap metric {name!r} is not supported; supported: {', '.join(SUPPORTED_METRICS)}.")
    if labels.ndim not in forms:
        takes = " or ".join(_FORMS[d] for d in forms)
        raise ValueError(f"bootstrap metric {name!r} takes {takes}; got labels of shape {labels.shape}.")
    return forms[labels.ndim]


def weighted_metric(
    name: str,
    preds: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    *,
    tags: Sequence[str] | None = None,
) -> float:
    """A metric with per-row weights (bootstrap counts); with ones it is the plain (scikit-learn, seqeval) value.

    Integer weights act as if row i appeared weights[i] times (a multi-label row is one row: its labels stay
    together; a sentence is one row: its words and entities stay together). The metric is the plain metric value
    whichever way it improves (an RMSE of 1.2 is 1.2).

    Args:
        name: one of `SUPPORTED_METRICS`; the task is read from the arrays' shape, or for a token metric from its
            name (see the module docstring).
        preds, labels: (n,) class ids or values, (n, labels) 0/1 rows, or (n, words) tag ids padded with -100.
        weights: (n,) non-negative counts.
        tags: the tag names of a token metric (required there, ignored by the others).
    """
    preds, labels, weights = np.asarray(preds), np.asarray(labels), np.asarray(weights, dtype=np.float64)
    metric = _metric(name, labels, tags)
    if preds.shape != labels.shape:
        raise ValueError(f"predictions {preds.shape} and labels {labels.shape} must have the same shape.")
    if weights.shape != labels.shape[:1]:
        raise ValueError(f"weights {weights.shape} must hold one count per row ({len(labels)} rows).")
    return float(metric(preds[None], labels, weights[None, :])[0, 0])


def improvement(metric: str, a_value: float, b_value: float) -> float:
    """How much better a is than b, in the metric's units: a - b, or b - a for an error (rmse, mae).

    The reading of `bootstrap`'s difference interval, for callers that compare point estimates:
    improvement("rmse", 0.9, 1.2) == 0.3 (a's error is 0.3 lower); improvement("r2", 0.5, 0.7) == -0.2.
    """
    return float(a_value - b_value) if higher_is_better(metric) else float(b_value - a_value)


@dataclass
class Interval:
    """A point estimate with its bootstrap interval.

    Attributes:
        estimate: mean over seeds of the metric on all examples, or for a difference the improvement of a over b
            (`improvement`: metric(a) - metric(b), or metric(b) - metric(a) for rmse and mae), so a positive
            difference always means a is better.
        low, high: percentile interval at `confidence`, in the same reading as `estimate`.
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


def _checked_metric(
    metric: str, labels: np.ndarray, *rungs: list[np.ndarray], tags: Sequence[str] | None = None
) -> Batched:
    """The batched metric, once every prediction array is known to cover the labels' rows."""
    batched = _metric(metric, labels, tags)
    if any(p.shape != labels.shape for preds in rungs for p in preds):
        raise ValueError("every prediction array must cover exactly the same examples, in the same order.")
    return batched


def point_estimate(
    preds: Sequence[np.ndarray],
    labels: np.ndarray,
    metric: str = "accuracy",
    *,
    tags: Sequence[str] | None = None,
) -> float:
    """The plain metric on all examples, averaged over seeds (what `bootstrap` reports as a level `estimate`).

    Lower is better for rmse and mae; compare two estimates with `improvement`. `tags`: the tag names of a token
    metric (required there, ignored by the others).
    """
    labels = np.asarray(labels)
    arrays = [np.asarray(p) for p in preds]
    batched = _checked_metric(metric, labels, arrays, tags=tags)
    return float(batched(np.stack(arrays), labels, np.ones((1, len(labels)))).mean())


def bootstrap(
    preds_a: Sequence[np.ndarray],
    labels: np.ndarray,
    metric: str = "accuracy",
    preds_b: Sequence[np.ndarray] | None = None,
    *,
    samples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    tags: Sequence[str] | None = None,
) -> Interval:
    """Interval of metric(a), or of a's improvement over b when `preds_b` is given (paired over examples).

    The difference reads "positive = a is better": metric(a) - metric(b) for a metric where higher is better,
    metric(b) - metric(a) for an error (rmse, mae), so +0.3 on rmse means a's RMSE is 0.3 lower. A level interval
    (no `preds_b`) is the metric itself: an RMSE of 1.2 is reported as 1.2.

    Two levels: every replicate resamples the examples (the same resample for a and b: they are
    scored on the same rows; a multi-label row, or a sentence, is resampled whole) and, independently for a and b, their
    training seeds. The interval then carries both the example noise and the run-to-run variation of training
    (weight init, data order), which are comparable in size for fine-tuning (Dodge et al., 2020). A deterministic
    rung (the converged probe) has one "seed".

    Args:
        preds_a: predictions of rung a, one array per training seed, all over the same examples.
        labels: the examples' labels: (n,) class ids or values, (n, labels) 0/1 rows, or (n, words) tag ids
            padded with -100.
        metric: one of `SUPPORTED_METRICS`.
        preds_b: the same for rung b (any number of seeds).
        samples: bootstrap replicates.
        confidence: of the percentile interval.
        seed: of the resampling (the result is deterministic).
        tags: the tag names of a token metric (required there, ignored by the others).
    """
    labels = np.asarray(labels)
    a = [np.asarray(p) for p in preds_a]
    b = [np.asarray(p) for p in preds_b] if preds_b is not None else []
    if not a or (preds_b is not None and not b):
        raise ValueError("bootstrap needs at least one prediction array per rung.")
    batched = _checked_metric(metric, labels, a, b, tags=tags)
    n = len(labels)
    # a's and b's seeds are scored together: what depends on the labels alone (spearman's ranks) is computed once.
    stacked = np.stack(a + b)
    if metric in _TOKEN_METRICS:  # entities and words counted once per row, not again for every chunk of replicates
        stacked, batched = _token_counts(stacked, labels, tags), _counted(_TOKEN_METRICS[metric])
    full = batched(stacked, labels, np.ones((1, n)))
    estimate = float(full[: len(a)].mean())
    if b:
        estimate -= float(full[len(a) :].mean())
    rng = np.random.default_rng(seed)
    reps = np.empty(samples)
    for start in range(0, samples, _CHUNK):
        size = min(_CHUNK, samples - start)
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=size).astype(np.float64)
        per_seed = batched(stacked, labels, weights)  # (seeds of a and b, replicates)
        values = _resampled_seed_mean(per_seed[: len(a)], rng)
        if b:
            values -= _resampled_seed_mean(per_seed[len(a) :], rng)
        reps[start : start + size] = values
    if b and not higher_is_better(metric):
        # An error that drops is the improvement (0.0 - x: no negative zero, which reads "-0.000" in the note).
        estimate, reps = 0.0 - estimate, 0.0 - reps
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

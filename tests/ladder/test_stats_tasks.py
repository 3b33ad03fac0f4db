"""The bootstrap's metrics for every task: equal to scikit-learn / scipy, weights that repeat whole rows, the
direction of a difference on an error metric, and the interval's coverage on metrics that are not row means."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
)

from peft_ladder.ladder.stats import (
    SUPPORTED_METRICS,
    bootstrap,
    improvement,
    point_estimate,
    weighted_metric,
)

Data = tuple[np.ndarray, np.ndarray]  # (labels, predictions)


def _classes(rng: np.random.Generator, n: int = 150) -> Data:
    labels = rng.integers(0, 4, n)
    return labels, np.where(rng.random(n) < 0.7, labels, rng.integers(0, 4, n))


def _multi_hot(rng: np.random.Generator, n: int = 150) -> Data:
    labels = (rng.random((n, 6)) < 0.3).astype(np.int32)
    labels[:, -1] = 0  # a label nobody marks: scikit-learn's macro F1 counts it as 0 (zero_division=0)
    preds = np.where(rng.random(labels.shape) < 0.15, 1 - labels, labels)
    preds[:, -1] = 0
    return labels, preds


def _probabilities(rng: np.random.Generator, n: int = 150) -> Data:
    labels, _ = _multi_hot(rng, n)
    return labels, np.round(0.4 * labels + 0.6 * rng.random(labels.shape), 1)  # rounded: tied scores


def _map(labels: np.ndarray, scores: np.ndarray) -> float:
    present = [k for k in range(labels.shape[1]) if labels[:, k].any()]
    return float(np.mean([average_precision_score(labels[:, k], scores[:, k]) for k in present]))


def _values(rng: np.random.Generator, n: int = 150) -> Data:
    labels = np.round(rng.normal(1.0, 3.0, n), 1)  # rounded: a few ties for spearman's average ranks
    return labels, np.round(labels + rng.normal(0.0, 2.0, n), 1)


def _few_values(rng: np.random.Generator, n: int = 150) -> Data:
    labels = rng.integers(0, 5, n).astype(np.float64)  # mostly ties
    return labels, np.clip(labels + rng.integers(-1, 2, n), 0, 4)


def _spearman(labels: np.ndarray, preds: np.ndarray) -> float:
    return float(spearmanr(labels, preds).statistic)


# (metric, data, the reference implementation: (labels, predictions) -> value)
CASES: list[tuple[str, Callable[[np.random.Generator], Data], Callable[[np.ndarray, np.ndarray], float]]] = [
    ("accuracy", _classes, accuracy_score),
    ("f1_macro", _classes, lambda y, p: f1_score(y, p, average="macro")),
    ("f1_macro", _multi_hot, lambda y, p: f1_score(y, p, average="macro", zero_division=0)),
    ("f1_micro", _multi_hot, lambda y, p: f1_score(y, p, average="micro", zero_division=0)),
    ("subset_accuracy", _multi_hot, accuracy_score),
    ("map", _probabilities, _map),
    ("rmse", _values, lambda y, p: np.sqrt(mean_squared_error(y, p))),
    ("mae", _values, mean_absolute_error),
    ("r2", _values, r2_score),
    ("spearman", _values, _spearman),
    ("spearman", _few_values, _spearman),
]
IDS = [f"{metric}-{data.__name__.strip('_')}" for metric, data, _ in CASES]


def test_every_supported_metric_is_checked_against_a_reference():
    token_metrics = {"entity_f1", "entity_precision", "entity_recall", "token_accuracy"}  # test_token_bootstrap.py
    assert {metric for metric, _, _ in CASES} | token_metrics == set(SUPPORTED_METRICS)


@pytest.mark.parametrize(("metric", "data", "reference"), CASES, ids=IDS)
def test_weights_of_ones_give_the_reference_value_and_counts_repeat_rows(metric, data, reference):
    rng = np.random.default_rng(0)
    labels, preds = data(rng)
    n = len(labels)
    expected = reference(labels, preds)
    assert weighted_metric(metric, preds, labels, np.ones(n)) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert point_estimate([preds], labels, metric) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    # A bootstrap replicate's counts: the metric of the rows repeated that many times (0 drops a row).
    for _ in range(3):
        counts = rng.integers(0, 4, n)
        rows = np.repeat(np.arange(n), counts)
        assert weighted_metric(metric, preds, labels, counts) == pytest.approx(
            reference(labels[rows], preds[rows]), rel=1e-12, abs=1e-12
        )


@pytest.mark.parametrize(("metric", "data", "reference"), CASES, ids=IDS)
def test_the_estimate_is_the_improvement_of_the_seed_means(metric, data, reference):
    rng = np.random.default_rng(1)
    labels, _ = data(rng)
    a = [data(rng)[1] for _ in range(3)]
    b = [data(rng)[1] for _ in range(2)]
    a = [np.where(rng.random(labels.shape) < 0.5, labels, p) for p in a]  # predictions of these labels
    b = [np.where(rng.random(labels.shape) < 0.3, labels, p) for p in b]
    iv = bootstrap(a, labels, metric, b, samples=300)
    mean_a = np.mean([reference(labels, p) for p in a])
    mean_b = np.mean([reference(labels, p) for p in b])
    assert iv.estimate == pytest.approx(improvement(metric, mean_a, mean_b), abs=1e-12)
    assert (iv.n, iv.seeds, iv.reference_seeds) == (len(labels), 3, 2)
    assert iv == bootstrap(a, labels, metric, b, samples=300)


@pytest.mark.parametrize(
    ("metric", "labels", "preds", "expected"),
    [
        ("f1_micro", np.zeros((4, 3), int), np.zeros((4, 3), int), 0.0),  # nothing marked: zero_division=0
        ("f1_macro", np.zeros((4, 3), int), np.zeros((4, 3), int), 0.0),
        ("r2", np.full(4, 2.0), np.full(4, 2.0), 1.0),  # constant labels predicted exactly: sklearn's 1
        ("r2", np.full(4, 2.0), np.array([2.0, 2.0, 2.0, 3.0]), 0.0),  # ... and missed: sklearn's 0, not -inf
        ("spearman", np.arange(4.0), np.full(4, 1.0), 0.0),  # a constant side: 0 where scipy gives nan
    ],
)
def test_degenerate_resamples_score_a_finite_value(metric, labels, preds, expected):
    assert weighted_metric(metric, preds, labels, np.ones(4)) == expected


def test_multi_label_rows_are_resampled_whole():
    rng = np.random.default_rng(2)
    n, k = 200, 2
    labels = rng.integers(0, 2, (n, k))
    preds = labels.copy()
    wrong = rng.integers(0, k, n)
    preds[np.arange(n), wrong] ^= 1  # exactly one wrong cell in every row
    # Whole rows keep their one wrong cell, so no resample has an exact row.
    iv = bootstrap([preds], labels, "subset_accuracy", samples=500)
    assert (iv.estimate, iv.low, iv.high, iv.n) == (0.0, 0.0, 0.0, n)
    # Resampling cells independently would pair cells of different rows: each cell is right half the time, so
    # about a quarter of the mixed rows would match.
    picks = rng.integers(0, n, (k, n))
    cells_preds = np.stack([preds[picks[j], j] for j in range(k)], 1)
    cells_labels = np.stack([labels[picks[j], j] for j in range(k)], 1)
    assert accuracy_score(cells_labels, cells_preds) > 0.15
    # One count per row, not per cell.
    with pytest.raises(ValueError, match="one count per row"):
        weighted_metric("f1_micro", preds, labels, np.ones(n * k))


@pytest.mark.parametrize(
    ("metric", "labels", "match"),
    [
        ("f1_micro", np.zeros(5, int), "takes 2-D"),
        ("accuracy", np.zeros((5, 2), int), "takes 1-D"),
        (
            "auroc",
            np.zeros(5, int),
            "supported: accuracy, f1_macro, f1_micro, subset_accuracy, map, rmse, mae, r2, spearman",
        ),
    ],
)
def test_a_metric_that_does_not_fit_is_refused_with_what_fits(metric, labels, match):
    with pytest.raises(ValueError, match=match):
        bootstrap([labels], labels, metric, samples=10)


def test_a_lower_error_reads_as_a_positive_difference():
    rng = np.random.default_rng(3)
    labels = rng.normal(0.0, 2.0, 300)
    good, bad = labels + rng.normal(0.0, 0.5, 300), labels + rng.normal(0.0, 1.0, 300)
    rmse_good, rmse_bad = point_estimate([good], labels, "rmse"), point_estimate([bad], labels, "rmse")
    assert rmse_good < rmse_bad
    # A level interval is the RMSE itself.
    level = bootstrap([good], labels, "rmse", samples=500)
    assert level.estimate == pytest.approx(rmse_good) and 0 < level.low < rmse_good < level.high
    # A difference is the improvement: how much lower the candidate's error is.
    gain = bootstrap([good], labels, "rmse", [bad], samples=500)
    assert gain.estimate == pytest.approx(rmse_bad - rmse_good) and gain.low > 0 and gain.excludes_zero
    assert improvement("rmse", rmse_good, rmse_bad) == pytest.approx(gain.estimate)
    # Swapped, it is the mirror image.
    loss = bootstrap([bad], labels, "rmse", [good], samples=500)
    assert (loss.estimate, loss.low, loss.high) == pytest.approx((-gain.estimate, -gain.high, -gain.low))
    # r2 improves upwards: the better candidate also reads positive, as metric(a) - metric(b).
    r2_gain = bootstrap([good], labels, "r2", [bad], samples=500)
    r2_good, r2_bad = point_estimate([good], labels, "r2"), point_estimate([bad], labels, "r2")
    assert r2_good > r2_bad and r2_gain.estimate == pytest.approx(r2_good - r2_bad) and r2_gain.low > 0
    assert improvement("r2", r2_good, r2_bad) == pytest.approx(r2_gain.estimate)


def test_improvement_reads_each_metric_its_own_way():
    assert improvement("rmse", 0.9, 1.2) == pytest.approx(0.3)
    assert improvement("mae", 1.2, 0.9) == pytest.approx(-0.3)
    assert improvement("r2", 0.5, 0.7) == pytest.approx(-0.2)
    assert improvement("spearman", 0.7, 0.5) == pytest.approx(0.2)


def _population_spearman(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    signal = rng.normal(size=size)
    labels = signal + rng.normal(0.0, 0.5, size)
    return labels, signal + rng.normal(0.0, 0.6, size), signal + rng.normal(0.0, 1.0, size)


def _population_map(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = (rng.random((size, 4)) < [0.1, 0.2, 0.3, 0.5]).astype(np.int32)
    signal = labels + rng.normal(0.0, 0.8, (size, 4))
    a = 1 / (1 + np.exp(-(signal + rng.normal(0.0, 0.5, (size, 4)))))
    b = 1 / (1 + np.exp(-(signal + rng.normal(0.0, 1.0, (size, 4)))))
    return labels, a, b


def _population_f1_micro(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = (rng.random((size, 5)) < [0.1, 0.2, 0.3, 0.4, 0.5]).astype(np.int32)
    hard = rng.random((size, 1)) < 0.3  # errors cluster in hard rows, so the cells of a row are not independent
    flip = rng.random((size, 5)) < np.where(hard, 0.3, 0.05)
    a = np.where(flip, 1 - labels, labels)
    b = np.where(flip | (rng.random((size, 5)) < 0.05), 1 - labels, labels)
    return labels, a, b


@pytest.mark.parametrize(
    ("metric", "population", "reference"),
    [
        ("spearman", _population_spearman, _spearman),
        ("f1_micro", _population_f1_micro, lambda y, p: f1_score(y, p, average="micro")),
        ("map", _population_map, _map),
    ],
)
def test_the_difference_interval_covers_the_population_difference_at_its_nominal_rate(metric, population, reference):
    rng = np.random.default_rng(4)
    labels, a, b = population(rng, 200_000)
    truth = reference(labels, a) - reference(labels, b)
    covered = 0
    repetitions = 100
    for rep in range(repetitions):
        rows = rng.integers(0, len(labels), 150)
        iv = bootstrap([a[rows]], labels[rows], metric, [b[rows]], samples=400, confidence=0.9, seed=rep)
        covered += iv.low <= truth <= iv.high
    # 90% nominal; the percentile interval runs a little short at n = 150, and 100 repetitions add +-3% of noise.
    assert 0.75 <= covered / repetitions <= 0.99

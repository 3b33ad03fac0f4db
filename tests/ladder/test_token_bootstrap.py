"""The bootstrap's token-classification metrics: equal to seqeval, weights that repeat whole sentences, the tag
names they need, and the interval's coverage of an entity-F1 difference."""

from __future__ import annotations

import numpy as np
import pytest
from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

from peft_ladder.ladder.stats import SUPPORTED_METRICS, bootstrap, improvement, point_estimate, weighted_metric

TAGS = ("B-LOC", "B-PER", "I-LOC", "I-PER", "O")  # sorted, as the data side builds them
OUTSIDE = TAGS.index("O")
PAD = -100
SEQEVAL = {
    "entity_f1": f1_score,
    "entity_precision": precision_score,
    "entity_recall": recall_score,
    "token_accuracy": accuracy_score,
}
METRICS = tuple(SEQEVAL)


def _sentences(rng: np.random.Generator, n: int, width: int = 10) -> np.ndarray:
    """(n, width) true tag ids: rows of 0..width words (empty and full ones), entities of 1-3 words, -100 after."""
    labels = np.full((n, width), PAD)
    lengths = rng.integers(0, width + 1, n)
    for row, k in zip(labels, lengths):
        row[:k] = OUTSIDE
        start = int(rng.integers(0, 4))
        while start < k:
            kind = "LOC" if rng.random() < 0.5 else "PER"
            end = min(k, start + int(rng.integers(1, 4)))
            row[start], row[start + 1 : end] = TAGS.index(f"B-{kind}"), TAGS.index(f"I-{kind}")
            start = end + int(rng.integers(1, 5))
    return labels


def _tagger(rng: np.random.Generator, labels: np.ndarray, error: np.ndarray | float) -> np.ndarray:
    """Predictions with each word's tag replaced by a random one at rate `error` (per row or overall): I- after O,
    B-/I- of the other type, lost and split entities; anything in the padding (never read)."""
    words = labels != PAD
    wrong = words & (rng.random(labels.shape) < error)
    preds = np.where(wrong, rng.integers(0, len(TAGS), labels.shape), labels)
    return np.where(words, preds, rng.integers(-100, 100, labels.shape))


def _strings(ids: np.ndarray, labels: np.ndarray) -> list[list[str]]:
    return [[TAGS[t] for t, y in zip(row, truth) if y != PAD] for row, truth in zip(ids, labels)]


def _seqeval(metric: str, labels: np.ndarray, preds: np.ndarray) -> float:
    return SEQEVAL[metric](_strings(labels, labels), _strings(preds, labels))


def test_every_token_metric_is_supported():
    assert set(METRICS) <= set(SUPPORTED_METRICS)


@pytest.mark.parametrize("metric", METRICS)
def test_weights_of_ones_give_seqeval_and_counts_repeat_sentences(metric):
    rng = np.random.default_rng(0)
    labels = _sentences(rng, 120)
    preds = _tagger(rng, labels, 0.2)
    n = len(labels)
    expected = _seqeval(metric, labels, preds)
    assert weighted_metric(metric, preds, labels, np.ones(n), tags=TAGS) == pytest.approx(expected, rel=1e-12)
    assert point_estimate([preds], labels, metric, tags=list(TAGS)) == pytest.approx(expected, rel=1e-12)
    # A bootstrap replicate's counts: the metric of the sentences repeated that many times (0 drops one).
    for _ in range(3):
        counts = rng.integers(0, 4, n)
        rows = np.repeat(np.arange(n), counts)
        assert weighted_metric(metric, preds, labels, counts, tags=TAGS) == pytest.approx(
            _seqeval(metric, labels[rows], preds[rows]), rel=1e-12
        )


@pytest.mark.parametrize("metric", METRICS)
def test_a_weight_repeats_a_whole_sentence(metric):
    labels = np.array([[0, 2, 4, 1, PAD], [4, 3, 3, 4, 4], [1, 3, 4, PAD, PAD]])  # LOC(0-1) PER(3); I-PER after O
    preds = np.array([[0, 2, 4, 4, PAD], [4, 1, 3, 4, 0], [1, 4, 4, 0, 7]])
    weights = np.array([1, 3, 1])
    repeated = labels[[0, 1, 1, 1, 2]], preds[[0, 1, 1, 1, 2]]
    assert weighted_metric(metric, preds, labels, weights, tags=TAGS) == pytest.approx(
        _seqeval(metric, *repeated), rel=1e-12
    )
    # One count per sentence, not per word.
    with pytest.raises(ValueError, match="one count per row"):
        weighted_metric(metric, preds, labels, np.ones(labels.size), tags=TAGS)


def test_sentences_are_resampled_whole():
    rng = np.random.default_rng(2)
    n, width = 300, 6
    # One true entity and one predicted entity in every sentence (right in about half of them): any resample of
    # whole sentences has as many predicted entities as true ones, so precision, recall and F1 agree replicate by
    # replicate.
    labels = np.full((n, width), OUTSIDE)
    preds = labels.copy()
    for i in range(n):
        start, size = int(rng.integers(0, width - 2)), int(rng.integers(1, 3))
        labels[i, start], labels[i, start + 1 : start + size] = TAGS.index("B-PER"), TAGS.index("I-PER")
        at = start + int(rng.random() < 0.5)  # the right entity, or one a word later
        preds[i, at], preds[i, at + 1 : at + size] = TAGS.index("B-PER"), TAGS.index("I-PER")
    intervals = {m: bootstrap([preds], labels, m, samples=300, tags=TAGS) for m in METRICS[:3]}
    f1, precision, recall = intervals.values()
    assert (f1.estimate, f1.low, f1.high) == pytest.approx((precision.estimate, precision.low, precision.high))
    assert (f1.low, f1.high) == pytest.approx((recall.low, recall.high))
    assert 0.35 < f1.low < f1.estimate < f1.high < 0.65
    # Resampling words independently would join words of different sentences: the counts no longer pair up, and
    # precision and recall part (the bootstrap's never did: its intervals of the two are the same).
    parted = 0
    for _ in range(5):
        picks = rng.integers(0, n, (width, n))
        mixed_labels = np.stack([labels[picks[j], j] for j in range(width)], 1)
        mixed_preds = np.stack([preds[picks[j], j] for j in range(width)], 1)
        parted += _seqeval("entity_precision", mixed_labels, mixed_preds) != _seqeval(
            "entity_recall", mixed_labels, mixed_preds
        )
    assert parted >= 4


@pytest.mark.parametrize("metric", METRICS)
def test_the_estimate_is_the_improvement_of_the_seed_means(metric):
    rng = np.random.default_rng(1)
    labels = _sentences(rng, 100)
    a = [_tagger(rng, labels, 0.1) for _ in range(3)]
    b = [_tagger(rng, labels, 0.3) for _ in range(2)]
    iv = bootstrap(a, labels, metric, b, samples=300, tags=TAGS)
    mean_a = np.mean([_seqeval(metric, labels, p) for p in a])
    mean_b = np.mean([_seqeval(metric, labels, p) for p in b])
    assert iv.estimate == pytest.approx(improvement(metric, mean_a, mean_b), abs=1e-12) and iv.low > 0
    assert (iv.n, iv.seeds, iv.reference_seeds) == (len(labels), 3, 2)
    assert iv == bootstrap(a, labels, metric, b, samples=300, tags=TAGS)
    level = bootstrap(a, labels, metric, samples=300, tags=TAGS)
    assert level.estimate == pytest.approx(mean_a, abs=1e-12) and level.low < mean_a < level.high


@pytest.mark.parametrize(
    ("metric", "labels", "preds", "tags", "match"),
    [
        ("entity_f1", np.zeros((3, 4), int), np.zeros((3, 4), int), None, r"'entity_f1' needs tags="),
        ("token_accuracy", np.zeros(3, int), np.zeros(3, int), TAGS, r"takes 2-D \(rows, words\) tag ids"),
        ("entity_recall", np.zeros((3, 4), int), np.full((3, 4), 5), TAGS, r"predictions must hold tag ids 0 \.\. 4"),
        ("entity_recall", np.full((3, 4), 9), np.zeros((3, 4), int), TAGS, r"references must hold tag ids 0 \.\. 4"),
        ("entity_precision", np.zeros((3, 4), int), np.zeros((3, 4), int), "O", "sequence of tag-name strings"),
        ("auroc", np.zeros(3, int), np.zeros(3, int), TAGS, "supported: .*entity_f1, entity_precision"),
    ],
)
def test_a_token_metric_that_does_not_fit_is_refused_with_what_is_wrong(metric, labels, preds, tags, match):
    with pytest.raises(ValueError, match=match):
        bootstrap([preds], labels, metric, samples=10, tags=tags)
    with pytest.raises(ValueError, match=match):
        weighted_metric(metric, preds, labels, np.ones(len(labels)), tags=tags)


def test_other_metrics_ignore_tags():
    labels = np.array([0, 1, 1, 0])
    preds = np.array([0, 1, 0, 0])
    assert point_estimate([preds], labels, "accuracy", tags=TAGS) == 0.75
    assert bootstrap([preds], labels, "accuracy", samples=50, tags=TAGS) == bootstrap(
        [preds], labels, "accuracy", samples=50
    )


def _population(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = _sentences(rng, size)
    hard = rng.random((size, 1)) < 0.3  # errors cluster in hard sentences, so a sentence's words are not independent
    a = _tagger(rng, labels, np.where(hard, 0.3, 0.05))
    b = np.where(rng.random(labels.shape) < 0.08, _tagger(rng, labels, 1.0), a)  # a, with more errors
    return labels, a, b


def test_the_entity_f1_difference_interval_covers_the_population_difference_at_its_nominal_rate():
    rng = np.random.default_rng(4)
    labels, a, b = _population(rng, 20_000)
    truth = _seqeval("entity_f1", labels, a) - _seqeval("entity_f1", labels, b)
    covered = 0
    repetitions = 100
    for rep in range(repetitions):
        rows = rng.integers(0, len(labels), 150)
        iv = bootstrap(
            [a[rows]], labels[rows], "entity_f1", [b[rows]], samples=400, confidence=0.9, seed=rep, tags=TAGS
        )
        covered += iv.low <= truth <= iv.high
    # 90% nominal; the percentile interval runs a little short at n = 150, and 100 repetitions add +-3% of noise.
    assert 0.75 <= covered / repetitions <= 0.99

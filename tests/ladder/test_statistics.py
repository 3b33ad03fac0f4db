"""Known answers for the ladder's numbers: bootstrap intervals, LogME / H-score, drift measures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from peft_ladder.ladder.drift import feature_drift, linear_cka
from peft_ladder.ladder.stats import bootstrap, examples_to_resolve, weighted_metric
from peft_ladder.ladder.transferability import h_score, logme


def _noisy(labels: np.ndarray, accuracy: float, rng: np.random.Generator) -> np.ndarray:
    wrong = rng.random(len(labels)) > accuracy
    return np.where(wrong, (labels + 1) % 3, labels)


@pytest.mark.parametrize("metric", ["accuracy", "f1_macro"])
def test_weighted_metric_matches_sklearn_and_counts_weights(metric):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 100)
    preds = _noisy(labels, 0.7, rng)
    expected = f1_score(labels, preds, average="macro") if metric == "f1_macro" else np.mean(preds == labels)
    assert weighted_metric(metric, preds, labels, np.ones(100)) == pytest.approx(expected)
    # Integer weights act like repeated rows.
    w = rng.integers(0, 3, 100)
    rep = np.repeat(np.arange(100), w)
    expected_w = (
        f1_score(labels[rep], preds[rep], average="macro")
        if metric == "f1_macro"
        else np.mean(preds[rep] == labels[rep])
    )
    assert weighted_metric(metric, preds, labels, w.astype(float)) == pytest.approx(expected_w)


def test_paired_bootstrap_separates_a_real_gain_from_noise():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 300)
    good, bad = _noisy(labels, 0.95, rng), _noisy(labels, 0.6, rng)
    gain = bootstrap([good], labels, "accuracy", [bad], samples=1000)
    assert gain.low > 0.2 and gain.estimate == pytest.approx(np.mean(good == labels) - np.mean(bad == labels))
    # The same rung against itself: exactly no difference.
    same = bootstrap([good], labels, "accuracy", [good], samples=500)
    assert same.estimate == same.low == same.high == 0
    # Two rungs that differ on a handful of examples only: the interval straddles zero.
    nearly = good.copy()
    nearly[:4] = (labels[:4] + 1) % 3
    near = bootstrap([good], labels, "accuracy", [nearly], samples=1000)
    assert near.low <= 0 <= near.high or near.low < 0.02


def test_bootstrap_is_deterministic_and_seed_level_noise_widens_it():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 200)
    a = [_noisy(labels, 0.8, rng) for _ in range(3)]
    b = [_noisy(labels, 0.8, rng) for _ in range(3)]
    one = bootstrap(a, labels, "accuracy", b, samples=800)
    assert one == bootstrap(a, labels, "accuracy", b, samples=800)
    assert (one.seeds, one.reference_seeds, one.n) == (3, 3, 200)
    # Seeds are resampled independently per rung, so a rung with one run compares with one with three.
    uneven = bootstrap(a, labels, "accuracy", b[:1], samples=800)
    assert (uneven.seeds, uneven.reference_seeds) == (3, 1)
    # Seed-to-seed variation widens the interval beyond the example noise of a single pair of runs.
    spread = [np.where(rng.random(200) < q, labels, (labels + 1) % 3) for q in (0.6, 0.8, 0.95)]
    steady = [spread[1]] * 3
    wide = bootstrap(spread, labels, "accuracy", samples=800)
    narrow = bootstrap(steady, labels, "accuracy", samples=800)
    assert wide.high - wide.low > narrow.high - narrow.low


def test_examples_to_resolve_scales_with_the_square_of_the_noise():
    from peft_ladder.ladder.stats import Interval

    iv = Interval(0.02, -0.08, 0.12, 0.95, 100, 1)  # half-width 0.1
    assert examples_to_resolve(iv) == 2500  # against 0: the estimate is 0.02 away
    assert examples_to_resolve(iv, 0.01) == 10000  # against the threshold 0.01: 0.01 away
    assert examples_to_resolve(iv, 0.02) is None  # on the threshold: no sample size separates them


def test_logme_and_h_score_rank_informative_features_first():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 400)
    informative = np.hstack([np.eye(4)[labels] * 2 + rng.normal(size=(400, 4)), rng.normal(size=(400, 12))])
    weak = np.hstack([np.eye(4)[labels] * 0.5 + rng.normal(size=(400, 4)), rng.normal(size=(400, 12))])
    noise = rng.normal(size=(400, 16))
    assert logme(informative, labels) > logme(weak, labels) > logme(noise, labels)
    assert h_score(informative, labels) > h_score(weak, labels) > h_score(noise, labels)
    assert h_score(noise, labels) < 0.5 * h_score(weak, labels)


def test_logme_evidence_equals_the_closed_form_marginal_likelihood():
    """At its fixed point, LogME's evidence is log N(y; 0, F F^T / alpha + I / beta) / N."""
    rng = np.random.default_rng(4)
    f = rng.normal(size=(60, 5))
    y = (rng.random(60) > 0.5).astype(int)
    value = logme(f, y, max_iter=500, tol=1e-10)
    # Recover alpha, beta by a direct search over the closed form for class 1 and class 0, averaged.
    best = []
    for c in (0, 1):
        t = (y == c).astype(float)

        def log_ev(log_a: float, log_b: float, t=t) -> float:
            cov = f @ f.T / np.exp(log_a) + np.eye(60) / np.exp(log_b)
            _, logdet = np.linalg.slogdet(cov)
            return (-0.5 * logdet - 0.5 * t @ np.linalg.solve(cov, t) - 30 * np.log(2 * np.pi)) / 60

        grid = np.linspace(-6, 6, 121)
        best.append(max(log_ev(a, b) for a in grid for b in grid))
    # The fixed point maximises the evidence, so it is at least the grid's best (up to grid resolution).
    assert value == pytest.approx(np.mean(best), abs=5e-3)


def test_feature_drift_known_values():
    x = torch.randn(50, 8)
    assert feature_drift(x, x) == pytest.approx({"feature_1mcos": 0.0, "feature_rel_l2": 0.0, "cka": 1.0}, abs=1e-9)
    # CKA is invariant to rotation and isotropic scaling; cosine is not invariant to rotation.
    q, _ = torch.linalg.qr(torch.randn(8, 8))
    assert linear_cka(x, 3 * x @ q) == pytest.approx(1.0, abs=1e-6)
    assert feature_drift(x, -x)["feature_1mcos"] == pytest.approx(2.0)
    assert linear_cka(x, torch.randn(50, 8)) < 0.5

"""Cheap non-pretrained baselines: does pretraining earn its cost at all?

Text: TF-IDF word and character n-grams into a logistic regression. Images: downsampled pixels plus
RGB and HSV colour histograms, standardised, into a logistic regression. In both, C is chosen by
k-fold cross-validation on the training rows alone; the eval splits are only ever predicted.
The ladder reports the baseline beside the from-scratch control and flags it when it matches the
recommended rung.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image
from scipy import sparse
from sklearn.dummy import DummyClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import FeatureUnion
from sklearn.preprocessing import StandardScaler

# One value per decade, ascending (ties go to the first). Wide enough for both feature kinds: l2-normalised
# TF-IDF rows need a large C to move off the majority class, a few hundred standardised pixels can want a small one.
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
# lbfgs stopped within ~110 iterations in every check (3,000 texts, 3,000 images, scikit-learn's digits; C from
# 0.001 to 100). 2000 leaves room; a fit that still runs out warns: ConvergenceWarning is never silenced here.
MAX_ITER = 2000
CV_TOL = 1e-3  # the final fit keeps scikit-learn's 1e-4
MAX_FOLDS = 5
# Below this many training texts every term is kept: rare words are then a large share of the evidence and
# the vocabulary is small anyway. Above it, min_df=2 drops hapaxes (about half of a Zipfian vocabulary,
# most of the char n-grams), which halves fit time and removes features no other row can confirm.
MIN_DF_ROWS = 1000
HSV_SIDE = 64  # HSV histograms are taken on a copy about this many pixels a side (see image_features)
WORD_NGRAMS = (1, 2)
CHAR_NGRAMS = (2, 5)  # char_wb: n-grams never cross a word boundary

Features = np.ndarray | sparse.spmatrix


@dataclass
class BaselineResult:
    """One cheap baseline, fitted on the training rows and applied to every eval split.

    Attributes:
        name: "tfidf_logreg" or "pixels_logreg".
        description: one sentence: features, classifier, how C was chosen.
        predictions: split name -> predicted label ids (int64), for every eval split passed in.
        params: chosen C, the CV scores behind it, feature sizes and settings (JSON-safe).
        seconds: wall time of featurising, choosing C, fitting and predicting.
    """

    name: str
    description: str
    predictions: dict[str, np.ndarray]
    params: dict[str, Any]
    seconds: float

    def to_dict(self) -> dict:
        """JSON-safe summary without the predictions (their lengths only)."""
        return {
            "name": self.name,
            "description": self.description,
            "params": self.params,
            "seconds": self.seconds,
            "eval_rows": {split: int(len(p)) for split, p in self.predictions.items()},
        }


@dataclass
class _Choice:
    """The outcome of cross-validating C."""

    c: float
    cv: str  # "stratified_kfold", "kfold" or "none"
    folds: int
    scores: dict[str, float]  # str(C) -> mean fold accuracy


def _splitter(labels: np.ndarray, seed: int) -> StratifiedKFold | KFold | None:
    """Stratified k folds with k = min(5, smallest class count); plain KFold when a class has one row."""
    counts = np.unique(labels, return_counts=True)[1]
    if len(counts) < 2 or len(labels) < 2:
        return None
    smallest = int(counts.min())
    if smallest >= 2:
        return StratifiedKFold(n_splits=min(MAX_FOLDS, smallest), shuffle=True, random_state=seed)
    return KFold(n_splits=min(MAX_FOLDS, len(labels)), shuffle=True, random_state=seed)


def _fit(features: Features, labels: np.ndarray, c: float, seed: int) -> LogisticRegression | DummyClassifier:
    """A multinomial logistic regression (lbfgs handles sparse input); a constant when only one class is seen."""
    if np.unique(labels).size < 2:
        return DummyClassifier(strategy="most_frequent").fit(features, labels)
    return LogisticRegression(C=c, solver="lbfgs", max_iter=MAX_ITER, random_state=seed).fit(features, labels)


def _fold_scores(features: Features, labels: np.ndarray, train: np.ndarray, val: np.ndarray, seed: int) -> list[float]:
    """Validation accuracy of every C in `C_GRID` on one fold.

    Each fit warm-starts from the previous, smaller C's solution and stops at a looser tol: the scores only rank
    the Cs, and together these cut the CV time about 3x on 3,000 texts with unchanged rankings.
    """
    if np.unique(labels[train]).size < 2:
        return [float(np.mean(labels[val] == labels[train][0]))] * len(C_GRID)
    model = LogisticRegression(solver="lbfgs", tol=CV_TOL, max_iter=MAX_ITER, warm_start=True, random_state=seed)
    scores = []
    for c in C_GRID:
        model.set_params(C=c).fit(features[train], labels[train])
        scores.append(float(np.mean(model.predict(features[val]) == labels[val])))
    return scores


def _choose_c(features: Features, labels: np.ndarray, seed: int) -> _Choice:
    """Mean fold accuracy per C on the training rows; ties go to the smaller C (the more regularised model)."""
    splitter = _splitter(labels, seed)
    if splitter is None:
        return _Choice(c=1.0, cv="none", folds=0, scores={})
    folds = list(splitter.split(np.zeros(len(labels)), labels))
    means = np.mean([_fold_scores(features, labels, tr, va, seed) for tr, va in folds], axis=0)
    best = int(np.flatnonzero(means == means.max())[0])  # C_GRID ascends, so the first best is the smallest C
    kind = "stratified_kfold" if isinstance(splitter, StratifiedKFold) else "kfold"
    return _Choice(c=C_GRID[best], cv=kind, folds=len(folds), scores={str(c): float(m) for c, m in zip(C_GRID, means)})


def _check_rows(n_inputs: int, labels: Sequence[int]) -> None:
    """Fail before any fitting when inputs and labels disagree, or there is nothing to fit."""
    if len(labels) != n_inputs:
        raise ValueError(f"train_labels has {len(labels)} rows but there are {n_inputs} training inputs.")
    if n_inputs == 0:
        raise ValueError("a baseline needs at least one training row; train_labels is empty.")


def _fit_predict(
    train: Features, labels: Sequence[int], evals: dict[str, Features], seed: int
) -> tuple[dict[str, np.ndarray], dict[str, Any], str]:
    """Choose C on `train`, refit on all of it, predict every eval split.

    Returns:
        Predictions per split, the classifier's params, and the clause of the description that says how C was chosen.
    """
    y = np.asarray(labels, dtype=np.int64)
    choice = _choose_c(train, y, seed)
    model = _fit(train, y, choice.c, seed)
    predictions = {
        split: model.predict(x).astype(np.int64) if x.shape[0] else np.empty(0, dtype=np.int64)
        for split, x in evals.items()
    }
    n_iter = int(np.max(model.n_iter_)) if isinstance(model, LogisticRegression) else 0
    params = {
        "C": choice.c,
        "C_grid": list(C_GRID),
        "cv": choice.cv,
        "cv_folds": choice.folds,
        "cv_accuracy": choice.scores,
        "n_train": len(y),
        "classes": [int(c) for c in np.unique(y)],
        "n_iter": n_iter,
        "converged": n_iter < MAX_ITER,
    }
    if choice.cv == "none":
        how = "C=1 (too few rows or classes to cross-validate)"
    else:
        cv = choice.cv.replace("_", " ")
        grid = f"{C_GRID[0]:g}..{C_GRID[-1]:g}"
        how = f"C={choice.c:g} chosen from {grid} by {choice.folds}-fold {cv} accuracy on the training rows"
    return predictions, params, how


def text_baseline(
    train_texts: Sequence[str],
    train_labels: Sequence[int],
    eval_texts: dict[str, Sequence[str]],
    *,
    seed: int = 0,
) -> BaselineResult:
    """TF-IDF word 1-2-grams unioned with char_wb 2-5-grams, then a logistic regression with C from CV.

    The vectoriser is fitted once on the training texts (no labels) rather than inside every fold: IDF
    weights leak a little across folds, which barely moves the choice of C, and featurising once is k times cheaper.

    Args:
        train_texts: training rows.
        train_labels: their label ids.
        eval_texts: split name -> texts to predict; never used for fitting.
        seed: seeds the CV shuffle.

    Returns:
        The baseline's predictions for every eval split, with its params and timing.
    """
    start = time.perf_counter()
    _check_rows(len(train_texts), train_labels)
    min_df = 1 if len(train_texts) < MIN_DF_ROWS else 2
    # Char n-grams catch inflections, typos and rare words that word n-grams miss, which matters most on small data.
    # float32: lbfgs keeps the dtype, so every sparse product in the fit moves half the bytes.
    tfidf: dict[str, Any] = {"sublinear_tf": True, "min_df": min_df, "dtype": np.float32}
    vectorizer = FeatureUnion(
        [
            # Single-character tokens count too ("5 stars", "I"); scikit-learn's default pattern drops them.
            ("word", TfidfVectorizer(ngram_range=WORD_NGRAMS, token_pattern=r"(?u)\b\w+\b", **tfidf)),
            ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=CHAR_NGRAMS, **tfidf)),
        ]
    )
    train = vectorizer.fit_transform(list(train_texts)).tocsr()
    # TfidfTransformer refuses zero rows; an empty split is an empty matrix of the right width.
    evals = {
        split: vectorizer.transform(list(texts)).tocsr() if len(texts) else sparse.csr_matrix((0, train.shape[1]))
        for split, texts in eval_texts.items()
    }
    predictions, params, how = _fit_predict(train, train_labels, evals, seed)
    word, char = (len(t.vocabulary_) for _, t in vectorizer.transformer_list)
    params.update(
        word_ngram_range=list(WORD_NGRAMS),
        char_ngram_range=list(CHAR_NGRAMS),
        min_df=min_df,
        word_vocab=word,
        char_vocab=char,
        n_features=word + char,
    )
    description = (
        f"Logistic regression (lbfgs, multinomial) on sublinear TF-IDF word 1-2-grams and char_wb 2-5-grams "
        f"(min_df={min_df}, {word + char} features), {how}."
    )
    return BaselineResult("tfidf_logreg", description, predictions, params, time.perf_counter() - start)


def _histogram(image: Image.Image, bins: int) -> np.ndarray:
    """Per-channel histograms with `bins` bins, each normalised to sum to one (PIL counts in C, 256 bins a channel)."""
    counts = np.asarray(image.histogram(), dtype=np.float64).reshape(len(image.getbands()), 256)
    edges = np.linspace(0, 256, bins + 1).astype(int)[:-1]
    grouped = np.add.reduceat(counts, edges, axis=1)
    return (grouped / np.maximum(grouped.sum(axis=1, keepdims=True), 1.0)).ravel()


def image_features(images: Sequence[Image.Image], size: int = 8, bins: int = 8) -> np.ndarray:
    """Downsampled RGB pixels in [0, 1] plus RGB and HSV histograms: (N, 3*size*size + 6*bins) float64.

    Args:
        images: PIL images of any mode and size.
        size: side of the downsampled square.
        bins: histogram bins per channel.

    Returns:
        One row of features per image.
    """
    rows = np.empty((len(images), 3 * size * size + 6 * bins), dtype=np.float64)
    for i, image in enumerate(images):
        rgb = image.convert("RGB")
        # BOX averages every source pixel into its cell: the anti-aliased downsample, and the cheapest.
        small = np.asarray(rgb.resize((size, size), Image.Resampling.BOX), dtype=np.float64).ravel() / 255.0
        # HSV separates hue from brightness, so a class told by colour survives lighting changes. PIL's HSV
        # conversion costs ~0.9 ms on 224x224 (10x everything else here), so it runs on a copy box-reduced to
        # about HSV_SIDE pixels a side, which moves a coarse histogram little.
        hsv = rgb.reduce(max(1, min(rgb.size) // HSV_SIDE)).convert("HSV")
        rows[i] = np.concatenate([small, _histogram(rgb, bins), _histogram(hsv, bins)])
    return rows


def image_baseline(
    train_images: Sequence[Image.Image],
    train_labels: Sequence[int],
    eval_images: dict[str, Sequence[Image.Image]],
    *,
    seed: int = 0,
    size: int = 8,
    bins: int = 8,
) -> BaselineResult:
    """Downsampled pixels plus colour histograms, standardised, then a logistic regression with C from CV.

    Args:
        train_images: training rows.
        train_labels: their label ids.
        eval_images: split name -> images to predict; never used for fitting.
        seed: seeds the CV shuffle.
        size: side of the downsampled square.
        bins: histogram bins per channel.

    Returns:
        The baseline's predictions for every eval split, with its params and timing.
    """
    start = time.perf_counter()
    _check_rows(len(train_images), train_labels)
    # The scaler sees only the training rows, fitted once (no labels involved), like the TF-IDF vocabulary.
    scaler = StandardScaler()
    train = scaler.fit_transform(image_features(train_images, size, bins))
    evals = {
        split: scaler.transform(image_features(images, size, bins)) if len(images) else np.empty((0, train.shape[1]))
        for split, images in eval_images.items()
    }
    predictions, params, how = _fit_predict(train, train_labels, evals, seed)
    params.update(size=size, bins=bins, n_features=int(train.shape[1]))
    description = (
        f"Logistic regression (lbfgs, multinomial) on standardised {size}x{size} RGB pixels plus {bins}-bin RGB and "
        f"HSV histograms ({train.shape[1]} features), {how}."
    )
    return BaselineResult("pixels_logreg", description, predictions, params, time.perf_counter() - start)


def cheap_baseline(
    modality: Literal["text", "image"],
    train_inputs: Sequence,
    train_labels: Sequence[int],
    eval_inputs: dict[str, Sequence],
    *,
    seed: int = 0,
) -> BaselineResult:
    """The cheap baseline for `modality`: `text_baseline` or `image_baseline` with their defaults.

    Args:
        modality: "text" or "image".
        train_inputs: texts or PIL images.
        train_labels: their label ids.
        eval_inputs: split name -> inputs to predict.
        seed: seeds the CV shuffle.

    Returns:
        The baseline's result.
    """
    if modality == "text":
        return text_baseline(train_inputs, train_labels, eval_inputs, seed=seed)
    if modality == "image":
        return image_baseline(train_inputs, train_labels, eval_inputs, seed=seed)
    raise ValueError(f"cheap_baseline: modality {modality!r} is not supported; use 'text' or 'image'.")

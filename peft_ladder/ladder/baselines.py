"""Cheap non-pretrained baselines: does pretraining earn its cost at all?

Text: TF-IDF word and character n-grams. Images: downsampled pixels plus RGB and HSV colour histograms,
standardised. Either goes into the task's linear estimator (baseline_estimators.py): a logistic regression for
single_label, one per label for multi_label, ridge for regression, its penalty chosen by k-fold cross-validation
on the training rows alone; the eval splits are only ever predicted. Tagged words (token_classification): each
word's identity, shape and affixes and its neighbours' identity and shape, into a logistic regression per word
(word_baseline.py); `cheap_baseline` dispatches to it. The ladder reports the baseline beside the from-scratch
control and flags it when it matches the recommended rung.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from PIL import Image
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion
from sklearn.preprocessing import StandardScaler

from peft_ladder.ladder.baseline_estimators import fit_for_task
from peft_ladder.ladder.baseline_result import BaselineResult, Labels
from peft_ladder.ladder.word_baseline import token_baseline
from peft_ladder.tasks import TASKS, TaskName

# Below this many training texts every term is kept: rare words are then a large share of the evidence and
# the vocabulary is small anyway. Above it, min_df=2 drops hapaxes (about half of a Zipfian vocabulary,
# most of the char n-grams), which halves fit time and removes features no other row can confirm.
MIN_DF_ROWS = 1000
HSV_SIDE = 64  # HSV histograms are taken on a copy about this many pixels a side (see image_features)
WORD_NGRAMS = (1, 2)
CHAR_NGRAMS = (2, 5)  # char_wb: n-grams never cross a word boundary

TOKEN_TASK = "token_classification"


def _first_bad(mask: np.ndarray) -> str:
    """Where the first True of `mask` is, as "row i" or "row i, label k"."""
    index = np.argwhere(mask)[0]
    return f"row {index[0]}" if len(index) == 1 else f"row {index[0]}, label {index[1]}"


def checked_labels(task: str, labels: Labels, n_inputs: int) -> np.ndarray:
    """`labels` as the task's estimator takes them, or a ValueError saying what is wrong, before any fitting.

    Args:
        task: single_label | multi_label | regression. token_classification's tags are checked against their
            words, by `token_baseline`: here it is a ValueError saying so (text_baseline cannot fit tags).
        labels: the training labels.
        n_inputs: how many training inputs they label.

    Returns:
        Class ids (n,) int64; a 0/1 matrix (n, labels) int64; targets (n,) float64.
    """
    if task not in TASKS:
        raise ValueError(f"baseline task {task!r} is not supported; use one of {', '.join(TASKS)}.")
    if task == TOKEN_TASK:
        raise ValueError(
            "a token_classification baseline takes lists of words and tags: use token_baseline (or cheap_baseline "
            "with task='token_classification'), not a text or image baseline."
        )
    if len(labels) != n_inputs:
        raise ValueError(f"train_labels has {len(labels)} rows but there are {n_inputs} training inputs.")
    if n_inputs == 0:
        raise ValueError("a baseline needs at least one training row; train_labels is empty.")
    try:
        values = np.asarray(labels, dtype=np.float64)
    except (TypeError, ValueError) as error:  # ragged rows, strings, None
        raise ValueError(f"train_labels for a {task} baseline must be numbers in equal-length rows: {error}") from error
    wanted = {"single_label": "class ids (n,)", "multi_label": "a 0/1 matrix (n, labels)", "regression": "targets (n,)"}
    if values.ndim != (2 if task == "multi_label" else 1) or values.shape[-1] == 0:
        raise ValueError(f"train_labels for a {task} baseline must be {wanted[task]}; got shape {values.shape}.")
    if not np.isfinite(values).all():
        raise ValueError(f"train_labels {_first_bad(~np.isfinite(values))} is NaN or infinite ({task} baseline).")
    if task == "regression":
        return values
    if task == "multi_label" and not np.isin(values, (0.0, 1.0)).all():
        bad = _first_bad(~np.isin(values, (0.0, 1.0)))
        raise ValueError(f"train_labels {bad} is neither 0 nor 1 (multi_label baseline: one 0/1 column per label).")
    if task == "single_label" and (values != np.round(values)).any():
        raise ValueError(f"train_labels {_first_bad(values != np.round(values))} is not a whole number (a class id).")
    return np.asarray(labels, dtype=np.int64)


def text_baseline(
    train_texts: Sequence[str],
    train_labels: Labels,
    eval_texts: dict[str, Sequence[str]],
    *,
    seed: int = 0,
    task: TaskName = "single_label",
) -> BaselineResult:
    """TF-IDF word 1-2-grams unioned with char_wb 2-5-grams, then the task's estimator with its penalty from CV.

    The vectoriser is fitted once on the training texts (no labels) rather than inside every fold: IDF
    weights leak a little across folds, which barely moves the choice of C, and featurising once is k times cheaper.

    Args:
        train_texts: training rows.
        train_labels: their labels: class ids (n,); a 0/1 matrix (n, labels) for multi_label; targets (n,) for
            regression.
        eval_texts: split name -> texts to predict; never used for fitting.
        seed: seeds the CV shuffle.
        task: single_label | multi_label | regression.

    Returns:
        The baseline's predictions for every eval split, with its params and timing.
    """
    start = time.perf_counter()
    y = checked_labels(task, train_labels, len(train_texts))
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
    fitted = fit_for_task(task, train, y, evals, seed)
    word, char = (len(t.vocabulary_) for _, t in vectorizer.transformer_list)
    extra = {
        "word_ngram_range": list(WORD_NGRAMS),
        "char_ngram_range": list(CHAR_NGRAMS),
        "min_df": min_df,
        "word_vocab": word,
        "char_vocab": char,
        "n_features": word + char,
    }
    described = f"sublinear TF-IDF word 1-2-grams and char_wb 2-5-grams (min_df={min_df}, {word + char} features)"
    return BaselineResult.from_fitted("tfidf", described, fitted, extra, start)


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
    train_labels: Labels,
    eval_images: dict[str, Sequence[Image.Image]],
    *,
    seed: int = 0,
    size: int = 8,
    bins: int = 8,
    task: TaskName = "single_label",
) -> BaselineResult:
    """Downsampled pixels plus colour histograms, standardised, then the task's estimator with its penalty from CV.

    Args:
        train_images: training rows.
        train_labels: their labels: class ids (n,); a 0/1 matrix (n, labels) for multi_label; targets (n,) for
            regression.
        eval_images: split name -> images to predict; never used for fitting.
        seed: seeds the CV shuffle.
        size: side of the downsampled square.
        bins: histogram bins per channel.
        task: single_label | multi_label | regression.

    Returns:
        The baseline's predictions for every eval split, with its params and timing.
    """
    start = time.perf_counter()
    y = checked_labels(task, train_labels, len(train_images))
    # The scaler sees only the training rows, fitted once (no labels involved), like the TF-IDF vocabulary.
    scaler = StandardScaler()
    train = scaler.fit_transform(image_features(train_images, size, bins))
    evals = {
        split: scaler.transform(image_features(images, size, bins)) if len(images) else np.empty((0, train.shape[1]))
        for split, images in eval_images.items()
    }
    fitted = fit_for_task(task, train, y, evals, seed)
    extra = {"size": size, "bins": bins, "n_features": int(train.shape[1])}
    described = (
        f"standardised {size}x{size} RGB pixels plus {bins}-bin RGB and HSV histograms ({train.shape[1]} features)"
    )
    return BaselineResult.from_fitted("pixels", described, fitted, extra, start)


def cheap_baseline(
    modality: Literal["text", "image"],
    train_inputs: Sequence,
    train_labels: Labels,
    eval_inputs: dict[str, Sequence],
    *,
    seed: int = 0,
    task: TaskName = "single_label",
) -> BaselineResult:
    """The cheap baseline for `modality`: `text_baseline` or `image_baseline` with their defaults; for
    token_classification (text only), `token_baseline`.

    Args:
        modality: "text" or "image".
        train_inputs: texts or PIL images; token_classification: each row's words (list[str]).
        train_labels: their labels: class ids (n,); a 0/1 matrix (n, labels) for multi_label; targets (n,) for
            regression; one tag id per word of each row for token_classification.
        eval_inputs: split name -> inputs to predict.
        seed: seeds the CV shuffle.
        task: single_label | multi_label | regression | token_classification.

    Returns:
        The baseline's result.
    """
    if task == TOKEN_TASK:
        if modality != "text":
            raise ValueError(f"cheap_baseline: token_classification tags words of text, not {modality!r} inputs.")
        return token_baseline(train_inputs, train_labels, eval_inputs, seed=seed)
    if modality == "text":
        return text_baseline(train_inputs, train_labels, eval_inputs, seed=seed, task=task)
    if modality == "image":
        return image_baseline(train_inputs, train_labels, eval_inputs, seed=seed, task=task)
    raise ValueError(f"cheap_baseline: modality {modality!r} is not supported; use 'text' or 'image'.")

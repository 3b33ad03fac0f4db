"""Cheap non-pretrained baselines: does pretraining earn its cost at all?

Text: TF-IDF word and character n-grams. Images: downsampled pixels plus RGB and HSV colour histograms,
standardised. Either goes into the task's linear estimator (baseline_estimators.py): a logistic regression for
single_label, one per label for multi_label, ridge for regression, its penalty chosen by k-fold cross-validation
on the training rows alone; the eval splits are only ever predicted. Tagged words (token_classification): each
word's identity, shape and affixes and its neighbours' identity and shape, into a logistic regression per word.
The ladder reports the baseline beside the from-scratch control and flags it when it matches the recommended rung.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image
from scipy import sparse
from sklearn.feature_extraction import DictVectorizer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion
from sklearn.preprocessing import StandardScaler

from peft_ladder.ladder.baseline_estimators import Fitted, fit_for_task, fit_token_classification
from peft_ladder.metrics import reads_scores
from peft_ladder.tasks import TASKS, TaskName, pad_rows

# Below this many training texts every term is kept: rare words are then a large share of the evidence and
# the vocabulary is small anyway. Above it, min_df=2 drops hapaxes (about half of a Zipfian vocabulary,
# most of the char n-grams), which halves fit time and removes features no other row can confirm.
MIN_DF_ROWS = 1000
HSV_SIDE = 64  # HSV histograms are taken on a copy about this many pixels a side (see image_features)
WORD_NGRAMS = (1, 2)
CHAR_NGRAMS = (2, 5)  # char_wb: n-grams never cross a word boundary

# Tokens: a word's prefixes and suffixes of 1 to 3 characters, lower-cased (-ing, -ed, Mc-, -son).
AFFIX_LENGTHS = (1, 2, 3)
# Tokens: a word's length falls in the first bucket whose upper end holds it (1, 2, 3, 4-5, 6-8, 9+ characters).
LENGTH_BUCKETS = (1, 2, 3, 5, 8)
# Tokens: a number as written in text: optional sign, digits with decimal or thousands separators ("1,024.5"),
# or a leading decimal point (".5"), and an optional percent sign.
NUMBER = re.compile(r"[+-]?(\d+([.,]\d+)*|[.,]\d+)%?")
TOKEN_TASK = "token_classification"

# Class ids (n,), a 0/1 matrix (n, labels) or targets (n,), as a sequence or an array; token_classification:
# one list of tag ids per row, one id per word.
Labels = Sequence[Any] | np.ndarray


@dataclass
class BaselineResult:
    """One cheap baseline, fitted on the training rows and applied to every eval split.

    Attributes:
        name: "{tfidf|pixels}_{logreg|ovr_logreg|ridge}": features, then the estimator of single_label,
            multi_label or regression; "word_logreg" for token_classification.
        description: one sentence: features, estimator, how its penalty (C or alpha) was chosen.
        predictions: split name -> predictions, for every eval split passed in: label ids (n,) int64
            (single_label); a 0/1 matrix (n, labels) int64 (multi_label); values in the target's units (n,)
            float64 (regression); each word's tag id (n, W) int64, W the most words of any row of the split,
            a row's first len(words) entries its tags and the rest -100 (token_classification).
        params: chosen penalty, the CV scores behind it, feature sizes and settings (JSON-safe).
        seconds: wall time of featurising, choosing the penalty, fitting and predicting.
        scores: multi_label: split name -> each label's probability (n, labels); None for other tasks (token
            metrics such as entity F1 read the predictions).
    """

    name: str
    description: str
    predictions: dict[str, np.ndarray]
    params: dict[str, Any]
    seconds: float
    scores: dict[str, np.ndarray] | None = None

    def metric_inputs(self, metric: str) -> dict[str, np.ndarray]:
        """What `metric` reads of each split: the predictions, or the probabilities of a ranking metric (mAP)."""
        return self.scores if reads_scores(metric) and self.scores is not None else self.predictions

    def to_dict(self) -> dict:
        """JSON-safe summary without the predictions (their lengths only)."""
        return {
            "name": self.name,
            "description": self.description,
            "params": self.params,
            "seconds": self.seconds,
            "eval_rows": {split: int(len(p)) for split, p in self.predictions.items()},
        }


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


def _result(features: str, described: str, fitted: Fitted, extra: dict[str, Any], start: float) -> BaselineResult:
    """The baseline named and described by its features and its estimator."""
    description = f"{fitted.estimator} on {described}, {fitted.how}."
    params = {**fitted.params, **extra}
    return BaselineResult(
        f"{features}_{fitted.tag}", description, fitted.predictions, params, time.perf_counter() - start, fitted.scores
    )


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
    return _result("tfidf", described, fitted, extra, start)


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
    return _result("pixels", described, fitted, extra, start)


def _checked_words(rows: Sequence, where: str) -> list[list[str]]:
    """`rows` as lists of words, or a ValueError naming the first row (and word) that is not one."""
    words = []
    for i, row in enumerate(rows):
        if isinstance(row, (str, bytes)) or not isinstance(row, (Sequence, np.ndarray)):
            raise ValueError(
                f"{where} row {i} is a {type(row).__name__}, not a list of words (token_classification: each row's "
                f"input is its words, list[str])."
            )
        for j, word in enumerate(row):
            if not isinstance(word, str):
                raise ValueError(f"{where} row {i}, word {j} is a {type(word).__name__} ({word!r}), not a str.")
        words.append(list(row))
    return words


def _checked_tags(labels: Labels, words: list[list[str]]) -> np.ndarray:
    """Every training word's tag id, row after row (words,) int64, or a ValueError naming the first bad row."""
    if isinstance(labels, (str, bytes)) or len(labels) != len(words):
        raise ValueError(f"train_labels has {len(labels)} rows but there are {len(words)} training inputs.")
    tags = []
    for i, (row, sentence) in enumerate(zip(labels, words)):
        if isinstance(row, (str, bytes)) or not isinstance(row, (Sequence, np.ndarray)):
            raise ValueError(f"train_labels row {i} is a {type(row).__name__}, not a list of tag ids (one per word).")
        if len(row) != len(sentence):
            raise ValueError(f"train_labels row {i} has {len(row)} tags for {len(sentence)} words (one tag per word).")
        for j, tag in enumerate(row):
            if isinstance(tag, (bool, np.bool_)) or not isinstance(tag, (int, np.integer)):
                raise ValueError(f"train_labels row {i}, word {j} is {tag!r}, not a tag id (a whole number).")
            if tag < 0:
                raise ValueError(
                    f"train_labels row {i}, word {j} is {tag}: tag ids index the tag names, so they are never "
                    f"negative (-100 pads word-level arrays; it is no word's tag)."
                )
        tags.extend(int(tag) for tag in row)
    return np.asarray(tags, dtype=np.int64)


def _length_bucket(n: int) -> str:
    for top in LENGTH_BUCKETS:
        if n <= top:
            return f"<={top}"
    return f">{LENGTH_BUCKETS[-1]}"


def _shape(word: str) -> str:
    """The word's characters as X (upper), x (lower), d (digit) or themselves, runs collapsed: "Mr." -> "Xx."."""
    classes = ("X" if c.isupper() else "x" if c.islower() else "d" if c.isdigit() else c for c in word)
    shape: list[str] = []
    for c in classes:
        if not shape or shape[-1] != c:
            shape.append(c)
    return "".join(shape)


def _identity_and_shape(word: str) -> dict[str, float]:
    """The word lower-cased, and the shape flags that generalise to words never seen in training."""
    features = {f"word={word.lower()}": 1.0, f"shape={_shape(word)}": 1.0, f"len{_length_bucket(len(word))}": 1.0}
    flags = {
        "capitalised": word[:1].isupper(),
        "all_caps": word.isupper(),  # at least one cased character, none lower-case
        "has_digit": any(c.isdigit() for c in word),
        "is_number": NUMBER.fullmatch(word) is not None,
        "has_underscore": "_" in word,
        "has_dot": "." in word,
        "has_parenthesis": any(c in "()[]{}" for c in word),
        "punctuation_only": not any(c.isalnum() for c in word),
    }
    features.update({name: 1.0 for name, on in flags.items() if on})
    return features


def word_features(words: Sequence[str]) -> list[dict[str, float]]:
    """One feature dict per word of a sentence, for `DictVectorizer`.

    Each word: its lower-cased identity (a one-hot over the training words: what gives a seen word its most frequent
    tag), its shape (`_identity_and_shape`: capitalised, all caps, digits, number, underscore, dot, parentheses,
    punctuation only, length bucket, collapsed character classes), its lower-cased prefixes and suffixes of
    `AFFIX_LENGTHS` characters, and the identity and shape of the previous and next word ("-1:", "+1:"; at a
    sentence's edge, a boundary flag). The window is what lets a per-word model tell B- from I- ("Mr Smith Jones").

    Args:
        words: one sentence's words.

    Returns:
        Binary features (name -> 1.0), one dict per word.
    """
    own = [_identity_and_shape(word) for word in words]
    rows = []
    for i, word in enumerate(words):
        features = dict(own[i])
        lower = word.lower()
        for n in AFFIX_LENGTHS:
            if len(lower) >= n:
                features[f"prefix={lower[:n]}"] = 1.0
                features[f"suffix={lower[-n:]}"] = 1.0
        for offset, mark in ((-1, "-1:"), (1, "+1:")):
            j = i + offset
            if 0 <= j < len(words):
                features.update({mark + name: value for name, value in own[j].items()})
            else:
                features[mark + "boundary"] = 1.0
        rows.append(features)
    return rows


def token_baseline(
    train_words: Sequence[Sequence[str]],
    train_tags: Labels,
    eval_words: dict[str, Sequence[Sequence[str]]],
    *,
    seed: int = 0,
) -> BaselineResult:
    """Per-word features (`word_features`) one-hot encoded, then a logistic regression per word, C by CV by sentence.

    The vocabulary is fitted once on the training words (no tags): a feature absent from a fold's training words
    keeps a zero weight under the L2 penalty, so fitting it inside every fold would choose the same C.

    Args:
        train_words: training rows, each its words (list[str]).
        train_tags: each row's tag ids, one per word (ids index the run's sorted tag names).
        eval_words: split name -> rows of words to predict; never used for fitting.
        seed: seeds the fits.

    Returns:
        Each eval split's tags (n, W) int64, W the most words of a row of that split, padded with -100.
    """
    start = time.perf_counter()
    words = _checked_words(train_words, "train_inputs")
    if not words:
        raise ValueError("a baseline needs at least one training row; train_inputs is empty.")
    y = _checked_tags(train_tags, words)
    if not len(y):
        raise ValueError("a token_classification baseline needs at least one training word; every row is empty.")
    evals_words = {split: _checked_words(rows, f"eval_inputs[{split!r}]") for split, rows in eval_words.items()}
    # float32: lbfgs keeps the dtype (as for TF-IDF). Binary features, so nothing to scale.
    vectorizer = DictVectorizer(dtype=np.float32)
    train = vectorizer.fit_transform([f for sentence in words for f in word_features(sentence)]).tocsr()
    sentences = np.repeat(np.arange(len(words)), [len(sentence) for sentence in words])

    def featurise(rows: list[list[str]]) -> sparse.csr_matrix:
        dicts = [f for sentence in rows for f in word_features(sentence)]
        return vectorizer.transform(dicts).tocsr() if dicts else sparse.csr_matrix((0, train.shape[1]))

    fitted = fit_token_classification(train, y, sentences, {s: featurise(r) for s, r in evals_words.items()}, seed)
    # The flat per-word predictions back into rows, padded to the split's longest row.
    for split, rows in evals_words.items():
        flat, ends = fitted.predictions[split], np.cumsum([len(sentence) for sentence in rows], dtype=np.int64)
        fitted.predictions[split] = pad_rows([flat[end - len(row) : end] for row, end in zip(rows, ends)])
    n_features = len(vectorizer.vocabulary_)
    extra = {"affix_lengths": list(AFFIX_LENGTHS), "window": 1, "n_features": n_features}
    described = (
        f"one-hot per-word features (lower-cased word, word shape, 1-3-character prefixes and suffixes, and the "
        f"previous and next word's identity and shape; {n_features} features)"
    )
    return _result("word", described, fitted, extra, start)


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

"""The cheap baseline of token_classification: per-word features into a logistic regression, one row per word.

Does pretraining earn its cost on tagging? This answers with what a tagger can learn from the words alone. Each
word is one-hot encoded features (`word_features`), in groups that each cover what the others cannot:

- identity: the word lower-cased, so a word seen in training gets its most frequent tag;
- shape: capitalised, all caps, digits, a number as written, underscore, dot, parentheses, punctuation only, a
  length bucket and the collapsed character classes ("Xx."), which carry over to words never seen in training
  (an unseen number, a capitalised name);
- affixes: lower-cased prefixes and suffixes of 1 to 3 characters, for inflections and name endings (-ing, -ed,
  Mc-, -son) that shape alone misses;
- window: the previous and next word's identity and shape (or a sentence-boundary flag), which is what lets a
  per-word model tell B- from I- ("Mr Smith Jones").

The estimator is single_label's logistic regression (baseline_estimators.py) with one row per word, its C chosen by
word accuracy over folds that keep each sentence whole (`sentence_folds`): the window makes neighbouring words share
features, so a sentence split across folds would leak. The eval splits are only ever predicted, and their flat
per-word predictions are padded back into rows as the ladder reads them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

import numpy as np
from scipy import sparse
from sklearn.feature_extraction import DictVectorizer
from sklearn.model_selection import GroupKFold

from peft_ladder.ladder.baseline_estimators import MAX_FOLDS, Features, Fitted, choose_c_on, refit_logreg
from peft_ladder.ladder.baseline_result import BaselineResult, Labels
from peft_ladder.tasks import pad_rows

# Tokens: a word's prefixes and suffixes of 1 to 3 characters, lower-cased (-ing, -ed, Mc-, -son).
AFFIX_LENGTHS = (1, 2, 3)
# Tokens: a word's length falls in the first bucket whose upper end holds it (1, 2, 3, 4-5, 6-8, 9+ characters).
LENGTH_BUCKETS = (1, 2, 3, 5, 8)
# Tokens: a number as written in text: optional sign, digits with decimal or thousands separators ("1,024.5"),
# or a leading decimal point (".5"), and an optional percent sign.
NUMBER = re.compile(r"[+-]?(\d+([.,]\d+)*|[.,]\d+)%?")


# ---- features ----------------------------------------------------------------------------------------------------
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


# ---- the estimator -----------------------------------------------------------------------------------------------
def sentence_folds(sentences: np.ndarray, labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Word-index folds in which every sentence's words fall in one fold: GroupKFold, k = min(5, sentences).

    A sentence's neighbouring words share their features (each word sees the previous and next), so words split
    across folds would leak; the sentence is also the unit the ladder compares. GroupKFold is not shuffled (its
    `shuffle` arrived in scikit-learn 1.6, the project allows 1.3): it deals sentences to folds largest first,
    evening out the words per fold, and the same rows always give the same folds. None below two sentences or tags.

    Args:
        sentences: each word's sentence (row) index (words,).
        labels: each word's tag id (words,).
    """
    n_sentences = np.unique(sentences).size
    if n_sentences < 2 or np.unique(labels).size < 2:
        return []
    splitter = GroupKFold(n_splits=min(MAX_FOLDS, n_sentences))
    return list(splitter.split(np.zeros(len(labels)), labels, groups=sentences))


def fit_token_classification(
    train: Features, y: np.ndarray, sentences: np.ndarray, evals: dict[str, Features], seed: int
) -> Fitted:
    """single_label's logistic regression with one row per word; C by word accuracy over sentence-grouped folds.

    C is chosen by held-out word accuracy, as single_label's C by accuracy (and with its fold scorer): the baseline
    is read through its argmax tags (word accuracy, entity F1), not its probabilities, and a fold holds hundreds of
    words or more, so accuracy is not the coarse, tie-prone score it is on a few hundred multi-label rows.

    Args:
        train: one row of features per training word.
        y: their tag ids (words,) int64.
        sentences: each training word's sentence index (words,), which keeps a sentence in one fold.
        evals: split name -> one row of features per word to predict.
        seed: seeds the fits.

    Returns:
        Each eval split's tag ids, one per word (words,) int64, in the order of the rows of `evals`.
    """
    choice = choose_c_on(train, y, sentence_folds(sentences, y), "group_kfold", seed)
    scored_by = "sentence-grouped kfold word accuracy"
    predictions, params, how = refit_logreg(train, y, evals, seed, choice, scored_by, "sentences or tags")
    params.update(n_train=int(np.unique(sentences).size), n_train_words=len(y))
    estimator = "Logistic regression (lbfgs, multinomial, one tag per word)"
    return Fitted("logreg", estimator, how, predictions, params)


# ---- the baseline ------------------------------------------------------------------------------------------------
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
        f"previous and next word's identity and shape; {n_features} features). It reads every word of a row, also "
        "those past data.max_length, which the rungs score as the training rows' most frequent tag (counted per "
        "split in the data line: words_past_max_length)"
    )
    return BaselineResult.from_fitted("word", described, fitted, extra, start)

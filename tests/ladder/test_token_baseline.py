"""The per-word baseline of token_classification: it learns words, shapes and a one-word window, pads its
predictions as the ladder reads them, keeps sentences whole across CV folds and rejects malformed rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from peft_ladder.ladder.baselines import cheap_baseline, text_baseline
from peft_ladder.ladder.word_baseline import sentence_folds, token_baseline, word_features

TAGS = ("B-NUM", "B-PER", "I-PER", "O")  # ids index the sorted tag names, as in a run
B_NUM, B_PER, I_PER, OUT = range(4)
FILLER = ["the", "a", "we", "paid", "saw", "went", "to", "and", "with", "it", "was", "for", "on", "in", "of"]
PLACES = ["Paris", "Rome", "Oslo"]  # capitalised but O: a capital letter alone does not make a name
NAMES = ["Smith", "Jones", "Brown", "Taylor", "Wilson", "Evans", "Walker", "Wright", "Green", "Hall"]
no_convergence_warning = pytest.mark.filterwarnings("error::sklearn.exceptions.ConvergenceWarning")


def _sentence(rng: np.random.Generator) -> tuple[list[str], list[int]]:
    """6-12 filler words with a number (B-NUM), a place (O) or "Mr" and one or two names (B-PER, I-PER) dropped in."""
    words = [str(w) for w in rng.choice(FILLER, int(rng.integers(6, 13)))]
    tags = [OUT] * len(words)
    for _ in range(int(rng.integers(1, 3))):
        at = int(rng.integers(0, len(words) + 1))
        kind = rng.integers(0, 3)
        if kind == 0:  # numbers up to 5 digits: most held-out numbers are unseen words
            piece, piece_tags = [str(int(rng.integers(0, 100_000)))], [B_NUM]
        elif kind == 1:
            piece, piece_tags = [str(rng.choice(PLACES))], [OUT]
        else:
            names = [str(n) for n in rng.choice(NAMES, int(rng.integers(1, 3)), replace=False)]
            piece, piece_tags = ["Mr", *names], [OUT, B_PER] + [I_PER] * (len(names) - 1)
        words[at:at] = piece
        tags[at:at] = piece_tags
    return words, tags


def _rows(n: int, seed: int) -> tuple[list[list[str]], list[list[int]]]:
    rng = np.random.default_rng(seed)
    pairs = [_sentence(rng) for _ in range(n)]
    return [w for w, _ in pairs], [t for _, t in pairs]


@pytest.fixture(scope="module")
def fitted():
    train_words, train_tags = _rows(300, seed=0)
    eval_words, eval_tags = _rows(100, seed=1)
    probes = [
        ["we", "paid", "73105", "for", "it"],  # 73105: a number never seen in training
        ["we", "saw", "Mr", "Quux", "Zorblax", "in", "Oslo"],  # names never seen in training
    ]
    assert "73105" not in {w for row in train_words for w in row}
    evals = {"eval": eval_words, "probe": probes, "ragged": [["a", "b", "c"], [], ["the", "a", "we", "it", "on"]]}
    result = cheap_baseline("text", train_words, train_tags, evals, task="token_classification")
    return result, train_tags, eval_tags


@no_convergence_warning
def test_beats_the_majority_tag_on_held_out_rows(fitted):
    result, train_tags, eval_tags = fitted
    truth = np.concatenate(eval_tags)
    predicted = result.predictions["eval"]
    words = predicted != -100
    assert int(words.sum()) == len(truth)
    accuracy = float(np.mean(predicted[words] == truth))  # row-major order is each row's words in order
    majority = float(np.mean(truth == np.bincount(np.concatenate(train_tags)).argmax()))
    assert accuracy >= 0.98 and accuracy >= majority + 0.1
    # The entity tags themselves, not only the O words: every tag is found almost everywhere.
    for tag in (B_NUM, B_PER, I_PER):
        assert np.mean(predicted[words][truth == tag] == tag) >= 0.95, TAGS[tag]


def test_shape_and_window_features_tag_unseen_words(fitted):
    result, _, _ = fitted
    number_row, name_row = result.predictions["probe"]
    assert number_row[2] == B_NUM and number_row[[0, 1, 3, 4]].tolist() == [OUT] * 4
    assert name_row[:7].tolist() == [OUT, OUT, OUT, B_PER, I_PER, OUT, OUT]


def test_predictions_follow_the_word_level_contract(fitted):
    result, _, _ = fitted
    ragged = result.predictions["ragged"]
    assert ragged.dtype == np.int64 and ragged.shape == (3, 5)  # W: the split's longest row
    assert (ragged[0, 3:] == -100).all() and (ragged[1] == -100).all() and (ragged[2] >= 0).all()
    assert (ragged[0, :3] >= 0).all()
    probe = result.predictions["probe"]
    assert probe.shape == (2, 7) and (probe[0, 5:] == -100).all() and (probe[1] >= 0).all()
    assert result.scores is None and result.metric_inputs("entity_f1") is result.predictions


def test_an_empty_split_and_empty_rows_keep_the_contract():
    train_words, train_tags = _rows(20, seed=2)
    result = token_baseline(train_words, train_tags, {"none": [], "blank": [[], []]})
    assert result.predictions["none"].shape == (0, 0) and result.predictions["none"].dtype == np.int64
    assert result.predictions["blank"].shape == (2, 0)


def test_name_description_and_params_say_what_was_fitted(fitted):
    result, train_tags, _ = fitted
    params = result.params
    assert result.name == "word_logreg"
    assert params["cv"] == "group_kfold" and params["cv_folds"] == 5 and params["converged"]
    assert set(params["cv_accuracy"]) == {str(c) for c in params["C_grid"]} and params["C"] in params["C_grid"]
    assert params["n_train"] == 300 and params["n_train_words"] == sum(map(len, train_tags))
    assert params["n_features"] > 0 and f"{params['n_features']} features" in result.description
    assert f"C={params['C']:g}" in result.description and "sentence-grouped" in result.description
    json.dumps(result.to_dict())


def test_cv_folds_never_split_a_sentence():
    sentences = np.repeat(np.arange(12), [1, 5, 2, 7, 3, 3, 4, 1, 6, 2, 2, 5])
    tags = np.arange(len(sentences)) % 3
    folds = sentence_folds(sentences, tags)
    assert len(folds) == 5
    held_out = np.concatenate([val for _, val in folds])
    assert sorted(held_out.tolist()) == list(range(len(sentences)))  # every word held out exactly once
    for train, val in folds:
        assert not set(sentences[train]) & set(sentences[val])
    assert sentence_folds(np.zeros(4, dtype=int), tags[:4]) == []  # one sentence: nothing to hold out
    assert sentence_folds(sentences, np.zeros(len(sentences), dtype=int)) == []  # one tag: nothing to choose


def test_word_features_see_the_neighbours():
    features = word_features(["Mr", "Smith", "paid", "1,024.5"])
    assert features[0]["-1:boundary"] == 1.0 and features[0]["+1:word=smith"] == 1.0
    assert features[1]["-1:word=mr"] == 1.0 and features[1]["capitalised"] == 1.0
    assert features[3]["is_number"] == features[3]["has_dot"] == features[3]["+1:boundary"] == 1.0
    assert features[3]["shape=d,d.d"] == 1.0 and "capitalised" not in features[3]


GOOD = [["a", "b"], ["c"]]


@pytest.mark.parametrize(
    ("words", "tags", "message"),
    [
        (["a b", "c"], [[0, 1], [0]], r"train_inputs row 0 is a str, not a list of words"),
        ([["a", "b"], ["c", 7]], [[0, 1], [0, 0]], r"train_inputs row 1, word 1 is a int"),
        (GOOD, [[0, 1]], "train_labels has 1 rows but there are 2 training inputs"),
        (GOOD, [[0, 1], [0, 1]], "train_labels row 1 has 2 tags for 1 words"),
        (GOOD, [[0, 1], 0], "train_labels row 1 is a int, not a list of tag ids"),
        (GOOD, [[0, -100], [0]], "train_labels row 0, word 1 is -100: tag ids .* never negative"),
        (GOOD, [[0, 1.5], [0]], "train_labels row 0, word 1 is 1.5, not a tag id"),
        (GOOD, [[0, True], [0]], "train_labels row 0, word 1 is True, not a tag id"),
        ([], [], "at least one training row"),
        ([[], []], [[], []], "at least one training word"),
    ],
)
def test_malformed_rows_are_value_errors(words, tags, message):
    with pytest.raises(ValueError, match=message):
        cheap_baseline("text", words, tags, {}, task="token_classification")


def test_eval_rows_and_misrouted_tasks_are_value_errors():
    with pytest.raises(ValueError, match=r"eval_inputs\['decision'\] row 1 is a str"):
        token_baseline(GOOD, [[0, 1], [0]], {"decision": [["a"], "b c"]})
    with pytest.raises(ValueError, match="not 'image' inputs"):
        cheap_baseline("image", GOOD, [[0, 1], [0]], {}, task="token_classification")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="use token_baseline"):
        text_baseline(["a b", "c"], [[0, 1], [0]], {}, task="token_classification")  # type: ignore[arg-type]

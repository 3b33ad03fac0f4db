"""Token-classification metrics: entity-level micro P/R/F1 equal to seqeval, token accuracy by hand, the word-level
id form (-100 padding) checked with errors that name what is wrong, and the task in the catalog."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

from peft_ladder.metrics import (
    BUILTIN_METRICS,
    TASK_METRICS,
    check_metrics_for_task,
    compute_metrics,
    higher_is_better,
    load_metric,
    reads_scores,
)
from peft_ladder.metrics.catalog import evaluate_config

TASK = "token_classification"
NAMES = TASK_METRICS[TASK]
TAGS = ("B-NAME", "B-NUM", "I-NAME", "O")  # sorted, as the data side builds them
B_NAME, B_NUM, I_NAME, OUT = range(4)
PAD = -100
SEQEVAL = {
    "entity_f1": f1_score,
    "entity_precision": precision_score,
    "entity_recall": recall_score,
    "token_accuracy": accuracy_score,
}

# Five sentences, width 5. Predictions past a row's words hold anything (-100, 99, -7, valid ids): never read.
REFS = np.array(
    [
        [B_NAME, I_NAME, OUT, B_NUM, PAD],  # a two-word entity and a one-word one
        [OUT, I_NAME, I_NAME, OUT, OUT],  # an I- after O opens an entity (seqeval's default mode); a full row
        [PAD, PAD, PAD, PAD, PAD],  # an empty sentence
        [B_NAME, B_NAME, OUT, PAD, PAD],  # two adjacent one-word entities
        [OUT, OUT, OUT, PAD, PAD],  # no entity
    ]
)
PREDS = np.array(
    [
        [B_NAME, I_NAME, OUT, OUT, 99],  # NAME(0, 1) found, NUM(3) missed
        [OUT, B_NAME, I_NAME, OUT, OUT],  # NAME(1, 2) found: B- or I- opening it, it is the same entity
        [I_NAME, I_NAME, B_NUM, 2, 2],  # padding only: ignored
        [B_NAME, I_NAME, OUT, PAD, -7],  # one NAME(0, 1) where there are two: wrong, and both missed
        [I_NAME, OUT, OUT, 5, PAD],  # a spurious NAME(0)
    ]
)
# By hand: correct entities 2, predicted 4, true 5; right words 3 + 4 + 0 + 2 + 2 of 4 + 5 + 0 + 3 + 3.
BY_HAND = {
    "entity_f1": 2 * 2 / (4 + 5),
    "entity_precision": 2 / 4,
    "entity_recall": 2 / 5,
    "token_accuracy": 11 / 15,
}


def _strings(ids: np.ndarray, refs: np.ndarray) -> list[list[str]]:
    """Each row's tag names at the references' words (seqeval's input)."""
    return [[TAGS[t] for t, word in zip(row, ref) if word != PAD] for row, ref in zip(ids, refs)]


def test_fixed_sentences_match_seqeval_and_the_hand_count() -> None:
    y_true, y_pred = _strings(REFS, REFS), _strings(PREDS, REFS)
    assert y_true[1] == ["O", "I-NAME", "I-NAME", "O", "O"] and y_true[2] == []
    seqeval_values = {name: SEQEVAL[name](y_true, y_pred) for name in NAMES}
    assert seqeval_values == pytest.approx(BY_HAND, rel=1e-12)
    assert compute_metrics(NAMES, PREDS, REFS, task=TASK, tags=TAGS) == pytest.approx(BY_HAND, rel=1e-12)


def _sentences(seed: int, tags: tuple[str, ...], n: int = 80, width: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """Random B-/I- tag rows of 0..width words (-100 after them), and a noisy tagger's predictions of them."""
    rng = np.random.default_rng(seed)
    refs = np.full((n, width), PAD)
    outside = tags.index("O")
    for row in refs:
        k = int(rng.integers(0, width + 1))
        row[:k] = outside
        start = int(rng.integers(0, width))
        while start < k:
            kind = rng.choice([t[2:] for t in tags if t.startswith("B-")])
            inside = f"I-{kind}"  # B-NUM has no I-NUM: one-word entities
            end = min(k, start + (int(rng.integers(1, 4)) if inside in tags else 1))
            row[start] = tags.index(f"B-{kind}")
            if inside in tags:
                row[start + 1 : end] = tags.index(inside)
            start = end + int(rng.integers(1, 4))
    words = refs != PAD
    wrong = words & (rng.random(refs.shape) < 0.2)  # any tag: I- after O, B-/I- of another type, lost entities
    preds = np.where(wrong, rng.integers(0, len(tags), refs.shape), refs)
    preds[~words] = rng.integers(-100, 100, (~words).sum())
    return preds, refs


@pytest.mark.parametrize("tags", [TAGS, ("B-LOC", "B-ORG", "B-PER", "I-LOC", "I-ORG", "I-PER", "O")])
@pytest.mark.parametrize("seed", range(3))
def test_random_sentences_match_seqeval(tags: tuple[str, ...], seed: int) -> None:
    preds, refs = _sentences(seed, tags)
    y_true = [[tags[t] for t in row if t != PAD] for row in refs]
    y_pred = [[tags[p] for p, t in zip(prow, row) if t != PAD] for prow, row in zip(preds, refs)]
    expected = {name: SEQEVAL[name](y_true, y_pred) for name in NAMES}
    assert compute_metrics(NAMES, preds, refs, task=TASK, tags=list(tags)) == pytest.approx(expected, rel=1e-12)


def test_perfect_predictions_and_no_entities() -> None:
    assert compute_metrics(NAMES, REFS, REFS, task=TASK, tags=TAGS) == dict.fromkeys(NAMES, 1.0)
    nothing = np.where(REFS == PAD, PAD, OUT)
    # No entity on either side: nothing to find or miss (seqeval's zero_division 0), every word right.
    assert compute_metrics(NAMES, nothing, nothing, task=TASK, tags=TAGS) == {
        "entity_f1": 0.0,
        "entity_precision": 0.0,
        "entity_recall": 0.0,
        "token_accuracy": 1.0,
    }
    # No word at all (a slice of empty sentences): 0, not a division by zero.
    empty = np.full((2, 3), PAD)
    assert compute_metrics(NAMES, empty, empty, task=TASK, tags=TAGS) == dict.fromkeys(NAMES, 0.0)


def test_input_types_agree() -> None:
    expected = compute_metrics(NAMES, PREDS, REFS, task=TASK, tags=TAGS)
    assert compute_metrics(NAMES, PREDS.tolist(), REFS.tolist(), task=TASK, tags=list(TAGS)) == expected
    assert compute_metrics(NAMES, torch.from_numpy(PREDS), torch.from_numpy(REFS), task=TASK, tags=TAGS) == expected
    assert compute_metrics(NAMES, PREDS.astype(np.float32), REFS.astype(np.int32), task=TASK, tags=TAGS) == expected


def _with(arr: np.ndarray, row: int, col: int, value: int) -> np.ndarray:
    out = arr.copy()
    out[row, col] = value
    return out


BAD = [
    (PREDS, REFS, None, r"needs tags= \(the tag names"),
    (PREDS, REFS, "B-NAME", "tags must be a sequence of tag-name strings"),
    (PREDS, REFS, (0, 1, 2, 3), "tags must be a sequence of tag-name strings"),
    (PREDS, REFS, (), "tags is empty"),
    (PREDS[0], REFS, TAGS, r"predictions must be a 2-D \(rows, words\) matrix of tag ids .* shape \(5,\)"),
    (PREDS, REFS[..., None], TAGS, r"references must be a 2-D \(rows, words\) matrix .* shape \(5, 5, 1\)"),
    (PREDS + 0.5, REFS, TAGS, "predictions must be integer tag ids .* dtype float64"),
    (PREDS[:, :4], REFS, TAGS, r"predictions shape \(5, 4\) and references shape \(5, 5\) differ"),
    (np.zeros((0, 5), int), np.zeros((0, 5), int), TAGS, "empty"),
    (PREDS, _with(REFS, 3, 1, PAD), TAGS, r"pad each row after its last word .* 1 rows .* e\.g\. rows 3"),
    (PREDS, _with(REFS, 0, 2, 4), TAGS, r"references must hold tag ids 0 \.\. 3 \(len\(tags\) = 4\) .* e\.g\. 4"),
    (PREDS, _with(REFS, 0, 2, -1), TAGS, r"references must hold tag ids .* e\.g\. -1"),
    (_with(PREDS, 1, 4, PAD), REFS, TAGS, r"predictions must hold tag ids .* e\.g\. -100"),
    (_with(PREDS, 0, 0, 7), REFS, TAGS, r"predictions must hold tag ids 0 \.\. 3 .* e\.g\. 7"),
]


@pytest.mark.parametrize(("preds", "refs", "tags", "match"), BAD, ids=[b[3][:30] for b in BAD])
def test_bad_inputs_name_what_is_wrong(preds: np.ndarray, refs: np.ndarray, tags: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        compute_metrics(NAMES, preds, refs, task=TASK, tags=tags)


def test_the_catalog_knows_the_task(connections: list[object]) -> None:
    assert NAMES == ("entity_f1", "entity_precision", "entity_recall", "token_accuracy")
    assert set(NAMES) <= set(BUILTIN_METRICS)
    check_metrics_for_task(["some/hub_metric", *NAMES], TASK)
    assert evaluate_config(TASK) is None
    for name in NAMES:
        assert higher_is_better(name) and not reads_scores(name)
        assert load_metric(name) is load_metric(name)
        with pytest.raises(ValueError, match=f"metric '{name}' does not apply to task 'single_label'"):
            check_metrics_for_task([name], "single_label")
    with pytest.raises(
        ValueError, match=r"metric 'accuracy' does not apply to task 'token_classification' .*entity_f1"
    ):
        check_metrics_for_task(["accuracy"], TASK)
    assert list(compute_metrics(NAMES, PREDS, REFS, task=TASK, tags=TAGS)) == list(NAMES)
    assert connections == []


def test_other_tasks_ignore_tags() -> None:
    assert compute_metrics(["accuracy"], [0, 1], [0, 0], tags=TAGS) == {"accuracy": 0.5}

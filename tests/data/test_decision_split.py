"""`hold_out_decision`: validation split into a selection part and a decision part that no choice sees."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset

from peft_ladder.data import Splits, hold_out_decision


def splits(labels: list[int]) -> Splits:
    validation = Dataset.from_dict({"text": [f"row {i}" for i in range(len(labels))], "labels": labels})
    train = Dataset.from_dict({"text": ["t"], "labels": [0]})
    network = [i for i, y in enumerate(labels) if y == 2]
    return Splits(train, validation, None, ["a", "b", "c"], "text", "text", slices={"c_rows": network})


def test_parts_are_disjoint_stratified_seeded_and_cover_validation():
    labels = [0] * 40 + [1] * 30 + [2] * 10
    held = hold_out_decision(splits(labels), 0.5, seed=3)
    selection, decision = held.validation["text"], held.decision["text"]
    assert not set(selection) & set(decision) and len(selection) + len(decision) == len(labels)
    for c, n in ((0, 40), (1, 30), (2, 10)):  # every class split in half
        assert held.decision["labels"].count(c) == n // 2
    again = hold_out_decision(splits(labels), 0.5, seed=3)
    assert again.decision["text"] == decision
    assert hold_out_decision(splits(labels), 0.5, seed=4).decision["text"] != decision


def test_slices_follow_their_rows_into_each_part():
    labels = [0] * 20 + [2] * 8
    held = hold_out_decision(splits(labels), 0.5, seed=0)
    assert [held.decision["labels"][i] for i in held.decision_slices["c_rows"]] == [2] * 4
    assert [held.validation["labels"][i] for i in held.slices["c_rows"]] == [2] * 4
    assert set(held.eval_splits()) == {"validation", "decision"}


def test_a_class_with_two_rows_reaches_both_parts_and_one_row_is_too_few():
    held = hold_out_decision(splits([0, 0, 1, 1, 2, 2]), 0.5, seed=0)
    assert sorted(held.decision["labels"]) == [0, 1, 2] and sorted(held.validation["labels"]) == [0, 1, 2]
    with pytest.raises(ValueError, match="too few"):
        hold_out_decision(splits([1]), 0.5, seed=0)
    assert np.isclose(len(hold_out_decision(splits([0] * 10 + [1] * 10), 0.3, seed=0).decision), 6)

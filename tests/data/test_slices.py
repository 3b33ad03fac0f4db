"""Named evaluation slices: rows chosen by a column's values, class names allowed on the label column."""

from __future__ import annotations

import csv

import pytest

from peft_ladder.config import DataConfig
from peft_ladder.data import load_raw, make_splits


def _csv(path, rows):
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def data_files(tmp_path):
    train = [
        {"text": f"t{i}", "label": ["cat", "dog", "eel"][i % 3], "domain": "web" if i % 2 else "book"}
        for i in range(30)
    ]
    val = [
        {"text": f"v{i}", "label": ["cat", "dog", "eel"][i % 3], "domain": "web" if i < 4 else "book"}
        for i in range(12)
    ]
    return {"train": str(_csv(tmp_path / "train.csv", train)), "validation": str(_csv(tmp_path / "val.csv", val))}


def _splits(data_files, slices):
    cfg = DataConfig(dataset="csv", data_files=data_files, slices=slices)
    return make_splits(load_raw(cfg), cfg, "text", seed=0)


def test_slices_by_column_value_and_by_class_name(data_files):
    splits = _splits(
        data_files,
        [
            {"name": "web", "column": "domain", "values": ["web"]},
            {"name": "dogs", "column": "label", "values": ["dog"]},
        ],
    )
    assert splits.slices["web"] == [0, 1, 2, 3]
    dog = splits.label_names.index("dog")
    assert splits.slices["dogs"] == [i for i in range(12) if i % 3 == 1]
    assert set(splits.validation.select(splits.slices["dogs"])["labels"]) == {dog}


@pytest.mark.parametrize(
    "slice_, message",
    [
        ({"name": "x", "column": "nope", "values": ["a"]}, "nope"),
        ({"name": "x", "column": "label", "values": ["wolf"]}, "wolf"),
    ],
)
def test_bad_slices_name_the_column_or_class(data_files, slice_, message):
    with pytest.raises(ValueError, match=message):
        _splits(data_files, [slice_])

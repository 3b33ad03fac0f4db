"""The stdlib-docstrings dataset's multi-label (`traits`) and regression (`n_params`) targets, and the packaged
recipes that train them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from datasets import DatasetDict

from peft_ladder.config import load_config
from peft_ladder.data import make_splits
from peft_ladder.data import stdlib_docstrings as sd

REPO = Path(__file__).resolve().parents[2]
SPLITS = ("train", "validation", "test")
# Loose enough for another CPython's docstrings; 3.11 gives 12-48% on train (the module's TRAITS comment).
TRAIT_SHARE = (0.05, 0.75)


@pytest.fixture(scope="module")
def dataset() -> DatasetDict:
    return sd.build_stdlib_docstrings()


def test_every_split_has_the_new_columns(dataset: DatasetDict) -> None:
    for split in SPLITS:
        assert {"traits", "n_params"} <= set(dataset[split].column_names), split


def test_traits_are_known_names_each_in_a_sane_share(dataset: DatasetDict) -> None:
    for split in SPLITS:
        for row in dataset[split]["traits"]:
            assert row == [t for t in sd.TRAITS if t in row], row  # known names, once each, in TRAITS order
    rows = dataset["train"]["traits"]
    for trait in sd.TRAITS:
        share = sum(trait in row for row in rows) / len(rows)
        assert TRAIT_SHARE[0] <= share <= TRAIT_SHARE[1], (trait, share)
    assert sum(not row for row in rows) / len(rows) < 0.2  # modules and attributes: no trait applies


def test_n_params_is_a_finite_count_on_every_row(dataset: DatasetDict) -> None:
    for split in SPLITS:
        values = dataset[split]["n_params"]
        assert all(math.isfinite(v) and v >= 0 and v == int(v) for v in values), split
        for traits, n in zip(dataset[split]["traits"], values):
            assert ("no_params" in traits) <= (n == 0)  # the two targets read the same signature
    assert len(set(dataset["train"]["n_params"])) > 3  # a target that varies


@pytest.mark.parametrize(
    ("recipe", "task", "outputs"),
    [
        ("minilm_multilabel_ladder", "multi_label", sorted(sd.TRAITS)),
        ("minilm_regression_ladder", "regression", ["n_params"]),
        ("minilm_ladder", "single_label", list(sd.FAMILIES)),  # the new columns leave the default job as it was
    ],
)
def test_each_recipe_loads_and_trains_its_task(dataset: DatasetDict, recipe: str, task: str, outputs: list) -> None:
    cfg = load_config(REPO / "recipes" / "tiny" / f"{recipe}.yaml")
    assert cfg.data.dataset == "stdlib_docstrings" and cfg.ladder is not None
    splits = make_splits(dataset, cfg.data, "text", cfg.train.seed)
    assert splits.task.name == task
    assert splits.label_names == outputs
    assert len(splits.train) == cfg.data.max_samples["train"]

"""Tests for the stdlib-docstrings classification dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import ClassLabel, DatasetDict

from peft_ladder.data import stdlib_docstrings as sd

SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def dataset() -> DatasetDict:
    return sd.build_stdlib_docstrings()


def test_splits_exist_and_are_disjoint(dataset: DatasetDict) -> None:
    assert set(dataset) == set(SPLITS)
    texts = {split: set(dataset[split]["text"]) for split in SPLITS}
    for split in SPLITS:
        assert len(texts[split]) == len(dataset[split]) > 0  # no duplicates either
    assert not texts["train"] & texts["validation"]
    assert not texts["train"] & texts["test"]
    assert not texts["validation"] & texts["test"]


def test_labels_are_family_classlabel(dataset: DatasetDict) -> None:
    for split in SPLITS:
        label = dataset[split].features["label"]
        assert isinstance(label, ClassLabel)
        assert label.names == list(sd.FAMILIES)


def test_every_family_in_every_split_and_balanced(dataset: DatasetDict) -> None:
    for split in SPLITS:
        counts = {y: dataset[split]["label"].count(y) for y in range(len(sd.FAMILIES))}
        assert min(counts.values()) > 0
        assert len(set(counts.values())) == 1, counts  # balanced classes


def test_texts_are_cleaned(dataset: DatasetDict) -> None:
    for text in dataset["train"]["text"]:
        assert sd.MIN_CHARS <= len(text) <= sd.MAX_CHARS
        assert "\n" not in text and "  " not in text


def test_build_is_deterministic(dataset: DatasetDict) -> None:
    again = sd.build_stdlib_docstrings()
    for split in SPLITS:
        assert again[split].to_dict() == dataset[split].to_dict()
    other_seed = sd.build_stdlib_docstrings(seed=1)
    assert other_seed["train"]["text"] != dataset["train"]["text"]


def test_host_patches_do_not_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    """Collection runs in a fresh interpreter, so patching the stdlib here changes nothing."""
    import statistics

    before = sd.collect_docstrings()
    monkeypatch.delattr(statistics, "mean")
    assert sd.collect_docstrings() == before


def _no_build(**kwargs: object) -> DatasetDict:
    raise AssertionError("cache was not reused")


def test_cache_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = sd.load_stdlib_docstrings(cache_dir=tmp_path)
    entries = list((tmp_path / "stdlib_docstrings").iterdir())
    assert len(entries) == 1 and not entries[0].name.startswith(".")  # no temp leftovers
    monkeypatch.setattr(sd, "build_stdlib_docstrings", _no_build)
    second = sd.load_stdlib_docstrings(cache_dir=str(tmp_path))
    for split in SPLITS:
        assert second[split].to_dict() == first[split].to_dict()
    with pytest.raises(AssertionError, match="not reused"):  # other params, other entry
        sd.load_stdlib_docstrings(cache_dir=tmp_path, seed=1)


def test_cache_dir_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEFT_LADDER_CACHE", str(tmp_path))
    sd.load_stdlib_docstrings()
    assert len(list((tmp_path / "stdlib_docstrings").iterdir())) == 1


def test_concurrent_writer_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If another process fills the cache while we build, keep its copy and clean ours."""
    real_build = sd.build_stdlib_docstrings

    def racing_build(seed: int = 0, max_per_family: int = 300) -> DatasetDict:
        result = real_build(seed=seed, max_per_family=max_per_family)
        target = tmp_path / "stdlib_docstrings" / sd._fingerprint(seed, max_per_family)
        result.save_to_disk(str(target))  # the "other process" finishes first
        return result

    monkeypatch.setattr(sd, "build_stdlib_docstrings", racing_build)
    loaded = sd.load_stdlib_docstrings(cache_dir=tmp_path)
    assert len(loaded["train"]) > 0
    assert [p.name for p in (tmp_path / "stdlib_docstrings").iterdir()] == [sd._fingerprint(0, 300)]


def test_tfidf_baseline_beats_chance(dataset: DatasetDict) -> None:
    """Real signal: a bag-of-words model must clearly beat chance (1 / num_classes)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(TfidfVectorizer(sublinear_tf=True), LogisticRegression(max_iter=1000))
    model.fit(dataset["train"]["text"], dataset["train"]["label"])
    predicted = model.predict(dataset["validation"]["text"])
    accuracy = float((predicted == dataset["validation"]["label"]).mean())
    print(f"TF-IDF + logistic regression validation accuracy: {accuracy:.3f}")
    assert accuracy > 1.5 / len(sd.FAMILIES)

"""The stdlib-docstrings dataset's token-classification columns: `words` (the text split on its spaces) and `tags`
(IOB2: CODE read from Python, NUM from its tokenizer), and the packaged recipe that trains them."""

from __future__ import annotations

import collections
import math
from pathlib import Path

import pytest
from datasets import DatasetDict

from peft_ladder.config import load_config
from peft_ladder.data import stdlib_docstrings as sd

REPO = Path(__file__).resolve().parents[2]
SPLITS = ("train", "validation", "test")
TAGS = {"O", "B-CODE", "I-CODE", "B-NUM"}
# Loose enough for another CPython's docstrings; 3.11 gives 58% and 9% of all rows (the module docstring).
ROWS_WITH = {"CODE": (0.35, 0.85), "NUM": (0.03, 0.25)}


@pytest.fixture(scope="module")
def dataset() -> DatasetDict:
    return sd.load_stdlib_docstrings()  # the session's cache (conftest): built once for every module that loads it


def _row(dataset: DatasetDict, start: str) -> dict:
    rows = [row for split in SPLITS for row in dataset[split] if row["text"].startswith(start)]
    assert len(rows) == 1, f"{len(rows)} rows start with {start!r}"
    return rows[0]


def _tags_of(row: dict) -> dict[str, str]:
    return dict(zip(row["words"], row["tags"]))


def test_words_are_the_text_and_tags_are_iob2(dataset: DatasetDict) -> None:
    for split in SPLITS:
        for row in dataset[split]:
            assert row["words"] == row["text"].split(" ") and " ".join(row["words"]) == row["text"]
            assert len(row["tags"]) == len(row["words"]) and set(row["tags"]) <= TAGS, row["text"]
            for before, tag in zip(["O", *row["tags"]], row["tags"]):
                if tag.startswith("I-"):  # IOB2: an inside tag continues a span of its own type
                    assert before in (f"B-{tag[2:]}", tag), row["text"]


def test_every_tag_is_trained_on_and_each_entity_in_a_sane_share_of_rows(dataset: DatasetDict) -> None:
    assert set().union(*dataset["train"]["tags"]) == TAGS  # the tagger's label set comes from train
    for split in SPLITS:
        rows = dataset[split]["tags"]
        for entity, (lo, hi) in ROWS_WITH.items():
            share = sum(f"B-{entity}" in tags for tags in rows) / len(rows)
            assert lo <= share <= hi, (split, entity, share)
    words = collections.Counter(tag for tags in dataset["train"]["tags"] for tag in tags)
    assert 0.85 <= words["O"] / words.total() <= 0.98  # not a tag on every common word, nor on none


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (  # math.copysign: a call spread over two words, then a signed float; one-letter parameters stay English
            "Return a float with the magnitude",
            {"copysign(1.0,": "B-CODE", "-0.0)": "I-CODE", "-1.0.": "B-NUM", "x": "O", "sign": "O", "zeros,": "O"},
        ),
        (  # os.DirEntry.path: a dotted name from an importable stdlib module, with its arguments
            "the entry's full path name",
            {"os.path.join(scandir_path,": "B-CODE", "entry.name)": "I-CODE", "path": "O", "equivalent": "O"},
        ),
        (  # re.Match.group: "subgroup(s)" is English, a bare 0 a number
            "group([group1, ...]) -> str",
            {"group([group1,": "B-CODE", "...])": "I-CODE", "subgroup(s)": "O", "0": "B-NUM", "str": "O"},
        ),
    ],
)
def test_known_docstrings_get_their_tags(dataset: DatasetDict, start: str, expected: dict[str, str]) -> None:
    tags = _tags_of(_row(dataset, start))
    assert {word: tags.get(word) for word in expected} == expected


def test_code_is_read_from_python_not_from_a_word_list() -> None:
    import collections as collections_module  # the documented module of this made-up docstring

    text = (
        "Return an OrderedDict of dir_fd keys, or raise ValueError; see os.path and e.g. 0x1F or math.e for the list."
    )
    words, in_collections = sd.tag_words(text, (collections_module,), frozenset({"dir_fd"}))
    _, in_math = sd.tag_words(text, (math,), frozenset())
    tagged = dict(zip(words, in_collections))
    assert tagged["OrderedDict"] == "B-CODE" and dict(zip(words, in_math))["OrderedDict"] == "O"  # collections' own
    assert tagged["dir_fd"] == "B-CODE" and dict(zip(words, in_math))["dir_fd"] == "O"  # a parameter only there
    assert tagged["ValueError;"] == "B-CODE" and tagged["os.path"] == "B-CODE" and tagged["math.e"] == "B-CODE"
    assert tagged["0x1F"] == "B-NUM"
    # Plain words are English even where Python defines them: `for` is a keyword, `list` a builtin; `e.g` does not
    # resolve, not even from math (math.e has no `g`).
    assert tagged["for"] == tagged["list."] == tagged["the"] == tagged["e.g."] == tagged["Return"] == "O"
    assert dict(zip(words, in_math))["e.g."] == "O"
    assert sd.tag_words("Use ``os.path.join(a, b)`` here.", (), frozenset())[1] == ["O", "B-CODE", "I-CODE", "O"]


def test_the_recipe_trains_the_tags(dataset: DatasetDict) -> None:
    cfg = load_config(REPO / "recipes" / "tiny" / "minilm_token_ladder.yaml")
    assert cfg.data.dataset == "stdlib_docstrings" and cfg.data.task == "token_classification"
    assert (cfg.data.text_column, cfg.data.label_column) == ("words", "tags")
    assert {cfg.data.text_column, cfg.data.label_column} <= set(dataset["train"].column_names)
    assert cfg.ladder is not None and cfg.ladder.metric is None  # the task's default: entity_f1
    assert [rung.name for rung in cfg.ladder.rungs] == ["linear_probe", "lora", "partial_unfreeze", "full"]
    assert (cfg.ladder.rungs[1].options["r"], cfg.ladder.rungs[1].options["lora_alpha"]) == (8, 16)

"""The label column says which task it is (single-label, multi-label, regression, token classification); a set
`data.task` fixes a wrong guess; a column that cannot hold the task asked for is refused naming the column."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from peft_ladder.data.task import guess_task, resolve_task

REPO = Path(__file__).resolve().parents[2]
WORDS = [["open", "the", "file"], ["read", "it"]]


@pytest.mark.parametrize(
    "labels, inputs, task",
    [
        (["code", "chat", "code"], ["a", "b", "c"], "single_label"),
        ([0, 1, 2, 1], ["a"] * 4, "single_label"),
        ([0.0, 1.0, 2.0], ["a"] * 3, "single_label"),  # integer-valued floats: class ids
        ([0.37, 1.5, 2.0], ["a"] * 3, "regression"),
        ([["a", "b"], ["b"]], ["x", "y"], "multi_label"),
        (["['a', 'b']", "['b']"], ["x", "y"], "multi_label"),
        ([["V", "O", "O"], ["V", "O"]], WORDS, "token_classification"),
    ],
)
def test_the_task_is_read_from_the_label_column(labels, inputs, task):
    assert guess_task(labels, lambda: inputs)[0] == task


@pytest.mark.parametrize(
    "labels, inputs, task",
    [
        ([0.37, 1.5], ["a", "b"], "regression"),
        ([["a", "b"], ["b"]], ["x", "y"], "multi_label"),
        ([0, 1], "ab", "single_label"),
        ([["V", "O", "O"], ["V", "O"]], WORDS, "token_classification"),
    ],
)
def test_auto_trains_the_task_it_reads(labels, inputs, task):
    assert resolve_task("auto", "score", labels, lambda: inputs)[0] == task


def test_a_tag_list_beside_words_is_tagging_even_where_a_row_is_short():
    """The short row is then named by the target check, not read as a set of labels."""
    assert guess_task([["V", "O", "O"], ["V"]], lambda: WORDS)[0] == "token_classification"


def test_token_classification_asked_of_a_column_without_words_is_refused_naming_it():
    with pytest.raises(ValueError, match="'tags'.*data.text_column"):
        resolve_task("token_classification", "tags", [["a"], ["b"]], lambda: ["x", "y"])
    with pytest.raises(ValueError, match="'label'"):
        resolve_task("token_classification", "label", ["a", "b"], lambda: ["x", "y"])


def test_a_set_task_wins_over_the_guess_but_never_takes_lists_as_classes():
    assert resolve_task("single_label", "score", [0.37, 1.5], lambda: ["a", "b"])[0] == "single_label"
    assert resolve_task("regression", "stars", [1, 5, 3], lambda: ["a", "b", "c"])[0] == "regression"
    with pytest.raises(ValueError, match="'tags'"):
        resolve_task("single_label", "tags", [["a"], ["b"]], lambda: ["x", "y"])
    with pytest.raises(ValueError, match="'name'"):
        resolve_task("multi_label", "name", ["a", "b"], lambda: ["x", "y"])
    with pytest.raises(ValueError, match="'tags'"):
        resolve_task("regression", "tags", [["a"], ["b"]], lambda: ["x", "y"])


def test_a_label_per_word_trains_a_tagger_through_the_cli(tmp_path):
    data = tmp_path / "tags.jsonl"
    data.write_text("".join(json.dumps({"text": ["row", str(i)], "label": ["O", "B-NUM"]}) + "\n" for i in range(20)))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "peft_ladder.cli",
            "train",
            "--recipe",
            "recipes/tiny/minilm_1layer.yaml",
            "data.dataset=json",
            f"data.data_files.train={data}",
            f"output_dir={tmp_path / 'out'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["task"]["name"] == "token_classification" and metrics["task"]["tags"] == ["B-NUM", "O"]

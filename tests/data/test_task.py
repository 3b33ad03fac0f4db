"""The label column says which task it is; what is not single-label classification is refused with the column
named, instead of training a classifier over every distinct score or failing in the data library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from peft_ladder.data.task import check_task, guess_task

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
    "labels, inputs",
    [([0.37, 1.5], ["a", "b"]), ([["a", "b"], ["b"]], ["x", "y"]), ([["V", "O", "O"], ["V", "O"]], WORDS)],
)
def test_what_is_not_single_label_is_refused_naming_the_column(labels, inputs):
    with pytest.raises(ValueError, match="'score'"):
        check_task("auto", "score", labels, lambda: inputs)


def test_single_label_takes_numbers_as_class_names_but_never_lists():
    assert check_task("single_label", "score", [0.37, 1.5], lambda: ["a", "b"]) is None
    with pytest.raises(ValueError, match="'tags'"):
        check_task("single_label", "tags", [["a"], ["b"]], lambda: ["x", "y"])


def test_a_list_per_row_in_json_lines_is_one_error_through_the_cli(tmp_path):
    data = tmp_path / "tags.jsonl"
    data.write_text(
        "".join(json.dumps({"text": f"row {i}", "label": ["a", "b"][: 1 + i % 2]}) + "\n" for i in range(20))
    )
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
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "data.label_column" in errors[0]

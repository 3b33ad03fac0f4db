"""Known answers for the multi-label, regression and token-classification ladders, over the three ladder seeds.

The keyword scenarios of `synthetic.py` (a tiny BERT pretrained on a source task whose four classes are the
target's, renamed) carry over to the other tasks by deriving each row's target from its class:
- multi_label: two tags per row, `even`/`odd` and `low`/`high` of the class index (which classes share a tag);
- regression: the class index as a number, plus noise (sd 0.1), so the target is a linear readout of the class;
- token_classification: each keyword is an entity of its row's class (`B-c2`), every filler word `O` (keywords are
  the words below w40, the filler block).

(a) close: the pretrained features separate the classes, so the solved probe (multi-label logistic regression,
    ridge, logistic regression per token) already reads each target and the climb stops there.
(b) no signal: the last block's output is constant, so the probe and LoRA on its attention see nothing while the
    scratch control learns the target: negative transfer, flagged with an interval above zero.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from ladder.synthetic import FILLER, LADDER_SEEDS, scenario_close, scenario_no_signal
from peft_ladder.config import load_config
from peft_ladder.ladder import Ladder

pytestmark = pytest.mark.slow
NOISE = 0.1


def _targets(csv_path: Path, out: Path, seed: int) -> Path:
    """The csv's rows as JSON lines with `tags` (multi-label) and `score` (regression) derived from the class."""
    rng = random.Random(seed)
    with csv_path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with out.open("w", encoding="utf-8") as f:
        for row in rows:
            k = int(row["label"].removeprefix("c"))
            tags = ["even" if k % 2 == 0 else "odd", "low" if k < 2 else "high"]
            words = row["text"].split()
            ner = [f"B-{row['label']}" if int(w.removeprefix("w")) < FILLER[0] else "O" for w in words]
            record = {"text": row["text"], "tags": tags, "score": k + rng.gauss(0.0, NOISE), "words": words, "ner": ner}
            f.write(json.dumps(record) + "\n")
    return out


def _config(scenario, out: Path, label: str, seed: int, rungs: list[dict], epochs: int, scratch: dict | None = None):
    folder = out.parent / "data"
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "train": str(_targets(scenario.train_csv, folder / "train.jsonl", seed)),
        "validation": str(_targets(scenario.validation_csv, folder / "validation.jsonl", seed + 100)),
    }
    return load_config(
        None,
        [],
        backbone={"name": str(scenario.backbone)},
        data={
            "dataset": "json",
            "data_files": files,
            "text_column": "words" if label == "ner" else "text",
            "label_column": label,
            "max_length": 16,
        },
        train={"epochs": epochs, "batch_size": 16, "head_lr": 3e-2, "warmup_ratio": 0.0, "seed": seed},
        ladder={
            "rungs": rungs,
            "lr_search": {"multipliers": [1.0]},
            "bootstrap_samples": 1000,
            "scratch": scratch or {"enabled": False},
        },
        checkpoint={"each_epoch": False},
        log_with="none",
        output_dir=str(out),
    )


@pytest.mark.parametrize("seed", LADDER_SEEDS)
@pytest.mark.parametrize(
    "label, task, metric",
    [("tags", "multi_label", "map"), ("score", "regression", "rmse"), ("ner", "token_classification", "entity_f1")],
)
def test_a_close_task_stops_at_the_probe(tmp_path, source_backbones, seed, label, task, metric):
    scenario = scenario_close(tmp_path, seed=seed, source=source_backbones[seed])
    # No control: the verdict here is the climb's (test_ladder_scenarios.py checks the control on this task).
    rungs = [{"name": "linear_probe"}, {"name": "lora"}]
    config = _config(scenario, tmp_path / "ladder", label, seed, rungs, 5)
    note = Ladder(config).run()
    assert note.task == task and note.metric == metric
    assert note.decision.recommended == "linear_probe" and note.decision.outcome in ("stop", "uncertain")
    probe = next(r for r in note.rungs if r.id == "linear_probe")
    if task in ("multi_label", "token_classification"):  # every tag ranked right; every keyword found and typed
        assert probe.metric.estimate >= 0.95
    else:  # close to the noise floor, far below the spread of the classes (sd 1.1)
        assert probe.metric.estimate <= 3 * NOISE


@pytest.mark.parametrize("seed", LADDER_SEEDS)
@pytest.mark.parametrize(
    "label, task", [("tags", "multi_label"), ("score", "regression"), ("ner", "token_classification")]
)
def test_features_without_signal_flag_negative_transfer(tmp_path, source_backbones, seed, label, task):
    scenario = scenario_no_signal(tmp_path, seed=seed, source=source_backbones[seed])
    rungs = [{"name": "linear_probe"}, {"name": "lora", "lr": 2e-3}]
    # The control at one LR that learns every task here (the family grid's search is tested in test_few_labels.py).
    scratch = {"lrs": [1e-3]}
    note = Ladder(_config(scenario, tmp_path / "ladder", label, seed, rungs, 10, scratch)).run()
    probe = next(r for r in note.rungs if r.id == "linear_probe")
    # Constant features: the probe can only predict the training rows' base rates / mean / most frequent tag (O, which
    # finds no entity), chance's neighbourhood.
    assert abs(probe.metric.estimate - note.chance) <= (0.15 if task == "regression" else 0.1)
    negative = [f for f in note.flags if f.kind == "negative_transfer"]
    assert negative and all(f.interval.low > 0 for f in negative)

"""Two CPU processes (gloo) through `accelerate launch`: every strategy trains as one DDP run (parameters
identical on both processes, metrics gathered without the padded tail), LP-FT's head phase leaves the backbone
alone on both, and a ladder is ONE ladder (one note, two processes in every trial, the one-process decision)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "tiny" / "minilm_1layer.yaml"
LADDER = REPO / "recipes" / "tiny" / "minilm_1layer_ladder.yaml"

DRIVER = r"""
import json, sys, hashlib
import torch
from accelerate.utils import gather_object
from peft_ladder.config import load_config
from peft_ladder.engine import Engine

recipe, out = sys.argv[1], sys.argv[2]
report = {}
for strategy in ["linear_probe", "bitfit", "lora", "partial_unfreeze", "full", "scratch"]:
    config = load_config(recipe, [f"output_dir={out}/{strategy}", f"strategy.name={strategy}", "train.lpft.head=epochs"])
    engine = Engine(config).setup()
    before = {n: p.detach().clone() for n, p in engine.adapted.model.named_parameters()}
    layout = engine.adapted.backbone.layout
    head = {n for n in before if layout.role_of(n)[0] == "head"}
    backbone_after_phase1 = {}
    original = engine._end_of_head_epoch
    def end_of_epoch(engine=engine, original=original, store=backbone_after_phase1):
        if engine.state.phase == 1:
            store.update({n: p.detach().clone() for n, p in engine.adapted.model.named_parameters() if n not in head})
        original()
    engine._end_of_head_epoch = end_of_epoch
    engine.train()
    results = engine.finish()
    digest = hashlib.sha256()
    for name, p in sorted(engine.adapted.model.named_parameters()):
        digest.update(p.detach().cpu().contiguous().numpy().tobytes())
    moved_in_phase1 = [n for n, v in backbone_after_phase1.items() if not torch.equal(v, before[n])]
    report[strategy] = {
        "digests": gather_object([digest.hexdigest()]),
        "num_processes": results.num_processes,
        "n_validation": results.splits["validation"].n,
        "phase1": bool(backbone_after_phase1),
        "moved_in_phase1": moved_in_phase1,
    }
if engine.accelerator.is_main_process:
    print("REPORT " + json.dumps(report))
# As peft_ladder/train.py does: a process group left to the interpreter's exit can abort it ("terminate called
# without an active exception", seen once in CI).
engine.accelerator.wait_for_everyone()
torch.distributed.destroy_process_group()
"""


def _launch(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "ACCELERATE_USE_CPU": "true"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    cmd += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=cwd)


def test_every_strategy_is_one_ddp_run_on_two_processes(tmp_path):
    (tmp_path / "driver.py").write_text(DRIVER)
    done = _launch([str(tmp_path / "driver.py"), str(TINY), str(tmp_path / "runs")], tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("REPORT "))[7:])
    for strategy, r in report.items():
        assert r["num_processes"] == 2, strategy
        assert len(r["digests"]) == 2 and r["digests"][0] == r["digests"][1], f"{strategy}: processes differ"
        assert r["n_validation"] == 48, strategy  # gather_for_metrics drops the padded duplicates
    for strategy in ("bitfit", "lora", "partial_unfreeze", "full"):  # LP-FT: phase 1 trains the head only
        assert report[strategy]["phase1"] and report[strategy]["moved_in_phase1"] == [], strategy


def test_a_ladder_on_two_processes_is_one_ladder(tmp_path):
    rungs = "ladder.rungs=[{name: linear_probe}, {name: bitfit}, {name: partial_unfreeze}]"
    common = [rungs, "ladder.max_seeds=1", "ladder.run_all=true"]
    two = _launch(
        [str(REPO / "peft_ladder" / "train.py"), "--recipe", str(LADDER), f"output_dir={tmp_path / 'two'}", *common],
        tmp_path,
    )
    assert two.returncode == 0, two.stderr[-4000:]
    assert two.stdout.count("ladder done") == 1  # one ladder, not two racing on one folder
    note = json.loads((tmp_path / "two" / "transfer_note.json").read_text())
    assert note["num_processes"] == 2
    trials = sorted((tmp_path / "two" / "rungs").glob("*/*/metrics.json"))
    assert trials and all(json.loads(t.read_text())["num_processes"] == 2 for t in trials)
    one = subprocess.run(
        [
            sys.executable,
            str(REPO / "peft_ladder" / "train.py"),
            "--recipe",
            str(LADDER),
            f"output_dir={tmp_path / 'one'}",
            *common,
        ],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert one.returncode == 0, one.stderr[-4000:]
    single = json.loads((tmp_path / "one" / "transfer_note.json").read_text())
    assert note["decision"]["recommended"] == single["decision"]["recommended"]
    for a, b in zip(note["rungs"], single["rungs"]):  # the same rungs, within their intervals
        assert a["id"] == b["id"]
        assert b["metric"]["low"] - 0.05 <= a["metric"]["estimate"] <= b["metric"]["high"] + 0.05, a["id"]


def test_a_tagger_on_two_processes_scores_every_sentence_once(tmp_path):
    """Token batches differ in length between processes: they are padded to one length before gathering, and the
    run's metrics equal the same artifact evaluated in one process, row for row (no padded duplicate)."""
    from task_data import write_splits

    from peft_ladder import evaluate

    data = write_splits(tmp_path / "data", {"train": 64, "validation": 42, "test": 42})
    words = ["data.dataset=json", "data.text_column=words", "data.label_column=ner", "data.max_length=16"]
    words += [f"data.data_files.{split}={path}" for split, path in data.items()]
    run = tmp_path / "run"
    two = _launch(
        [
            str(REPO / "peft_ladder" / "train.py"),
            "--recipe",
            str(TINY),
            f"output_dir={run}",
            "strategy.name=lora",
            "train.eval_batch_size=5",  # uneven batches: the last batch of a process is padded
            *words,
        ],
        tmp_path,
    )
    assert two.returncode == 0, two.stderr[-4000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["num_processes"] == 2 and metrics["task"]["name"] == "token_classification"
    for split in ("validation", "test"):
        recorded = metrics["splits"][split]
        assert recorded["n"] == 42, split
        one = evaluate(run, data[split], progress=False, bootstrap_samples=10)
        for name, value in recorded["metrics"].items():
            assert one.metrics[name] == pytest.approx(value, abs=1e-6), (split, name)

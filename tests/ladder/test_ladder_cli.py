"""The ladder through its entry points: `accelerate launch peft_ladder/train.py` with a ladder recipe,
`--all`, `--resume` (finished trials are reused), and `peft-ladder ladder` refusing a one-rung recipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ladder.synthetic import scenario_close

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _recipe(tmp_path: Path) -> Path:
    scenario = scenario_close(tmp_path)
    recipe = {
        "backbone": {"name": str(scenario.backbone)},
        "data": {
            "dataset": "csv",
            "data_files": {"train": str(scenario.train_csv), "validation": str(scenario.validation_csv)},
            "max_length": 16,
        },
        "train": {"epochs": 2, "batch_size": 16, "head_lr": 3e-2, "warmup_ratio": 0.0},
        "ladder": {
            "rungs": [{"name": "linear_probe"}, {"name": "bitfit"}, {"name": "full"}],
            "lr_search": {"multipliers": [1.0]},
            "scratch": False,
            "bootstrap_samples": 300,
        },
        "metrics": ["accuracy"],
        "log_with": "none",
        "output_dir": str(tmp_path / "out"),
    }
    path = tmp_path / "ladder.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_accelerate_launch_runs_a_ladder_recipe_with_all_and_resume(tmp_path):
    recipe = _recipe(tmp_path)
    launch = [str(BIN / "accelerate"), "launch", "--num_processes", "1", "--num_machines", "1"]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no", "peft_ladder/train.py", "--recipe", str(recipe)]
    done = _run([*launch, "--all"])
    assert done.returncode == 0, done.stderr[-3000:]
    note = json.loads((tmp_path / "out" / "transfer_note.json").read_text())
    assert note["decision"]["run_all"] is True
    assert note["decision"]["rungs_run"] == ["linear_probe", "bitfit", "full"]
    assert note["scratch"] is None
    # bitfit trains biases (and the head) only.
    bitfit = next(r for r in note["rungs"] if r["id"] == "bitfit")
    assert 0 < bitfit["trainable"]["pct"] < 5

    predictions = sorted((tmp_path / "out" / "rungs").glob("*/*/predictions.npz"))
    stamps = [p.stat().st_mtime_ns for p in predictions]
    again = _run([*launch, "--all", "--resume"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert [p.stat().st_mtime_ns for p in predictions] == stamps  # every trial reused, none retrained
    resumed = json.loads((tmp_path / "out" / "transfer_note.json").read_text())
    assert resumed["decision"] == note["decision"]
    # The note's wall time is the ladder's whole cost: the first session's plus the resumed one's.
    assert note["sessions"] == 1 and resumed["sessions"] == 2
    assert resumed["total_seconds"] > note["total_seconds"]

    # Without --resume or overwrite, an existing note is never silently replaced.
    refused = _run([str(BIN / "python"), "-m", "peft_ladder.train", "--recipe", str(recipe)])
    assert refused.returncode == 2 and "--overwrite" in refused.stderr and "Traceback" not in refused.stderr


def test_resume_is_a_flag_so_an_override_after_it_is_an_override():
    from peft_ladder.train import build_parser

    for ladder in (True, False):
        args = build_parser(ladder).parse_intermixed_args(["--recipe", "r.yaml", "--resume", "output_dir=elsewhere"])
        assert args.resume is True and args.overrides == ["output_dir=elsewhere"]
    args = build_parser().parse_intermixed_args(["a=1", "--recipe", "r.yaml", "--resume-from", "ck/step_4", "b=2"])
    assert args.resume_from == "ck/step_4" and args.overrides == ["a=1", "b=2"] and not args.resume


def test_peft_ladder_ladder_refuses_a_one_rung_recipe():
    done = _run([str(BIN / "peft-ladder"), "ladder", "--recipe", "recipes/tiny/minilm_1layer.yaml"])
    assert done.returncode == 2 and "ladder" in done.stderr

"""No code runs from a checkpoint, no result is lost, divergence stops a run with one message and a ladder
records the failed rung and finishes with strict JSON."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from peft_ladder.checkpoints import CheckpointRefused, list_checkpoints
from peft_ladder.config import load_config
from peft_ladder.engine import Diverged, Engine
from peft_ladder.ladder import Ladder
from peft_ladder.run_folder import OutputDirInUse

TINY = "recipes/tiny/minilm_1layer.yaml"


def config(tmp_path: Path, *overrides: str, name: str = "run"):
    return load_config(TINY, [f"output_dir={tmp_path / name}", "strategy.name=lora", *overrides])


class _Touch:
    """Unpickling this creates a file: the proof that a pickle ran."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_a_crafted_checkpoint_is_refused_and_its_pickle_never_runs(tmp_path):
    cfg = config(tmp_path, "train.epochs=1", "checkpoint.epoch_interval_seconds=0")
    Engine(cfg).run()
    latest = list_checkpoints(tmp_path / "run" / "checkpoints")[-1]
    proof = tmp_path / "pwned"
    (latest / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(_Touch(str(proof))))
    with pytest.raises(CheckpointRefused, match="custom_checkpoint_0.pkl"):
        Engine(cfg, resume="latest").setup()
    assert not proof.exists()
    # An Accelerate checkpoint (pickles, no manifest) is refused the same way.
    foreign = tmp_path / "run" / "checkpoints" / "step_999"
    foreign.mkdir()
    (foreign / "random_states_0.pkl").write_bytes(pickle.dumps(_Touch(str(proof))))
    with pytest.raises(CheckpointRefused):
        Engine(cfg, resume=str(foreign)).setup()
    assert not proof.exists()


def test_a_checkpoint_holds_no_pickle_beyond_weights_only_tensors(tmp_path):
    Engine(config(tmp_path, "train.epochs=1", "checkpoint.epoch_interval_seconds=0")).run()
    latest = list_checkpoints(tmp_path / "run" / "checkpoints")[-1]
    names = sorted(p.name for p in latest.iterdir())
    assert not [n for n in names if n.endswith((".pkl", ".bin"))]
    torch.load(latest / "optimizer.pt", weights_only=True)  # the one torch.save file reads back weights-only
    for name in names:
        if name.endswith(".json"):
            json.loads((latest / name).read_text())  # strict JSON (no NaN / Infinity)


@pytest.mark.parametrize("interval, epochs_saved", [(0, [1, 2]), (1e9, [])])
def test_epoch_checkpoints_are_spaced_by_their_interval(tmp_path, interval, epochs_saved):
    """An epoch of a few steps is not worth a checkpoint each: epoch checkpoints wait for the interval."""
    engine = Engine(config(tmp_path, "train.epochs=2", f"checkpoint.epoch_interval_seconds={interval}"))
    engine.run()
    steps = [int(p.name.split("_")[1]) for p in list_checkpoints(tmp_path / "run" / "checkpoints")]
    assert steps == [epoch * engine.steps_per_epoch for epoch in epochs_saved]


def test_an_earlier_run_is_refused_unless_overwrite_or_resume(tmp_path, capsys):
    cfg = config(tmp_path, "train.epochs=1")
    Engine(cfg).run()
    with pytest.raises(OutputDirInUse, match="--overwrite"):
        Engine(cfg).setup()
    again = cfg.model_copy(update={"overwrite_output_dir": True})
    Engine(again).run()
    assert "removed the earlier run's" in capsys.readouterr().out
    # A ladder into a folder holding a train run is refused too (its artifact would be replaced).
    ladder = load_config("recipes/tiny/minilm_1layer_ladder.yaml", [f"output_dir={tmp_path / 'run'}"])
    with pytest.raises(OutputDirInUse, match="train run"):
        Ladder(ladder).run()
    assert (tmp_path / "run" / "artifact").is_dir()


def test_resume_refuses_a_changed_recipe_and_records_safe_changes(tmp_path):
    cfg = config(tmp_path, "train.epochs=2", "checkpoint.every_n_steps=2")
    engine = Engine(cfg).setup()
    engine.config = cfg  # train only the first epoch: stop after the first checkpoint
    with pytest.raises(KeyboardInterrupt):
        original = engine._save_checkpoint

        def save_then_stop():
            original()
            raise KeyboardInterrupt

        engine._save_checkpoint = save_then_stop
        engine.train()
    changed_lr = cfg.model_copy(update={"train": cfg.train.model_copy(update={"backbone_lr": 3e-4})})
    with pytest.raises(CheckpointRefused, match=r"train\.backbone_lr"):
        Engine(changed_lr, resume="latest").setup()
    safe = cfg.model_copy(update={"checkpoint": cfg.checkpoint.model_copy(update={"keep_last": 5})})
    resumed = Engine(safe, resume="latest").setup()
    assert set(resumed.resumed_changes) == {"checkpoint.keep_last"}
    # Pruning only ever removes this run's checkpoints.
    assert all(
        json.loads((p / "manifest.json").read_text())["run_id"] == resumed.run_id
        for p in list_checkpoints(tmp_path / "run" / "checkpoints")
    )


def test_divergence_stops_the_run_with_one_message_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = config(tmp_path, "train.epochs=2", "train.head_lr=1e6", "train.backbone_lr=1e6", "train.max_grad_norm=null")
    with pytest.raises(Diverged, match="diverged at step"):
        Engine(cfg).run()
    assert not (tmp_path / "run" / "artifact").exists()
    for checkpoint in list_checkpoints(tmp_path / "run" / "checkpoints"):
        from safetensors.torch import load_file

        assert all(torch.isfinite(t).all() for t in load_file(str(checkpoint / "trainable.safetensors")).values())


@pytest.mark.slow
def test_a_ladder_records_a_diverged_rung_and_finishes_with_strict_json(tmp_path):
    ladder = load_config(
        "recipes/tiny/minilm_1layer_ladder.yaml",
        [
            f"output_dir={tmp_path / 'ladder'}",
            "ladder.rungs=[{name: linear_probe}, {name: full, lr: 1e6}, {name: bitfit}]",
            "train.max_grad_norm=null",
            "ladder.max_seeds=1",
            "ladder.scratch=false",
            "ladder.baseline=false",
        ],
    )
    note = Ladder(ladder, run_all=True).run()
    text = (tmp_path / "ladder" / "transfer_note.json").read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert [f["id"] for f in data["failed_rungs"]] == ["full"]
    assert any(f["kind"] == "rung_failed" and f["rung"] == "full" for f in data["flags"])
    assert note.decision.rungs_run == ["linear_probe", "bitfit"]

"""A checkpoint is checked before it is trusted: `--resume` passes over a damaged one to the newest intact one, a
save that runs out of space leaves the earlier ones as they were, a moved run folder or a key added later at its
default still resumes, and a divergence says which LR it ran with and what was kept."""

from __future__ import annotations

import errno
import json
import pickle
import re
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
import torch
import yaml

import peft_ladder.checkpoints as checkpoints
from peft_ladder.checkpoints import (
    CheckpointDamaged,
    CheckpointRefused,
    compare_configs,
    list_checkpoints,
    verify_checkpoint,
)
from peft_ladder.config import dump_config, load_config
from peft_ladder.engine import Diverged, Engine
from peft_ladder.train import main

TINY = "recipes/tiny/minilm_1layer.yaml"
# 96 rows in batches of 16: 6 steps, a checkpoint every 2 (step_2, step_4, step_6), all kept.
RUN = ("strategy.name=lora", "train.epochs=1", "checkpoint.every_n_steps=2", "checkpoint.keep_last=3")


def overrides(folder: Path, *more: str) -> list[str]:
    return [f"output_dir={folder}", *RUN, *more]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """One finished run with three checkpoints, copied by each test that damages it."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    Engine(load_config(TINY, overrides(folder))).run()
    assert [p.name for p in list_checkpoints(folder / "checkpoints")] == ["step_2", "step_4", "step_6"]
    return folder


@pytest.fixture
def run(finished, tmp_path) -> Path:
    shutil.copytree(finished, tmp_path / "run")
    return tmp_path / "run"


def without_checksums(folder: Path) -> None:
    """Make every checkpoint look like one written before manifests held sizes and hashes."""
    for checkpoint in list_checkpoints(folder / "checkpoints"):
        manifest = json.loads((checkpoint / "manifest.json").read_text())
        manifest.pop("checksums", None)
        (checkpoint / "manifest.json").write_text(json.dumps(manifest))


def cut(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


class _Touch:
    """Unpickling this creates a file: the proof that a pickle ran."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


DAMAGE = {
    "empty optimizer.pt": ("optimizer.pt", lambda p: p.write_bytes(b"")),
    "cut-off optimizer.pt": ("optimizer.pt", cut),
    "cut-off safetensors": ("trainable.safetensors", cut),
    "cut-off JSON": ("train_state.json", cut),
    "missing rng file": ("rng_0.json", Path.unlink),
}


@pytest.mark.parametrize("checksums", [True, False], ids=["manifest", "older_manifest"])
@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_resume_passes_over_a_damaged_checkpoint_to_the_newest_intact_one(run, damage, checksums, caplog):
    if not checksums:
        without_checksums(run)  # checked by reading every file, its errors caught
    name, spoil = DAMAGE[damage]
    spoil(run / "checkpoints" / "step_6" / name)
    engine = Engine(load_config(TINY, overrides(run)), resume="latest").setup()
    assert engine.state.step == 4
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and r.name.startswith("peft_ladder")]
    assert len(warnings) == 1 and "step_6" in warnings[0] and name in warnings[0]
    assert (run / "checkpoints" / "step_6").is_dir()  # left as it was, never removed without a flag


def test_resume_with_no_intact_checkpoint_is_one_error_naming_the_folder(run, capsys):
    for checkpoint in list_checkpoints(run / "checkpoints"):
        (checkpoint / "optimizer.pt").write_bytes(b"")
    status = main(["--recipe", TINY, *overrides(run), "--resume"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert status == 2 and len(errors) == 1
    assert str(run / "checkpoints") in errors[0] and "optimizer.pt" in errors[0]


@pytest.mark.parametrize("checksums", [True, False], ids=["manifest", "older_manifest"])
def test_a_pickle_in_optimizer_pt_never_runs_and_the_refusal_names_the_file(run, checksums, tmp_path):
    if not checksums:
        without_checksums(run)
    proof = tmp_path / "pwned"
    torch.save({"state": _Touch(str(proof))}, run / "checkpoints" / "step_6" / "optimizer.pt")
    cfg = load_config(TINY, overrides(run))
    with pytest.raises(CheckpointDamaged, match="optimizer.pt"):
        Engine(cfg, resume=str(run / "checkpoints" / "step_6")).setup()
    assert Engine(cfg, resume="latest").setup().state.step == 4
    assert not proof.exists()


def test_a_cut_off_manifest_is_damage_and_a_foreign_file_still_a_refusal(run):
    cut(run / "checkpoints" / "step_6" / "manifest.json")
    cfg = load_config(TINY, overrides(run))
    assert Engine(cfg, resume="latest").setup().state.step == 4
    (run / "checkpoints" / "step_4" / "random_states_0.pkl").write_bytes(pickle.dumps(0))
    with pytest.raises(CheckpointRefused, match="random_states_0.pkl"):
        Engine(cfg, resume="latest").setup()


@pytest.mark.parametrize("failure", ["torch_writer", "enospc"])
def test_a_full_disk_while_checkpointing_keeps_the_earlier_checkpoint(tmp_path, monkeypatch, capsys, failure):
    """The second checkpoint (step 4) fails partway through its files, as a full disk makes it fail."""
    folder, real_torch_save, real_save_file = tmp_path / "run", torch.save, checkpoints.save_file
    calls = {"torch.save": 0}

    def torch_save(obj, path, *args, **kwargs):
        calls["torch.save"] += 1
        if calls["torch.save"] == 2:
            Path(path).write_bytes(b"PK" + b"\0" * 4096)  # what was written before the disk filled up
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4160 vs 4096")
        return real_torch_save(obj, path, *args, **kwargs)

    def save_file(tensors, path, *args, **kwargs):
        if "step_4" in str(path):
            Path(path).write_bytes(b"\0" * 4096)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save_file(tensors, path, *args, **kwargs)

    if failure == "torch_writer":  # no errno: the free space tells
        usage = namedtuple("usage", "total used free")
        monkeypatch.setattr(torch, "save", torch_save)
        monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2**30, 2**30 - 2**20, 2**20))
    else:
        monkeypatch.setattr(checkpoints, "save_file", save_file)
    status = main(["--recipe", TINY, *overrides(folder)])
    monkeypatch.undo()
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert status == 2 and len(errors) == 1 and str(folder / "checkpoints") in errors[0]
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["step_2"]  # no step_4.tmp
    verify_checkpoint(folder / "checkpoints" / "step_2")  # every file as written (sizes, hashes)
    assert Engine(load_config(TINY, overrides(folder)), resume="latest").setup().state.step == 2


def test_a_moved_run_folder_and_keys_added_later_at_their_default_resume(run, tmp_path):
    moved = tmp_path / "moved"
    shutil.move(run, moved)
    without_checksums(moved)  # a checkpoint from before the manifest held hashes (and before these keys)
    saved = moved / "checkpoints" / "step_6" / "config.yaml"
    old = yaml.safe_load(saved.read_text())
    del old["train"]["log_every_n_steps"], old["strategy"]["r"]  # both at their defaults in this run
    saved.write_text(yaml.safe_dump(old))
    engine = Engine(load_config(TINY, overrides(moved)), resume="latest").setup()
    assert engine.state.step == 6
    assert set(engine.resumed_changes) == {"output_dir", "train.log_every_n_steps", "strategy.r"}
    assert engine.state.resumes[-1]["changed"]["output_dir"][1] == str(moved)
    # The run's results record what the resume accepted (checkpoints that hold it are pruned by keep_last).
    engine.train().finish()
    recorded = json.loads((moved / "metrics.json").read_text())["resumes"]
    assert recorded[-1]["changed"]["output_dir"][1] == str(moved)
    assert set(recorded[-1]["added_at_default"]) == {"train.log_every_n_steps", "strategy.r"}
    shared = json.loads((moved / "artifact" / "peft_ladder.json").read_text())["metrics"]["resumes"]
    assert shared[-1]["changed"]["output_dir"] == ["run", "moved"]  # a shared file names folders, not paths
    # A key the checkpoint lacks, set here to another value than its default, can change the result.
    with pytest.raises(CheckpointRefused, match=r"strategy\.r"):
        Engine(load_config(TINY, overrides(moved, "strategy.r=4")), resume="latest").setup()


def test_compare_configs_sorts_the_differences():
    base = load_config(TINY, ["strategy.name=lora"])
    old = yaml.safe_load(dump_config(base))
    del old["train"]["seed"]
    new = base.model_copy(update={"output_dir": "elsewhere", "train": base.train.model_copy(update={"head_lr": 0.5})})
    changes = compare_configs(yaml.safe_dump(old), dump_config(new))
    assert changes.allowed == {"output_dir": (base.output_dir, "elsewhere")}
    assert changes.new_defaults == {"train.seed": base.train.seed}
    assert set(changes.refused) == {"train.head_lr"}


@pytest.mark.parametrize("every", [1, None], ids=["checkpointed", "no_checkpoint"])
def test_a_divergence_names_the_lr_it_ran_with_and_what_was_kept(tmp_path, every):
    cfg = load_config(
        TINY,
        [
            f"output_dir={tmp_path / 'run'}",
            "strategy.name=lora",
            "train.epochs=1",  # cosine to 0 at step 6: an LR read after the step that diverged is another one
            "train.head_lr=1e6",
            "train.backbone_lr=1e5",
            "train.max_grad_norm=null",
            f"checkpoint.every_n_steps={every or 'null'}",
            "checkpoint.each_epoch=false",
        ],
    )
    engine = Engine(cfg).setup()
    used: list[dict[str, float]] = []  # per optimizer step, the LR of each parameter role
    real_step = engine.optimizer.step

    def step(*args, **kwargs):
        used.append({g["role"]: g["lr"] for g in engine.optimizer.param_groups})
        return real_step(*args, **kwargs)

    engine.optimizer.step = step
    with pytest.raises(Diverged) as caught:
        engine.train()
    message = str(caught.value)
    diverged = int(re.search(r"step (\d+)", message).group(1))
    said = dict(re.findall(r"(head|backbone) ([0-9.]+e[+-]\d+)", message))
    assert said == {role: f"{lr:.2e}" for role, lr in used[diverged - 1].items()}
    kept = list_checkpoints(tmp_path / "run" / "checkpoints")
    named = re.findall(r"step_\d+", message)
    if every:
        assert kept and named == [kept[-1].name] and int(kept[-1].name.removeprefix("step_")) < diverged
    else:
        assert not kept and not named

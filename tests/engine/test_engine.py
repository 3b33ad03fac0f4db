"""The engine end to end on the tiny recipe: every strategy, resume, the LP-FT schedule, images, two processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import make_color_images

import peft_ladder.engine as engine_module
from peft_ladder import list_strategies, load_adapted
from peft_ladder.config import load_config
from peft_ladder.engine import Engine

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "tiny" / "minilm_1layer.yaml"


def tiny_config(tmp_path: Path, *overrides: str):
    return load_config(TINY, [f"output_dir={tmp_path / 'run'}", *overrides])


@pytest.mark.parametrize("strategy", list_strategies())
def test_every_strategy_trains_and_its_artifact_loads(tmp_path, strategy):
    results = Engine(tiny_config(tmp_path, f"strategy.name={strategy}")).run()
    run = tmp_path / "run"
    assert (run / "config.yaml").is_file() and (run / "metrics.json").is_file()
    meta = json.loads((run / "artifact" / "peft_ladder.json").read_text())
    assert meta["strategy"] == strategy and meta["metrics"]["splits"]["validation"]["n"] == 48
    restored = load_adapted(run / "artifact")
    assert restored.report.trainable == results.trainable["trainable"]
    assert results.splits["validation"].metrics["accuracy"] >= 0.0
    if strategy == "linear_probe":  # solved, not stepped: a converged logistic regression on frozen features
        assert results.steps == 0 and results.solver["converged"] and results.stopping.converged
    else:
        assert results.steps > 0


def _weights(run: Path) -> dict[str, torch.Tensor]:
    folder = run / "artifact"
    name = next(
        n for n in ("adapter_model.safetensors", "delta.safetensors", "model.safetensors") if (folder / n).exists()
    )
    return load_file(str(folder / name))


def test_resume_after_a_kill_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    overrides = ("strategy.name=lora", "train.epochs=2", "checkpoint.every_n_steps=4", "checkpoint.keep_last=5")
    full = Engine(tiny_config(tmp_path / "a", *overrides)).run()

    real_save = engine_module.save_checkpoint

    def save_then_die(accelerator, root, step, keep_last, payload):
        path = real_save(accelerator, root, step, keep_last, payload)
        if step == 8:  # mid phase 2, mid epoch: a kill right after this checkpoint
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(engine_module, "save_checkpoint", save_then_die)
    config = tiny_config(tmp_path / "b", *overrides)
    with pytest.raises(KeyboardInterrupt):
        Engine(config).run()
    monkeypatch.setattr(engine_module, "save_checkpoint", real_save)
    resumed = Engine(config, resume="latest").run()

    assert resumed.steps == full.steps
    assert resumed.splits["validation"] == full.splits["validation"]
    a, b = _weights(tmp_path / "a" / "run"), _weights(tmp_path / "b" / "run")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_phase2_backbone_group_follows_the_schedule(tmp_path, monkeypatch):
    config = tiny_config(
        tmp_path,
        "strategy.name=partial_unfreeze",
        "train.epochs=2",
        "train.warmup_ratio=0.2",
        "train.lpft.head=epochs",
        "train.log_every_n_steps=1",  # the LR of every step reaches the tracker
    )
    engine = Engine(config).setup()
    logged: list[dict] = []
    monkeypatch.setattr(engine.accelerator, "log", lambda values, step=None: logged.append({**values, "step": step}))
    trainable_backbone = {
        n: p.detach().clone()
        for n, p in engine.adapted.model.named_parameters()
        if p.requires_grad and engine.adapted.backbone.layout.role_of(n)[0] != "head"
    }
    after_phase1: dict[str, torch.Tensor] = {}
    real_end = engine._end_of_head_epoch

    def end_of_epoch():
        if engine.state.phase == 1:
            after_phase1.update(
                {n: p.detach().clone() for n, p in engine.adapted.model.named_parameters() if n in trainable_backbone}
            )
        real_end()

    monkeypatch.setattr(engine, "_end_of_head_epoch", end_of_epoch)
    engine.train()

    steps = [r for r in logged if "lr/backbone" in r]
    phase1 = [r for r in steps if r["step"] <= engine.steps_per_epoch]
    phase2 = [r for r in steps if r["step"] > engine.steps_per_epoch]
    assert phase1 and phase2
    assert all(r["lr/backbone"] == 0.0 for r in phase1)
    assert len({round(r["lr/backbone"], 12) for r in phase2}) > 2, (
        "backbone LR must follow the schedule, not sit constant"
    )
    ratio = config.train.head_lr / config.train.backbone_lr
    for r in phase2[:-1]:
        assert r["lr/head"] == pytest.approx(ratio * r["lr/backbone"])
    for name, before in trainable_backbone.items():
        assert torch.equal(after_phase1[name], before), f"{name} moved in phase 1"
    moved = [
        n
        for n, p in engine.adapted.model.named_parameters()
        if n in trainable_backbone and not torch.equal(p, trainable_backbone[n])
    ]
    assert len(moved) == len(trainable_backbone)


def test_lpft_head_phase_is_the_converged_probe(tmp_path, monkeypatch):
    """LP-FT's first phase by default solves the head (L-BFGS logistic regression) on the starting features;
    phase 2 then trains backbone and head from it."""
    config = tiny_config(tmp_path, "strategy.name=partial_unfreeze", "train.epochs=1")
    engine = Engine(config).setup()
    assert engine.phase1_epochs == 0 and engine.state.phase == 2
    before = {n: p.detach().clone() for n, p in engine.adapted.model.named_parameters()}
    solved: dict[str, torch.Tensor] = {}
    real_solve = engine._solve_head

    def solve_and_look():
        record = real_solve()
        solved.update({n: p.detach().clone() for n, p in engine.adapted.model.named_parameters()})
        return record

    monkeypatch.setattr(engine, "_solve_head", solve_and_look)
    engine.train()
    head = set(engine.adapted.backbone.layout.head_params())
    assert engine.state.solver["converged"]
    for name, value in before.items():  # solving touched the head only
        assert torch.equal(solved[name], value) != (name in head), name
    results = engine.finish()
    assert results.solver["method"] == "lbfgs" and results.steps > 0


def test_image_folder_with_timm_backbone(tmp_path):
    make_color_images(tmp_path / "images")
    config = load_config(
        None,
        [f"output_dir={tmp_path / 'run'}", f"data.dataset={tmp_path / 'images'}", "data.validation_fraction=0.25"],
        backbone={
            "name": "timm:vit_tiny_patch16_224",
            "pretrained": False,
            "model_kwargs": {"img_size": 32, "depth": 1},
        },
        strategy={"name": "full"},
        train={"epochs": 2, "batch_size": 6, "head_lr": 1e-3, "backbone_lr": 1e-3},
        log_with="none",
    )
    results = Engine(config).run()
    assert results.lpft is False  # random init: nothing to protect with a head-first phase
    assert results.preprocessing["transform"]["input_size"] == [3, 32, 32]
    assert load_adapted(tmp_path / "run" / "artifact").backbone.modality == "image"


@pytest.mark.slow
def test_two_processes_with_accelerate_launch(tmp_path):
    # accelerate 1.x runs `--cpu` through its single-process launcher; two CPU processes (gloo) go
    # through the torchrun launcher with ACCELERATE_USE_CPU set.
    env = {**os.environ, "PYTHONPATH": str(REPO), "ACCELERATE_USE_CPU": "true"}
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(REPO / "peft_ladder" / "train.py"),
        "--recipe",
        str(TINY),
        "strategy.name=lora",
        f"output_dir={tmp_path / 'run'}",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["num_processes"] == 2
    assert metrics["splits"]["validation"]["n"] == 48  # gather_for_metrics drops the padding duplicates
    assert load_adapted(tmp_path / "run" / "artifact").report.trainable == metrics["trainable"]["trainable"]

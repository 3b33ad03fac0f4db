"""The training step never waits on the device: the loss and the divergence flag stay on it and are read back
every `train.log_every_n_steps`, so the host syncs of a run do not grow with its number of steps (counted, never
timed).

Counted: read-backs made by peft_ladder's or Accelerate's code, the loop around the model. Not counted: those
inside the model and the optimizer, which a hand-written loop pays the same (transformers checks whether an
attention mask has padding; AdamW reads its step count, a host tensor unless `capturable`)."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from peft_ladder.config import load_config
from peft_ladder.engine import Engine

TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny" / "minilm_1layer.yaml"
SYNCS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")


@pytest.fixture
def syncs(monkeypatch) -> Counter:
    """Every Tensor -> host read-back made while training (the engine's `train()` only)."""
    counts: Counter = Counter()
    active = {"on": False}

    def counted(name):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):
            if active["on"] and _caller_package() in ("peft_ladder", "accelerate"):
                counts[name] += 1
            return original(self, *args, **kwargs)

        return wrapper

    for name in SYNCS:
        monkeypatch.setattr(torch.Tensor, name, counted(name))
    counts.active = active  # type: ignore[attr-defined]
    return counts


def _caller_package() -> str:
    """The top-level package of the code that called the Tensor method (two frames up: past the wrapper)."""
    module = sys._getframe(2).f_globals.get("__name__", "")
    return module.split(".")[0]


def _train_steps(tmp_path: Path, syncs: Counter, rows: int, every: int) -> int:
    cfg = load_config(
        TINY,
        [
            f"output_dir={tmp_path / f'run_{rows}_{every}'}",
            "strategy.name=lora",  # the whole model runs every step (no cache)
            f"data.max_samples.train={rows}",
            "train.batch_size=8",
            "train.lpft.enabled=false",
            "train.early_stopping.enabled=false",
            f"train.log_every_n_steps={every}",
            "checkpoint.each_epoch=false",
        ],
    )
    engine = Engine(cfg).setup()
    engine._evaluate = lambda: None  # evaluation reads metrics back by design; the steps are under test
    syncs.clear()
    syncs.active["on"] = True
    try:
        engine.train()
    finally:
        syncs.active["on"] = False
    assert engine.state.step == rows // 8
    return sum(syncs.values())


def test_host_syncs_do_not_grow_with_the_number_of_steps(tmp_path, syncs):
    short = _train_steps(tmp_path, syncs, rows=32, every=1000)
    long = _train_steps(tmp_path, syncs, rows=96, every=1000)
    assert long == short  # 4 steps or 12: the same read-backs (none per step)


def test_per_step_logging_reads_the_loss_back_every_step(tmp_path, syncs):
    quiet = _train_steps(tmp_path, syncs, rows=96, every=1000)
    chatty = _train_steps(tmp_path, syncs, rows=96, every=1)
    assert chatty >= quiet + 12  # asked for: one read-back per step, and the counter sees it

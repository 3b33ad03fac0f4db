"""`train.mixed_precision: auto`: bf16 autocast where the CPU (or GPU) computes bf16 natively, float32 elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from peft_ladder.config import load_config
from peft_ladder.engine import Engine
from peft_ladder.precision import native_bf16, resolve_precision

TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny" / "minilm_1layer.yaml"


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bf16_only_where_the_cpu_has_native_bf16(monkeypatch, native):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert native_bf16("cpu") is native
    assert resolve_precision("auto", "cpu") == ("bf16" if native else "no")
    for asked in ("no", "bf16"):  # an explicit choice is never second-guessed
        assert resolve_precision(asked, "cpu") == asked


@pytest.mark.parametrize("native", [True, False])
def test_an_auto_run_trains_at_the_resolved_precision_and_records_it(tmp_path, monkeypatch, native):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    overrides = [f"output_dir={tmp_path / 'run'}", f"cache.dir={tmp_path / 'cache'}", "strategy.name=lora"]
    engine = Engine(load_config(TINY, [*overrides, "train.mixed_precision=auto"])).setup()
    seen_autocast: list[bool] = []
    # Accelerate wraps the model's forward in autocast, so a module inside it sees it.
    inner = next(m for m in engine.adapted.model.modules() if isinstance(m, torch.nn.Linear))
    inner.register_forward_pre_hook(lambda *_: seen_autocast.append(torch.is_autocast_enabled("cpu")))
    engine.train().finish()
    expected = "bf16" if native else "no"
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["precision"] == expected
    assert seen_autocast and all(seen_autocast) is native
    # The config keeps what the user wrote; the run records what it resolved to (a resume must resolve alike).
    assert engine.config.train.mixed_precision == "auto"


def test_a_resume_where_auto_resolves_otherwise_is_refused(tmp_path, monkeypatch):
    """`auto` is recorded as it resolved: a checkpoint trained in bf16 does not continue in float32 elsewhere."""
    import peft_ladder.engine as engine_module
    from peft_ladder.checkpoints import CheckpointRefused

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    overrides = [
        f"output_dir={tmp_path / 'run'}",
        f"cache.dir={tmp_path / 'cache'}",
        "strategy.name=lora",
        "train.mixed_precision=auto",
        "checkpoint.every_n_steps=2",
    ]
    real_save = engine_module.save_checkpoint

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(engine_module, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        Engine(load_config(TINY, overrides)).run()
    monkeypatch.setattr(engine_module, "save_checkpoint", real_save)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)  # another machine
    with pytest.raises(CheckpointRefused, match="precision bf16"):
        Engine(load_config(TINY, overrides), resume="latest").setup()
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)  # where it started: it continues
    assert Engine(load_config(TINY, overrides), resume="latest").run().precision == "bf16"

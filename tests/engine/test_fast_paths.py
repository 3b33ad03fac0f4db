"""The fast paths a GPU user expects, each checked on CPU for correctness (never for speed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_models import make_color_images

from peft_ladder.config import load_config
from peft_ladder.engine import Engine

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "tiny" / "minilm_1layer.yaml"


def _run(tmp_path: Path, name: str, *overrides: str) -> Engine:
    cfg = load_config(TINY, [f"output_dir={tmp_path / name}", f"cache.dir={tmp_path / 'cache'}", *overrides])
    engine = Engine(cfg)
    engine.run()
    return engine


def _trained(engine: Engine) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in engine.adapted.model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("strategy", ["linear_probe", "lora"])
def test_adamw_implementations_take_the_same_steps(tmp_path, strategy):
    runs = {
        impl: _trained(_run(tmp_path, impl, f"strategy.name={strategy}", f"train.optimizer={impl}"))
        for impl in ("fused", "foreach", "for_loop")
    }
    for impl in ("fused", "for_loop"):
        torch.testing.assert_close(runs[impl], runs["foreach"], rtol=1e-4, atol=1e-5)


def test_bf16_autocast_trains_and_keys_its_own_cache(tmp_path):
    fp32 = _run(tmp_path, "fp32")
    bf16 = _run(tmp_path, "bf16", "train.mixed_precision=bf16")
    assert json.loads((tmp_path / "bf16" / "metrics.json").read_text())["precision"] == "bf16"
    # Same data and weights, other precision: its own entries, not the fp32 ones.
    assert len(list((tmp_path / "cache").glob("*.arrow"))) == 6
    assert fp32.cache_record.used and bf16.cache_record.misses == 3
    lora = _run(tmp_path, "lora_bf16", "strategy.name=lora", "train.mixed_precision=bf16")
    assert all(torch.isfinite(p).all() for p in _trained(lora).values())


def test_evaluation_runs_in_inference_mode_with_a_larger_batch(tmp_path):
    cfg = load_config(TINY, [f"output_dir={tmp_path / 'run'}", "strategy.name=lora", "train.batch_size=8"])
    engine = Engine(cfg).setup()
    seen: list[bool] = []
    handle = engine.adapted.model.register_forward_pre_hook(lambda *_: seen.append(torch.is_inference_mode_enabled()))
    engine._evaluate()
    handle.remove()
    assert seen and all(seen)
    assert len(next(iter(engine.eval_loaders["validation"]))["labels"]) == 16
    assert len(next(iter(engine.train_loader))["labels"]) == 8


def _image_run(tmp_path: Path, name: str, *overrides: str) -> Engine:
    make_color_images(tmp_path / "images")
    cfg = load_config(
        None,
        [f"output_dir={tmp_path / name}", f"data.dataset={tmp_path / 'images'}", *overrides],
        backbone={"name": "timm:resnet18", "pretrained": False},
        strategy={"name": "full"},
        data={"validation_fraction": 0.25},
        train={"epochs": 1, "batch_size": 6, "head_lr": 1e-3, "backbone_lr": 1e-3, "seed": 3},
        log_with="none",
    )
    engine = Engine(cfg).setup()
    conv = engine.adapted.model.conv1
    engine.formats = []  # (input, weight) in channels_last during training steps
    conv.register_forward_pre_hook(
        lambda m, args: engine.formats.append(
            (
                args[0].is_contiguous(memory_format=torch.channels_last),
                m.weight.is_contiguous(memory_format=torch.channels_last),
            )
        )
    )
    engine.train().finish()
    return engine


def test_channels_last_gives_the_same_training(tmp_path):
    nchw = _image_run(tmp_path, "nchw", "train.channels_last=false")
    nhwc = _image_run(tmp_path, "nhwc", "train.channels_last=true")
    assert nhwc.channels_last and not nchw.channels_last
    assert nhwc.formats and all(x and w for x, w in nhwc.formats)
    assert not any(x for x, _ in nchw.formats)
    # Same maths in another memory order: float noise only. Adam turns noise in near-zero gradients into
    # steps of up to lr (1e-3) per step, so weights agree to steps x lr; the validation loss agrees closely.
    torch.testing.assert_close(_trained(nhwc), _trained(nchw), rtol=0, atol=nhwc.state.step * 1e-3)
    assert nhwc.state.history[-1]["loss"] == pytest.approx(nchw.state.history[-1]["loss"], rel=1e-3)


def test_worker_processes_and_pinned_memory_load_the_same_batches(tmp_path):
    inline = _image_run(tmp_path, "inline", "data.num_workers=0")
    workers = _image_run(tmp_path, "workers", "data.num_workers=2")
    torch.testing.assert_close(_trained(workers), _trained(inline), rtol=1e-5, atol=1e-6)


def test_torch_compile_trains_the_cached_head_like_eager(tmp_path):
    eager = _run(tmp_path, "eager")
    compiled = _run(tmp_path, "compiled", "train.compile=true")
    assert compiled.model is not compiled.cached.tail  # Accelerate wrapped it in torch.compile
    torch.testing.assert_close(_trained(compiled), _trained(eager), rtol=1e-4, atol=1e-5)

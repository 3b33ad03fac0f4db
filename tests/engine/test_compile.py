"""`train.compile`: after warm-up nothing recompiles, however the text lengths vary (dynamo's own counters; the
`eager` backend traces exactly as inductor would, without generating code, so the test stays fast on CPU)."""

from __future__ import annotations

from pathlib import Path

import torch

from peft_ladder.config import load_config
from peft_ladder.engine import Engine

TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny" / "minilm_1layer.yaml"


def _graphs_after(tmp_path: Path, epochs: int) -> tuple[int, Engine]:
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    cfg = load_config(
        TINY,
        [
            f"output_dir={tmp_path / f'compiled_{epochs}'}",
            "strategy.name=full",
            "train.compile=true",
            "train.compile_backend=eager",
            f"train.epochs={epochs}",
            "train.batch_size=8",  # 12 batches of docstrings: many different longest rows
            "train.lpft.enabled=false",
            "train.early_stopping.enabled=false",
            "checkpoint.each_epoch=false",
            "data.max_length=256",  # docstrings are cut at 300 characters: lengths vary below it
        ],
    )
    engine = Engine(cfg)
    engine.run()
    return counters["stats"]["unique_graphs"], engine


def test_compiled_training_does_not_recompile_as_lengths_vary(tmp_path, monkeypatch):
    monkeypatch.setenv("ACCELERATE_DYNAMO_USE_DYNAMIC", "False")  # what `accelerate launch` passes by default
    one, engine = _graphs_after(tmp_path, epochs=1)
    lengths = {len(b["input_ids"][0]) for b in engine.train_loader}
    assert len(lengths) > 2 and all(n % 8 == 0 for n in lengths)  # lengths vary, in multiples of 8
    two, _ = _graphs_after(tmp_path, epochs=2)
    assert two == one  # another epoch of new lengths and batch orders: no new graph
    assert one <= 4  # warm-up: a training and an evaluation graph, not one per length
    assert all(torch.isfinite(p).all() for p in engine.adapted.model.parameters())

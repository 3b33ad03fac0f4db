"""Engine runs shared by sections 3-8: a timed setup + train, an untimed warm-up, the data as the engine loads
it, and a timed forward pass. peft_ladder (and with it torch) is imported inside the functions: they run in a child."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.bench.overrides import warm_up_config

if TYPE_CHECKING:
    from peft_ladder.config import RunConfig


class _ValidationClock:
    """Wraps an engine's evaluation hook to add up its seconds, so they can be left out."""

    def __init__(self, engine: Any):
        self.seconds = 0.0
        # A private hook of Engine: the only place validation runs; wrapping it keeps the engine unchanged.
        self._inner = engine._evaluate
        engine._evaluate = self

    def __call__(self) -> None:
        start = time.perf_counter()
        try:
            self._inner()
        finally:
            self.seconds += time.perf_counter() - start


def timed_engine(cfg: RunConfig) -> dict[str, Any]:
    """Engine.setup() + Engine.train(), timed as a whole and by part."""
    from peft_ladder.engine import Engine

    start = time.perf_counter()
    engine = Engine(cfg).setup()
    setup_seconds = time.perf_counter() - start
    clock = _ValidationClock(engine)
    engine.train()
    seconds = time.perf_counter() - start
    out = {
        "seconds": seconds,
        "setup_seconds": setup_seconds,
        "train_seconds": engine.train_seconds,
        "validation_seconds": clock.seconds,
        "steps": engine.state.step,
        "train_rows": len(engine.splits.train),
        "cache": engine.cache_record.model_dump(include={"used", "reason", "seconds", "splits"}),
    }
    # What the backbone and the head cost, without model loading and tokenization (the same for any loop):
    # the cache's extraction (all splits, hashing and the tail check included) plus the epochs.
    out["extraction_and_training_seconds"] = engine.cache_record.seconds + engine.train_seconds
    engine.accelerator.end_training()
    del engine
    gc.collect()
    return out


def warm_up_engine(cfg: RunConfig, output_dir: Path, *, finish: bool = False) -> None:
    """A tiny run of the same engine path before any timed run, so first-use costs (lazy imports, metric
    loading, the cache's code) fall on no measured run."""
    from peft_ladder.engine import Engine

    engine = Engine(warm_up_config(cfg, output_dir)).setup().train()
    if finish:
        engine.finish()
    else:
        engine.accelerator.end_training()
    del engine
    gc.collect()


@dataclass(frozen=True)
class Loaded:
    """A backbone with its encoded splits and collate function, as the engine builds them."""

    backbone: Any
    encoded: dict[str, Any]  # split name -> tokenized dataset
    collate: Callable[[list[Any]], dict[str, Any]]


def load_encoded(cfg: RunConfig) -> Loaded:
    """The rows the engine would train on (same recipe and seed), and the backbone it would build for them."""
    from peft_ladder.build import backbone_for, build_splits
    from peft_ladder.data import encode_splits

    splits = build_splits(cfg)
    backbone = backbone_for(cfg, splits.label_names)
    shared = encode_splits(splits, backbone, cfg.data)
    encoded, collate = shared.datasets, shared.collate
    return Loaded(backbone=backbone, encoded=encoded, collate=collate)


def time_forward_pass(
    backbone: Any, dataset: Any, collate: Any, batch_size: int, device: Any, precision: str = "no"
) -> float:
    """One inference-mode pass over `dataset` with collation, as the cache's extraction runs it, under the autocast
    of `precision` (resolved: "no", "bf16" or "fp16"), as the ladder's frozen pass runs at its Engine's."""
    import torch
    from torch.utils.data import DataLoader

    from peft_ladder.precision import autocast

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    start = time.perf_counter()
    with torch.inference_mode(), autocast(precision, device):
        for batch in loader:
            backbone.logits(backbone.model, {k: v.to(device) for k, v in batch.items()})
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start

"""Section 6, `engine_vs_raw` (MiniLM, `full`): what `Engine.train` adds around the training step.

The same model (our `full` strategy on the same backbone), rows, batch, precision, AdamW parameter groups and
gradient clipping, trained through `Engine.train()` and through a hand-written loop (forward, cross-entropy,
backward, clip, step, zero_grad: nothing else). Each side's seconds per optimizer step over the same epochs
(ours: `train_seconds` minus its per-epoch validation); a small model on purpose, where host overhead (syncs,
logging, the progress bar, collation) shows. Median of alternating runs per side.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks.bench.engine_runs import load_encoded, timed_engine, warm_up_engine
from benchmarks.bench.overrides import engine_overrides, rows_overrides, warm_up_config
from benchmarks.bench.records import fmt_ratio, md_table, ratio
from benchmarks.bench.settings import TINY_RECIPE, Job


def measure(job: Job, device: Any) -> dict[str, Any]:
    """Child: Engine.train against a hand-written loop on the same work."""
    from peft_ladder.config import load_config

    settings = job.settings
    work = job.workdir / "engine_vs_raw"
    cfg = load_config(
        TINY_RECIPE,
        [
            "strategy.name=full",  # the whole model runs every step: no cache on either side
            f"train.epochs={settings.lora_epochs}",
            "train.lpft.enabled=false",
            "train.early_stopping.enabled=false",
            "train.warmup_ratio=0.0",
            "checkpoint.each_epoch=false",
            f"data.max_length={settings.probe_max_length}",
            *rows_overrides(settings.lora_rows),
            *engine_overrides(job, work / "ours"),
        ],
    )
    warm_up_engine(cfg, work / "warm_up")
    _raw_side(warm_up_config(cfg, work / "warm_up_raw"), device)
    ours_runs, raw_runs = [], []
    for _ in range(settings.lora_repeats):  # alternated: a slow stretch of a shared machine hits both sides
        run = timed_engine(cfg)
        ours_runs.append({"seconds": run["train_seconds"] - run["validation_seconds"], "steps": run["steps"]})
        raw_runs.append(_raw_side(cfg, device))
    ours, raw = _median(ours_runs), _median(raw_runs)
    if ours["steps"] != raw["steps"]:
        raise RuntimeError(f"the engine took {ours['steps']} steps, the raw loop {raw['steps']}")
    return {
        "rows": dict(zip(("train", "validation", "test"), settings.lora_rows)),
        "epochs": cfg.train.epochs,
        "batch_size": cfg.train.batch_size,
        "max_length": settings.probe_max_length,
        "minilm_layers": settings.minilm_layers,
        "precision": cfg.train.mixed_precision,
        "ours": ours,
        "raw": raw,
    }


def _raw_side(cfg: Any, device: Any) -> dict[str, Any]:
    """The hand-written loop: the step and nothing else."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from peft_ladder.strategies import apply_strategy

    torch.manual_seed(cfg.train.seed)
    loaded = load_encoded(cfg)
    adapted = apply_strategy(loaded.backbone, "full")
    model = adapted.model.to(device).train()
    tcfg = cfg.train
    groups = adapted.param_groups(
        head_lr=tcfg.head_lr, backbone_lr=tcfg.backbone_lr, weight_decay=tcfg.weight_decay, layer_decay=None
    )
    optimizer = torch.optim.AdamW(groups, foreach=device.type != "cuda", fused=device.type == "cuda" or None)
    loader = DataLoader(loaded.encoded["train"], batch_size=tcfg.batch_size, shuffle=True, collate_fn=loaded.collate)
    steps = 0
    start = time.perf_counter()
    for _ in range(tcfg.epochs):
        for batch in loader:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            labels = batch.pop("labels")
            loss = F.cross_entropy(adapted.logits(batch), labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            steps += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"seconds": time.perf_counter() - start, "steps": steps}


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = [r["seconds"] for r in runs]
    median = statistics.median(seconds)
    return {
        "seconds": median,
        "steps": runs[0]["steps"],
        "times": seconds,
        "seconds_per_step": median / runs[0]["steps"],
    }


def add_ratios(results: dict[str, Any]) -> None:
    """Engine step / raw step."""
    ev = ["engine_vs_raw"]
    results["engine_vs_raw"]["ratios"] = {
        "engine_to_raw_step": ratio(results, [*ev, "ours", "seconds_per_step"], [*ev, "raw", "seconds_per_step"])
    }


def markdown(results: dict[str, Any]) -> list[str]:
    ev = results["engine_vs_raw"]
    o, r = ev["ours"], ev["raw"]
    out = [
        "## 6. engine_vs_raw",
        "",
        f"MiniLM ({ev['minilm_layers']} layers), `full`, {ev['rows']['train']} train rows x {ev['epochs']} epochs, "
        f"batch {ev['batch_size']}, max_length {ev['max_length']}, precision {ev['precision']}. Ours: "
        "`Engine.train()`'s `train_seconds` minus its per-epoch validation. Raw: forward, cross-entropy, backward, "
        "clip, AdamW step and zero_grad on the same model, parameter groups and rows. Median of "
        f"{len(o['times'])} alternating runs per side.",
        "",
    ]
    out += md_table(
        ["loop", "steps", "seconds (median)", "ms/step", "seconds (each run)"],
        [
            [
                name,
                x["steps"],
                f"{x['seconds']:.2f}",
                f"{1000 * x['seconds_per_step']:.1f}",
                ", ".join(f"{t:.2f}" for t in x["times"]),
            ]
            for name, x in (("Engine.train", o), ("hand-written loop", r))
        ],
    )
    ratio_ = ev["ratios"]["engine_to_raw_step"]
    return out + ["", f"engine / raw seconds per step: **{fmt_ratio(ratio_)}**", ""]

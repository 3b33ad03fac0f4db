"""Section 8, `precision_auto` (MiniLM, `full` and `lora`): what `train.mixed_precision: auto` buys.

The same Engine run (rows, batch, max_length, epochs) at `no` (float32) and at `auto`, which resolves to bf16
autocast where the device computes bf16 natively (`peft_ladder/precision.py`) and to `no` elsewhere, so on such
a machine the two sides are the same and the ratio is 1. Seconds per optimizer step of the training loop
(`train_seconds` minus its validation), median of alternating runs per side, for `full` and for `lora` (r=8).
"""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks.bench.engine_runs import timed_engine, warm_up_engine
from benchmarks.bench.overrides import engine_overrides, rows_overrides
from benchmarks.bench.records import fmt_ratio, md_table, ratio
from benchmarks.bench.settings import TINY_RECIPE, Job

SECTION = "precision_auto"
STRATEGIES = {"full": ["strategy.name=full"], "lora": ["strategy.name=lora", "strategy.r=8", "strategy.alpha=16"]}


def measure(job: Job, device: Any) -> dict[str, Any]:
    """Child: per strategy, Engine.train at float32 against `auto`, alternated."""
    from peft_ladder.config import load_config
    from peft_ladder.precision import native_bf16, resolve_precision

    settings = job.settings
    work = job.workdir / SECTION
    record: dict[str, Any] = {
        "rows": dict(zip(("train", "validation", "test"), settings.lora_rows)),
        "epochs": settings.lora_epochs,
        "max_length": settings.probe_max_length,
        "minilm_layers": settings.minilm_layers,
        "device": device.type,
        "native_bf16": native_bf16(device.type),
        "auto_resolves_to": resolve_precision("auto", device.type),
        "strategies": {},
    }
    for name, strategy in STRATEGIES.items():
        configs = {}
        for precision in ("no", "auto"):
            overrides = [
                *strategy,
                f"train.epochs={settings.lora_epochs}",
                "train.lpft.enabled=false",  # the main phase's steps only, from the same start on both sides
                "train.early_stopping.enabled=false",
                "train.warmup_ratio=0.0",
                "checkpoint.each_epoch=false",
                f"data.max_length={settings.probe_max_length}",
                *rows_overrides(settings.lora_rows),
                *engine_overrides(job, work / f"{name}_{precision}"),
                f"train.mixed_precision={precision}",  # after engine_overrides: this section sets it
            ]
            configs[precision] = load_config(TINY_RECIPE, overrides)
            warm_up_engine(configs[precision], work / f"warm_up_{name}_{precision}")
        runs: dict[str, list[dict[str, float]]] = {"no": [], "auto": []}
        for _ in range(settings.lora_repeats):  # alternated: a slow stretch of a shared machine hits both sides
            for precision, cfg in configs.items():
                run = timed_engine(cfg)
                seconds = run["train_seconds"] - run["validation_seconds"]
                runs[precision].append({"seconds": seconds, "steps": run["steps"]})
        record["strategies"][name] = {
            precision: {
                "seconds_per_step": statistics.median(r["seconds"] / max(1, r["steps"]) for r in side),
                "steps": side[0]["steps"],
                "runs": side,
            }
            for precision, side in runs.items()
        }
    return record


def add_ratios(results: dict[str, Any]) -> None:
    """auto / float32 seconds per step, per strategy (below 1: auto is faster)."""
    p = results[SECTION]
    p["ratios"] = {
        f"{name}_auto_to_fp32": ratio(
            results,
            [SECTION, "strategies", name, "auto", "seconds_per_step"],
            [SECTION, "strategies", name, "no", "seconds_per_step"],
        )
        for name in p["strategies"]
    }


def markdown(results: dict[str, Any]) -> list[str]:
    p = results[SECTION]
    rows = p["rows"]
    out = [
        "## 8. precision_auto",
        "",
        f"MiniLM ({p['minilm_layers']} layers), {rows['train']} train rows, max_length {p['max_length']}, "
        f"{p['epochs']} epoch(s), LP-FT and early stopping off: `Engine.train` seconds per optimizer step (its "
        f"validation excluded) at `train.mixed_precision` `no` and `auto`, median of alternating runs. On this "
        f"{p['device']} `auto` resolves to `{p['auto_resolves_to']}` (native bf16: {p['native_bf16']}).",
        "",
    ]
    out += md_table(
        ["strategy", "float32 s/step", "auto s/step", "auto / float32"],
        [
            [
                name,
                f"{side['no']['seconds_per_step']:.3f}",
                f"{side['auto']['seconds_per_step']:.3f}",
                fmt_ratio(p.get("ratios", {}).get(f"{name}_auto_to_fp32")),
            ]
            for name, side in p["strategies"].items()
        ],
    )
    return [*out, ""]

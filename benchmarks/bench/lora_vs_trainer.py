"""Section 4, `lora_vs_trainer` (MiniLM): our LoRA loop against `transformers.Trainer` + peft.

LoRA r=8, alpha=16, dropout 0.1 on the same modules and data, same batch size and epochs, through our `Engine`
and through `transformers.Trainer` + `peft.get_peft_model`. Each side's training loop is timed (ours:
`train_seconds` minus the time spent in its per-epoch validation; Trainer: from its `on_train_begin` to its
`on_train_end` callback). Samples/s of each and ours/Trainer; each side runs `lora_repeats` times, alternated,
and the median is reported.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.bench.engine_runs import load_encoded, timed_engine, warm_up_engine
from benchmarks.bench.overrides import engine_overrides, rows_overrides, warm_up_config
from benchmarks.bench.records import fmt_ratio, md_table, ratio
from benchmarks.bench.settings import TINY_RECIPE, Job

if TYPE_CHECKING:
    from peft_ladder.config import RunConfig


def measure(job: Job, device: Any) -> dict[str, Any]:
    """Child: our engine's LoRA loop against transformers.Trainer + peft on the same model and rows."""
    from peft_ladder.config import load_config

    settings = job.settings
    work = job.workdir / "lora"
    cfg = load_config(
        TINY_RECIPE,
        [
            "strategy.name=lora",
            "strategy.r=8",
            "strategy.alpha=16",
            f"train.epochs={settings.lora_epochs}",
            "train.lpft.enabled=false",  # Trainer has no head phase: same epochs of the same LoRA training
            "train.warmup_ratio=0.0",
            "checkpoint.each_epoch=false",  # Trainer runs with save_strategy="no"
            f"data.max_length={settings.probe_max_length}",
            *rows_overrides(settings.lora_rows),
            *engine_overrides(job, work / "ours"),
        ],
    )
    warm_up_engine(cfg, work / "warm_up")
    _trainer_side(warm_up_config(cfg, work / "warm_up_trainer"), device, work / "warm_up_trainer")
    ours_runs, trainer_runs = [], []
    for _ in range(settings.lora_repeats):  # alternated, so a slow stretch of a shared machine hits both sides
        ours_runs.append(_ours_side(cfg))
        trainer_runs.append(_trainer_side(cfg, device, work))
    ours, trainer = _median_run(ours_runs), _median_run(trainer_runs)
    if ours["samples"] != trainer["samples"]:
        raise RuntimeError(f"ours trained {ours['samples']} samples, Trainer {trainer['samples']}")
    return {
        "rows": dict(zip(("train", "validation", "test"), settings.lora_rows)),
        "epochs": settings.lora_epochs,
        "batch_size": cfg.train.batch_size,
        "max_length": settings.probe_max_length,
        "minilm_layers": settings.minilm_layers,
        "lora": {"r": cfg.strategy["r"], "alpha": cfg.strategy["lora_alpha"], "dropout": cfg.strategy["lora_dropout"]},
        "ours": ours,
        "trainer": trainer,
    }


def _trainer_side(cfg: RunConfig, device: Any, workdir: Path) -> dict[str, Any]:
    """transformers.Trainer + peft.get_peft_model with our strategy's LoRA config, on our tokenized rows."""
    import peft
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from peft_ladder.strategies import make_strategy_config
    from peft_ladder.strategies.adapters import build_peft_config

    start = time.perf_counter()  # wall: data, model and Trainer setup too, as the engine's wall has its setup
    loaded = load_encoded(cfg)  # same recipe and seed: the same rows as the engine
    # Our lora strategy's own peft config: r, alpha and dropout from the config, the backbone's default target
    # modules, the head in modules_to_save (it trains and is saved), as the engine's side gets it.
    lora_config = build_peft_config(loaded.backbone, make_strategy_config("lora", cfg.strategy_options()))
    model = peft.get_peft_model(loaded.backbone.model, lora_config)
    tcfg = cfg.train
    args = TrainingArguments(
        output_dir=str(workdir / "trainer"),
        per_device_train_batch_size=tcfg.batch_size,
        num_train_epochs=tcfg.epochs,
        learning_rate=tcfg.backbone_lr,
        weight_decay=tcfg.weight_decay,
        max_grad_norm=tcfg.max_grad_norm,
        lr_scheduler_type=tcfg.schedule,
        warmup_steps=0,
        seed=tcfg.seed,
        report_to=[],
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        use_cpu=device.type == "cpu",
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
    )

    class Clock(TrainerCallback):
        """perf_counter around Trainer's own training loop (after its optimizer and data setup)."""

        def on_train_begin(self, *a: Any, **k: Any) -> None:
            self.start = time.perf_counter()

        def on_train_end(self, *a: Any, **k: Any) -> None:
            self.seconds = time.perf_counter() - self.start

    clock = Clock()
    trainer = Trainer(
        model=model, args=args, train_dataset=loaded.encoded["train"], data_collator=loaded.collate, callbacks=[clock]
    )
    output = trainer.train()
    wall = time.perf_counter() - start
    samples = len(loaded.encoded["train"]) * tcfg.epochs
    return {
        "seconds": clock.seconds,
        "wall_seconds": wall,
        "samples": samples,
        "samples_per_second": samples / clock.seconds,
        "steps": output.global_step,
        "optim": str(getattr(args.optim, "value", args.optim)),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "target_modules": sorted(lora_config.target_modules),
    }


def _ours_side(cfg: RunConfig) -> dict[str, Any]:
    run = timed_engine(cfg)
    samples = run["train_rows"] * cfg.train.epochs
    loop = run["train_seconds"] - run["validation_seconds"]
    return {
        **run,
        "seconds": loop,
        "wall_seconds": run["seconds"],
        "samples": samples,
        "samples_per_second": samples / loop,
    }


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The first run's record with the median loop and wall seconds of all runs, and samples/s from the median."""
    seconds = [r["seconds"] for r in runs]
    out = {**runs[0], "seconds": statistics.median(seconds), "times": seconds}
    out["wall_seconds"] = statistics.median([r["wall_seconds"] for r in runs])
    out["samples_per_second"] = out["samples"] / out["seconds"]
    return out


def add_ratios(results: dict[str, Any]) -> None:
    """ours / Trainer samples per second."""
    lv = ["lora_vs_trainer"]
    results["lora_vs_trainer"]["ratios"] = {
        "ours_to_trainer_samples_per_second": ratio(
            results, [*lv, "ours", "samples_per_second"], [*lv, "trainer", "samples_per_second"]
        )
    }


def markdown(results: dict[str, Any]) -> list[str]:
    lv = results["lora_vs_trainer"]
    o, t = lv["ours"], lv["trainer"]
    out = [
        "## 4. lora_vs_trainer",
        "",
        f"MiniLM ({lv['minilm_layers']} layers), LoRA r={lv['lora']['r']} alpha={lv['lora']['alpha']:g} dropout "
        f"{lv['lora']['dropout']:g} on {t['target_modules']} + the head, {lv['rows']['train']} train rows x "
        f"{lv['epochs']} epochs, batch {lv['batch_size']}, max_length {lv['max_length']}. Ours: `Engine.train()`'s "
        "`train_seconds` minus its per-epoch validation (LP-FT off, checkpoints off). Trainer: `on_train_begin` to "
        f"`on_train_end` (optimizer `{t['optim']}`, save/eval off). Wall = also each side's own data, model and "
        f"loop setup. Median of {len(o['times'])} runs per side, alternating ours and Trainer.",
        "",
    ]
    out += md_table(
        ["loop", "samples", "loop seconds (median)", "samples/s", "wall seconds", "loop seconds (each run)"],
        [
            [
                "ours (Engine)",
                o["samples"],
                f"{o['seconds']:.2f}",
                f"{o['samples_per_second']:.1f}",
                f"{o['wall_seconds']:.2f}",
                ", ".join(f"{x:.2f}" for x in o["times"]),
            ],
            [
                "transformers.Trainer + peft",
                t["samples"],
                f"{t['seconds']:.2f}",
                f"{t['samples_per_second']:.1f}",
                f"{t['wall_seconds']:.2f}",
                ", ".join(f"{x:.2f}" for x in t["times"]),
            ],
        ],
    )
    r = lv["ratios"]["ours_to_trainer_samples_per_second"]
    return out + ["", f"ours / Trainer samples/s: **{fmt_ratio(r)}**", ""]

"""Section 3, `probe_10_epochs` (MiniLM): the `linear_probe` rung trained 10 epochs through the real `Engine`.

`cached` = `Engine.setup()` + `Engine.train()` with a cold activation cache (a fresh `cache.dir`, so the
extraction of every split is timed, as are model loading, tokenization and the per-epoch validation);
`naive` = the same with `cache.enabled=false` (the backbone runs every step); `forward` = one inference-mode
pass of the same backbone over the same training rows (collation included, at the extraction's batch size;
model loading and tokenization not timed). Ratios naive/cached and cached/forward, and the cache's extraction
of every split + 10 epochs against one forward pass over all splits. Per-epoch checkpoints are off in both
runs (file writes, not compute).
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

from benchmarks.bench.engine_runs import load_encoded, time_forward_pass, timed_engine, warm_up_engine
from benchmarks.bench.overrides import engine_overrides, rows_overrides
from benchmarks.bench.records import fmt_ratio, md_table, ratio
from benchmarks.bench.settings import TINY_RECIPE, Job

if TYPE_CHECKING:
    from peft_ladder.config import RunConfig

EPOCHS = 10


def measure(job: Job, device: Any) -> dict[str, Any]:
    """Child: linear_probe 10 epochs cached (cold) vs naive, and vs one forward pass over the training rows."""
    from peft_ladder.config import load_config

    settings = job.settings
    work = job.workdir / "probe"
    common = [
        "strategy.name=linear_probe",
        "strategy.solver=adamw",  # the epoch loop is what this section measures (the solver takes no steps)
        "train.early_stopping.enabled=false",  # ten epochs each, so both loops do the same work
        f"train.epochs={EPOCHS}",
        f"data.max_length={settings.probe_max_length}",
        "checkpoint.each_epoch=false",  # file writes are not what is compared
        *rows_overrides(settings.probe_rows),
    ]
    cached_cfg = load_config(
        TINY_RECIPE,
        [*common, *engine_overrides(job, work / "cached"), "cache.enabled=true", f"cache.dir={work / 'activations'}"],
    )
    naive_cfg = load_config(TINY_RECIPE, [*common, *engine_overrides(job, work / "naive"), "cache.enabled=false"])
    warm_up_engine(cached_cfg, work / "warm_up")
    forward_times, forward_all_times, eval_bs = _forward_passes(cached_cfg, device, settings.probe_forward_repeats)
    return {
        "rows": dict(zip(("train", "validation", "test"), settings.probe_rows)),
        "epochs": EPOCHS,
        "batch_size": cached_cfg.train.batch_size,
        "max_length": settings.probe_max_length,
        "minilm_layers": settings.minilm_layers,
        "forward": {"seconds": statistics.median(forward_times), "times": forward_times, "batch_size": eval_bs},
        "forward_all_splits": {"seconds": statistics.median(forward_all_times), "times": forward_all_times},
        "cached": timed_engine(cached_cfg),
        "naive": timed_engine(naive_cfg),
    }


def _forward_passes(cfg: RunConfig, device: Any, repeats: int) -> tuple[list[float], list[float], int]:
    """Seconds of one forward pass over the train rows, and of one over every split, each `repeats` times, at
    the extraction's batch size (returned too). The backbone is freed on return, before the timed engine runs."""
    loaded = load_encoded(cfg)
    loaded.backbone.model.to(device).eval()
    eval_bs = cfg.train.eval_batch_size or 2 * cfg.train.batch_size  # the extraction's batch size
    train_rows = loaded.encoded["train"]

    def forward_pass(dataset: Any) -> float:
        return time_forward_pass(loaded.backbone, dataset, loaded.collate, eval_bs, device)

    forward_pass(train_rows.select(range(min(eval_bs, len(train_rows)))))  # one untimed warm-up batch
    forward_times = [forward_pass(train_rows) for _ in range(repeats)]
    # The cache extracts every split once; one forward pass over all of them is its floor.
    forward_all_times = [sum(forward_pass(ds) for ds in loaded.encoded.values()) for _ in range(repeats)]
    return forward_times, forward_all_times, eval_bs


def add_ratios(results: dict[str, Any]) -> None:
    """naive/cached, cached/forward, and extraction + training against one forward pass over every split."""
    p = ["probe_10_epochs"]
    results["probe_10_epochs"]["ratios"] = {
        "naive_to_cached": ratio(results, [*p, "naive", "seconds"], [*p, "cached", "seconds"]),
        "cached_to_forward": ratio(results, [*p, "cached", "seconds"], [*p, "forward", "seconds"]),
        "extraction_and_training_to_forward_all": ratio(
            results, [*p, "cached", "extraction_and_training_seconds"], [*p, "forward_all_splits", "seconds"]
        ),
    }


def markdown(results: dict[str, Any]) -> list[str]:
    p = results["probe_10_epochs"]
    rows = p["rows"]
    c, n = p["cached"], p["naive"]
    out = [
        "## 3. probe_10_epochs",
        "",
        f"MiniLM ({p['minilm_layers']} layers), `linear_probe`, 10 epochs, {rows['train']} train / "
        f"{rows['validation']} validation / {rows['test']} test rows, max_length {p['max_length']}, batch "
        f"{p['batch_size']}, per-epoch checkpoints off. Cached and naive: `Engine.setup()` + `Engine.train()` "
        "wall clock (model load, tokenization, the cold-cache extraction of all three splits for the cached run, "
        f"10 epochs, per-epoch validation). Forward: one inference-mode pass over the {rows['train']} train rows "
        f"at batch {p['forward']['batch_size']} with collation, median of {len(p['forward']['times'])}.",
        "",
    ]
    out += md_table(
        ["run", "seconds", "of which setup", "of which train loop", "of which validation"],
        [
            ["one forward pass over the train rows", f"{p['forward']['seconds']:.2f}", "", "", ""],
            ["one forward pass over all three splits", f"{p['forward_all_splits']['seconds']:.2f}", "", "", ""],
            [
                "cached (cold): setup incl. extraction + 10 epochs",
                f"{c['seconds']:.2f}",
                f"{c['setup_seconds']:.2f} (extraction {c['cache'].get('seconds', 0):.2f})",
                f"{c['train_seconds']:.2f}",
                f"{c['validation_seconds']:.2f}",
            ],
            [
                "naive (cache.enabled=false): setup + 10 epochs",
                f"{n['seconds']:.2f}",
                f"{n['setup_seconds']:.2f}",
                f"{n['train_seconds']:.2f}",
                f"{n['validation_seconds']:.2f}",
            ],
        ],
    )
    r = p["ratios"]
    out += [
        "",
        f"naive / cached: **{fmt_ratio(r['naive_to_cached'])}**; cached (whole setup + train) / one forward "
        f"pass over the train rows: **{fmt_ratio(r['cached_to_forward'])}**; cached extraction of every split "
        f"+ 10 epochs ({c['extraction_and_training_seconds']:.2f} s) / one forward pass over all three splits: "
        f"**{fmt_ratio(r['extraction_and_training_to_forward_all'])}**",
        "",
    ]
    return out

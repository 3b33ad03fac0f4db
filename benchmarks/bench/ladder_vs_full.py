"""Section 7, `ladder_vs_full` (MiniLM): the whole default ladder against one full fine-tuning run, and the
ladder's frozen evidence against one forward pass.

Ladder: `Ladder(cfg).run()` wall clock on a recipe as users run it (its own rungs, LR search with pruning,
adaptive seeds, scratch control, baseline, frozen evidence, note and plot); only `output_dir`, `cache.dir` (a fresh
folder per run: the cache is cold, so the frozen evidence is part of the cost) and logging are overridden, and the
rows where the profile caps them. Full: `Engine(cfg).run()` wall clock of the `full` strategy on the same recipe
(same rows, `train.epochs`, early stopping and LP-FT as a standalone run has them) at the LR the ladder starts
`full` at (the strategy's default LR; see `ladder_vs_separate.separate_rung_config`), `cache.enabled=false`.
The two alternate, `repeats` times each; the medians and ladder/full are reported, with the ladder's verdict and
its own time table (`note.timing`, summed by kind).

Frozen evidence: the note's rows of kind `frozen` (forward pass, pooling comparison, depth curve and probe cache
fill; LogME and H-score) summed, against one inference-mode pass of the frozen backbone over every split's rows
(train, all of validation with the decision part, test) at the evaluation batch size, timed after each ladder
in the same process (model loading and tokenization not timed). Both ratios compare medians.
"""

from __future__ import annotations

import gc
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.bench.engine_runs import load_encoded, time_forward_pass, warm_up_engine
from benchmarks.bench.ladder_vs_separate import separate_rung_config
from benchmarks.bench.overrides import rows_overrides
from benchmarks.bench.records import fmt_ratio, md_table, ratio
from benchmarks.bench.settings import REPO, Job, LadderRecipe

if TYPE_CHECKING:
    from peft_ladder.config import RunConfig
    from peft_ladder.ladder.note import TransferNote

SECTION = "ladder_vs_full"
FROZEN_KIND = "frozen"  # the note's time-table kind of the frozen-evidence phases (peft_ladder/ladder/climb.py)


def measure(job: Job, device: Any) -> dict[str, Any]:
    """Child: each of the profile's recipes, ladder and full run alternated, and the forward pass after each ladder."""
    return {
        "recipes": {
            spec.key: _measure_recipe(spec, job.workdir / SECTION / spec.key, device)
            for spec in job.settings.full_ladders
        }
    }


def _measure_recipe(spec: LadderRecipe, work: Path, device: Any) -> dict[str, Any]:
    from peft_ladder.config import RungSpec, load_config
    from peft_ladder.engine import Engine
    from peft_ladder.ladder import Ladder
    from peft_ladder.precision import resolve_precision

    def ladder_config(run: str) -> RunConfig:
        return load_config(
            spec.recipe,
            [
                *(rows_overrides(spec.rows) if spec.rows else []),
                f"output_dir={work / run}",
                "overwrite_output_dir=true",
                f"cache.dir={work / run / 'activations'}",  # a fresh, cold cache for every ladder
                "log_with=none",
            ],
        )

    cfg = ladder_config("ladder")
    full_cfg = separate_rung_config(cfg, RungSpec(name="full"), "rung", work / "full")
    # A full tiny run (with its finish) first, so first-use costs fall on neither side.
    warm_up_engine(full_cfg, work / "warm_up", finish=True)
    # The precision the ladder's frozen pass runs at (`mixed_precision: auto` is bf16 on a CPU with native bf16).
    precision = resolve_precision(cfg.train.mixed_precision, device.type)
    forward = _forward_pass(cfg, device, precision)
    ladders: list[dict[str, Any]] = []
    fulls: list[dict[str, Any]] = []
    forwards: list[float] = []
    metric = cfg.ladder.metric  # None until the ladder resolves it for its task: then the note's
    for i in range(spec.repeats):  # alternated, so a slow stretch of a shared machine hits both sides
        start = time.perf_counter()
        note = Ladder(ladder_config(f"ladder_{i}")).run()
        ladders.append(_ladder_record(note, time.perf_counter() - start))
        metric = note.metric
        del note
        shutil.rmtree(work / f"ladder_{i}")  # its artifacts and activation cache, so the ladders do not pile up on disk
        gc.collect()
        forwards.append(forward())
        start = time.perf_counter()
        result = Engine(full_cfg).run()
        fulls.append(_full_record(result, time.perf_counter() - start, metric))
        del result
        gc.collect()
    return {
        "recipe": str(spec.recipe.relative_to(REPO)),
        "rows": {split: cfg.data.max_samples.get(split) for split in ("train", "validation", "test")},
        "epochs": cfg.train.epochs,
        "batch_size": cfg.train.batch_size,
        "max_length": cfg.data.max_length,
        "metric": metric,
        "repeats": spec.repeats,
        "ladder_runs": ladders,
        "full_runs": fulls,
        "forward_runs": forwards,
        "ladder": {"seconds": statistics.median(r["seconds"] for r in ladders)},
        "full": {
            "seconds": statistics.median(r["seconds"] for r in fulls),
            "lr": full_cfg.train.backbone_lr,
            "head_lr": full_cfg.train.head_lr,
        },
        "frozen": {"seconds": statistics.median(r["frozen_seconds"] for r in ladders)},
        "forward_all_splits": {
            "seconds": statistics.median(forwards),
            "batch_size": cfg.train.eval_batch_size or 2 * cfg.train.batch_size,
            "precision": precision,
        },
    }


def _forward_pass(cfg: RunConfig, device: Any, precision: str) -> Callable[[], float]:
    """A clock of one forward pass of the frozen backbone over every split the ladder reads, at the batch size and
    `precision` (resolved) of its frozen pass; the backbone is loaded (and one batch run) now, untimed."""
    loaded = load_encoded(cfg)  # build_splits: validation whole, before the ladder holds its decision part out
    loaded.backbone.model.to(device).eval()
    batch_size = cfg.train.eval_batch_size or 2 * cfg.train.batch_size
    train = loaded.encoded["train"]
    warm_up = train.select(range(min(batch_size, len(train))))
    time_forward_pass(loaded.backbone, warm_up, loaded.collate, batch_size, device, precision)

    def forward() -> float:
        return sum(
            time_forward_pass(loaded.backbone, rows, loaded.collate, batch_size, device, precision)
            for rows in loaded.encoded.values()
        )

    return forward


def _ladder_record(note: TransferNote, seconds: float) -> dict[str, Any]:
    """A ladder's wall clock, verdict and time table (its phases, and their sums by kind)."""
    phases = [p.model_dump() for p in note.timing.phases] if note.timing else []
    by_kind: dict[str, dict[str, float]] = {}
    for p in phases:
        kind = by_kind.setdefault(p["kind"], {"seconds": 0.0, "trials": 0})
        kind["seconds"] += p["seconds"]
        kind["trials"] += p["trials"]
    if note.timing:
        by_kind["other"] = {"seconds": note.timing.other_seconds, "trials": 0}
    recommended = next((e for e in note.rungs if e.id == note.decision.recommended), None)
    return {
        "seconds": seconds,
        "note_total_seconds": note.total_seconds,
        "recommended": note.decision.recommended,
        "deploy": note.decision.deploy.id,
        "outcome": note.decision.outcome,
        "rungs_run": list(note.decision.rungs_run),
        "rungs_skipped": list(note.decision.rungs_skipped),
        "scratch": note.scratch is not None,
        "trials": sum(p["trials"] for p in phases),
        "test_metric": (recommended.test or {}).get(note.metric) if recommended else None,  # the recommended rung's
        "frozen_seconds": sum(p["seconds"] for p in phases if p["kind"] == FROZEN_KIND),
        "by_kind": by_kind,
        "phases": phases,
    }


def _full_record(result: Any, seconds: float, metric: str) -> dict[str, Any]:
    test = result.splits.get("test")
    return {
        "seconds": seconds,
        "train_seconds": result.train_seconds,
        "steps": result.steps,
        "lpft": result.lpft,
        "phase1_epochs_run": result.phase1_epochs_run,
        "stop_reason": result.stopping.stop_reason,
        "test_metric": test.metrics.get(metric) if test else None,
    }


def add_ratios(results: dict[str, Any]) -> None:
    """Per recipe: ladder / full run, and frozen evidence / one forward pass over every split (medians)."""
    for key, rec in results[SECTION]["recipes"].items():
        here = [SECTION, "recipes", key]
        rec["ratios"] = {
            "ladder_to_full": ratio(results, [*here, "ladder", "seconds"], [*here, "full", "seconds"]),
            "frozen_to_forward": ratio(results, [*here, "frozen", "seconds"], [*here, "forward_all_splits", "seconds"]),
        }


def markdown(results: dict[str, Any]) -> list[str]:
    section = results[SECTION]
    out = [
        f"## 7. {SECTION}",
        "",
        "The whole ladder against one full fine-tuning run of the same backbone on the same rows. Ladder: "
        "`Ladder(cfg).run()` wall clock on the recipe as users run it (only `output_dir`, a fresh cold `cache.dir` "
        "and logging overridden, and the rows where noted). Full: `Engine(cfg).run()` wall clock of `full` on the "
        "same recipe (its epochs, early stopping and LP-FT; the strategy's default LR; cache off). Ladder and full "
        "alternate; medians. Frozen evidence: the ladder's time-table rows of kind `frozen` (forward pass, pooling "
        "comparison, depth curve, probe cache fill, LogME and H-score) against one inference-mode forward pass of "
        "the frozen backbone over every split's rows, timed after each ladder in the same process.",
        "",
    ]
    for key, rec in section["recipes"].items():
        out += _recipe_markdown(key, rec)
    return out


def _recipe_markdown(key: str, rec: dict[str, Any]) -> list[str]:
    rows = rec["rows"]
    rows_text = " / ".join(str(rows[s]) if rows[s] is not None else "all" for s in ("train", "validation", "test"))
    out = [
        f"### {key}: `{rec['recipe']}`",
        "",
        f"{rows_text} train / validation / test rows, up to {rec['epochs']} epoch(s), batch {rec['batch_size']}, "
        f"max_length {rec['max_length']}; {rec['repeats']} run(s) of each side. Full run at LR "
        f"{rec['full']['lr']:g} (head {rec['full']['head_lr']:g}).",
        "",
    ]
    table = []
    for i, (lad, full) in enumerate(zip(rec["ladder_runs"], rec["full_runs"])):
        verdict = f"recommends {lad['recommended']} ({lad['outcome']})"
        if lad["deploy"] != lad["recommended"]:
            verdict += f", deploy {lad['deploy']}"
        table.append(
            [
                f"ladder {i + 1}",
                f"{lad['seconds']:.1f}",
                f"{verdict}; {lad['trials']} trials; ran {', '.join(lad['rungs_run'])}"
                + (" + scratch" if lad["scratch"] else "")
                + (f", skipped {', '.join(lad['rungs_skipped'])}" if lad["rungs_skipped"] else ""),
                _metric(lad["test_metric"]),
            ]
        )
        table.append(
            [
                f"full {i + 1}",
                f"{full['seconds']:.1f}",
                f"{full['steps']} step(s), stopped by {full['stop_reason']}, LP-FT {'on' if full['lpft'] else 'off'}",
                _metric(full["test_metric"]),
            ]
        )
    table.append(["ladder (median)", f"{rec['ladder']['seconds']:.1f}", "", ""])
    table.append(["full (median)", f"{rec['full']['seconds']:.1f}", "", ""])
    out += md_table(["run", "seconds", "notes", f"test {rec['metric']}"], table)
    out += ["", "Where the ladder's time went (`note.timing`, seconds by kind):", ""]
    out += _kind_table(rec)
    r = rec["ratios"]
    out += [
        "",
        f"ladder / full: **{fmt_ratio(r['ladder_to_full'])}**; frozen evidence ({rec['frozen']['seconds']:.2f} s) / "
        f"one forward pass over every split ({rec['forward_all_splits']['seconds']:.2f} s, batch "
        f"{rec['forward_all_splits']['batch_size']}, precision {rec['forward_all_splits'].get('precision', 'no')}): "
        f"**{fmt_ratio(r['frozen_to_forward'])}**",
        "",
    ]
    return out


def _kind_table(rec: dict[str, Any]) -> list[str]:
    ladders = rec["ladder_runs"]
    kinds = list(dict.fromkeys(k for lad in ladders for k in lad["by_kind"]))
    median = rec["ladder"]["seconds"]
    rows = []
    for kind in kinds:
        seconds = [lad["by_kind"].get(kind, {}).get("seconds", 0.0) for lad in ladders]
        trials = [lad["by_kind"].get(kind, {}).get("trials", 0) for lad in ladders]
        mid = statistics.median(seconds)
        rows.append(
            [
                kind,
                ", ".join(f"{s:.1f}" for s in seconds),
                f"{mid:.1f}",
                f"{100 * mid / median:.0f}%" if median > 0 else "",
                ", ".join(str(t) for t in trials),
            ]
        )
    return md_table(["kind", "seconds (each ladder)", "median", "of the median ladder", "trials"], rows)


def _metric(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"

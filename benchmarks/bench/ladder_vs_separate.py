"""Section 5, `ladder_vs_separate` (MiniLM): a whole ladder against its rungs run one by one.

A whole `Ladder.run()` (linear_probe, lora, partial_unfreeze last_k=2, full, scratch; one LR each, every rung
run, transferability on, cold cache) against the sum of the same rungs run as standalone `Engine(...).run()`
with `cache.enabled=false` and their own LP-FT head phase (as many head epochs as the ladder's probe trains).
The scratch control is the same trial on both sides: the ladder's control at one LR (the scratch strategy's
default instead of its family's grid), and the standalone scratch run at that LR under the control's step budget
(`ladder.scratch.budget` times the rungs' cap and minimum). Wall-clock seconds of each, and ladder/separate.
"""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.bench.engine_runs import warm_up_engine
from benchmarks.bench.overrides import engine_overrides, rows_overrides
from benchmarks.bench.records import fmt_ratio, md_table, ratio
from benchmarks.bench.settings import LADDER_RECIPE, Job

if TYPE_CHECKING:
    from peft_ladder.config import RunConfig, RungSpec


def measure(job: Job, device: Any) -> dict[str, Any]:
    """Child: one whole ladder against the sum of its rungs run separately."""
    from peft_ladder.config import RungSpec, load_config
    from peft_ladder.engine import Engine
    from peft_ladder.ladder import Ladder
    from peft_ladder.strategies import get_strategy

    settings = job.settings
    work = job.workdir / "ladder"
    epochs = settings.ladder_epochs
    cfg = load_config(
        LADDER_RECIPE,
        [
            "ladder.lr_search.multipliers=[1.0]",
            "ladder.transferability=true",
            "ladder.run_all=true",  # every rung runs, as the separate runs do
            "ladder.max_seeds=1",  # one trial per rung and LR, as the separate runs have
            "ladder.lr_search.extend=0",
            # One LR for the control too (its family's grid is 3 LRs): the one its standalone run trains at.
            f"ladder.scratch.lrs=[{get_strategy('scratch').default_lr}]",
            f"ladder.bootstrap_samples={settings.ladder_bootstrap}",
            f"train.epochs={epochs}",
            f"train.lpft.head_epochs={epochs}",  # separate runs' head phase = the ladder probe's epochs
            f"cache.dir={work / 'activations'}",
            *([f"ladder.rungs={json.dumps(list(settings.ladder_rungs))}"] if settings.ladder_rungs else []),
            *rows_overrides(settings.ladder_rows),
            *settings.ladder_overrides,
            *engine_overrides(job, work / "ladder"),
        ],
    )
    # A full tiny run (with finish: evaluation and artifact) of a rung; the ladder's own extras stay its cost.
    warm_up_engine(
        separate_rung_config(cfg, cfg.ladder.rungs[0], "rung", work / "warm_up"), work / "warm_up", finish=True
    )
    start = time.perf_counter()
    note = Ladder(cfg).run()
    ladder_seconds = time.perf_counter() - start
    gc.collect()

    rungs = [*cfg.ladder.rungs, *([RungSpec(name="scratch")] if cfg.ladder.scratch.enabled else [])]
    separate = {}
    for rung in rungs:
        role = "scratch" if rung.id == "scratch" else "rung"
        rung_cfg = separate_rung_config(cfg, rung, role, work / "separate" / rung.id)
        start = time.perf_counter()
        results = Engine(rung_cfg).run()
        separate[rung.id] = {
            "seconds": time.perf_counter() - start,
            "strategy": rung.name,
            "lpft": results.lpft,
            "phase1_epochs_run": results.phase1_epochs_run,
            "steps": results.steps,
        }
        gc.collect()
    return {
        "rows": dict(zip(("train", "validation", "test"), settings.ladder_rows)),
        "epochs": epochs,
        "minilm_layers": settings.minilm_layers,
        "ladder": {
            "seconds": ladder_seconds,
            "note_total_seconds": note.total_seconds,
            "rungs_run": list(note.decision.rungs_run),
            "scratch": note.scratch is not None,
            # Where the ladder's time went, from its own note: training per rung and the transferability scores.
            "transferability_seconds": getattr(note.transferability, "seconds", None),
            "rung_train_seconds": {
                e.id: e.train_seconds for e in [*note.rungs, *([note.scratch] if note.scratch else [])]
            },
        },
        "separate": separate,
        "separate_sum": {"seconds": sum(r["seconds"] for r in separate.values())},
    }


def separate_rung_config(ladder_cfg: RunConfig, rung: RungSpec, role: str, output_dir: Path) -> RunConfig:
    """A rung as a standalone run with the LRs the ladder gives it (multiplier 1.0; see
    `TrialRunner.trial_config`), its own LP-FT head phase (no shared probe head) and no activation cache."""
    from peft_ladder.ladder.trial import control_budget, trial_lrs
    from peft_ladder.strategies import get_strategy

    strategy = get_strategy(rung.name)
    tcfg = ladder_cfg.train
    lr = rung.lr or (tcfg.head_lr if not strategy.trains_backbone else strategy.default_lr or tcfg.backbone_lr)
    update: dict[str, Any] = trial_lrs(trains_backbone=strategy.trains_backbone, role=role, lr=lr, head_lr=tcfg.head_lr)
    if role == "scratch" and ladder_cfg.ladder is not None:  # the control's step cap and minimum, as the ladder has it
        update |= control_budget(tcfg, ladder_cfg.ladder.scratch.budget)
    return ladder_cfg.model_copy(
        update={
            "ladder": None,
            "strategy": rung.strategy_dict,
            "train": tcfg.model_copy(update=update),
            "cache": ladder_cfg.cache.model_copy(update={"enabled": False}),
            "output_dir": str(output_dir),
            "overwrite_output_dir": True,
        }
    )


def add_ratios(results: dict[str, Any]) -> None:
    """ladder / the sum of the separate rungs, wall clock."""
    ls = ["ladder_vs_separate"]
    results["ladder_vs_separate"]["ratios"] = {
        "ladder_to_separate": ratio(results, [*ls, "ladder", "seconds"], [*ls, "separate_sum", "seconds"])
    }


def markdown(results: dict[str, Any]) -> list[str]:
    lv = results["ladder_vs_separate"]
    lad = lv["ladder"]
    out = [
        "## 5. ladder_vs_separate",
        "",
        f"MiniLM ({lv['minilm_layers']} layers), {lv['rows']['train']} / {lv['rows']['validation']} / "
        f"{lv['rows']['test']} rows, {lv['epochs']} epoch(s) per rung, one LR per rung. Ladder: `Ladder.run()` wall "
        "clock (transferability, shared probe head, cold activation cache, drift, bootstrap, note and plot; every "
        "rung run). Separate: `Engine(cfg).run()` wall clock per rung (setup, training, final evaluation, artifact), "
        "`cache.enabled=false`, own LP-FT head phase, in the same warm process (as separate CLI runs they would "
        "each also pay an interpreter start). Last column: the `train_seconds` the ladder's note gives the rung.",
        "",
    ]
    transfer = lad.get("transferability_seconds")
    rows = [
        [
            "whole ladder",
            f"{lad['seconds']:.2f}",
            ", ".join(lad["rungs_run"])
            + (" + scratch" if lad["scratch"] else "")
            + (f"; transferability {transfer:.2f}s" if transfer is not None else ""),
            f"{sum(lad['rung_train_seconds'].values()):.2f} (all rungs)",
        ]
    ]
    for rung, rec in lv["separate"].items():
        in_ladder = lad["rung_train_seconds"].get(rung)
        rows.append(
            [
                f"separate: {rung}",
                f"{rec['seconds']:.2f}",
                f"LP-FT {'on' if rec['lpft'] else 'off'}, {rec['steps']} steps",
                "" if in_ladder is None else f"{in_ladder:.2f}",
            ]
        )
    rows.append(["separate: sum", f"{lv['separate_sum']['seconds']:.2f}", "", ""])
    out += md_table(["run", "seconds", "notes", "ladder's train_seconds"], rows)
    r = lv["ratios"]["ladder_to_separate"]
    return out + ["", f"ladder / separate: **{fmt_ratio(r)}**", ""]

"""The ladder with few labels (2-6 optimizer steps per epoch), each check over three ladder seeds.

With an epoch of 3-4 steps, an epoch-counted budget ended trials inside their LR warmup and called them
converged. These tests hold the step budget (`peft_ladder/budget.py`) to its rules where that happened:
(1) on a task that needs adaptation no trial of any rung stops before its minimum budget, and the climb
    still goes past the probe;
(2) a deeper convnet rung starts exactly where the solved probe ended (its first evaluation, before any
    update, is the probe's), with every BatchNorm keeping its loaded statistics;
(3) the from-scratch control, under its own LR grid and larger budget, trains about as well as a long
    reference from-scratch run on the same rows;
(4) LRs that all score alike are tied, and a tie raises no LR-at-the-edge flag.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ladder.synthetic import (
    FEW_TRAIN_ROWS,
    LADDER_SEEDS,
    color_image_splits,
    convnet_backbone,
    keyword_ladder_config,
    scenario_close,
    scenario_no_signal_few,
)
from peft_ladder import load_adapted
from peft_ladder.config import load_config
from peft_ladder.engine import Engine
from peft_ladder.ladder import Ladder
from peft_ladder.results import RunResult

pytestmark = pytest.mark.slow
SEEDS = LADDER_SEEDS  # `source_backbones` (conftest.py) builds one backbone per seed


def text_config(scenario, out: Path, **options):
    """A ladder on a keyword task at batch 16 and the default warmup ratio (0.06)."""
    return keyword_ladder_config(scenario, out, warmup_ratio=0.06, **options)


def trials(out: Path) -> dict[Path, RunResult]:
    """Every trial of every rung (and of scratch) the ladder in `out` ran, by folder."""
    found = {p.parent: RunResult.model_validate_json(p.read_text()) for p in (out / "rungs").glob("*/*/metrics.json")}
    assert found
    return found


def main_phase(result: RunResult) -> list[dict]:
    return [r for r in result.history if r["main_step"] is not None]


# --- (1) and (3): a task that needs adaptation, 64 training rows ------------------------------------------------

NO_SIGNAL_EPOCHS = 30  # a realistic cap: 30 epochs of 4 steps = 120 steps, warmup int(0.06 x 120) = 7


@pytest.fixture(scope="module", params=SEEDS)
def no_signal_ladder(request, tmp_path_factory, source_backbones):
    """The ladder probe -> partial_unfreeze -> full (scratch on) on the few-label no-signal task, once per seed."""
    seed = request.param
    root = tmp_path_factory.mktemp(f"no_signal_{seed}")
    scenario = scenario_no_signal_few(root, seed=seed, source=source_backbones[seed])
    config = text_config(
        scenario,
        root / "ladder",
        seed=seed,
        epochs=NO_SIGNAL_EPOCHS,
        rungs=[{"name": "linear_probe"}, {"name": "partial_unfreeze", "lr": 1e-3}, {"name": "full", "lr": 1e-3}],
        multipliers=[0.3, 1.0, 3.0],
        baseline=False,
    )
    Ladder(config).run()
    note = json.loads((root / "ladder" / "transfer_note.json").read_text())
    return seed, scenario, config, root / "ladder", note


def test_few_labels_climb_past_the_probe_and_no_trial_stops_in_warmup(no_signal_ladder):
    seed, _, _, out, note = no_signal_ladder
    decision = note["decision"]
    assert decision["recommended"] in ("partial_unfreeze", "full"), decision
    climb = next(c for c in note["comparisons"] if (c["candidate"], c["kind"]) == ("partial_unfreeze", "climb"))
    assert climb["reference"] == "linear_probe" and climb["outcome"] == "climb"

    runs = trials(out)
    assert {folder.parent.name for folder in runs} >= {"00_linear_probe", "01_partial_unfreeze", "02_full"}
    assert any(folder.parent.name.endswith("_scratch") for folder in runs)
    for folder, result in runs.items():
        stop = result.stopping
        where = f"{folder.parent.name}/{folder.name}"
        assert not (stop.converged and stop.cut_short), where
        first = main_phase(result)[0]
        assert first["main_step"] == 0, where  # the starting point, before any update
        if stop.method == "lbfgs":
            assert stop.stop_reason == "solved" and folder.name == f"solved_seed{seed}", where
            continue
        steps_per_epoch = FEW_TRAIN_ROWS // 16
        assert stop.steps_per_epoch == steps_per_epoch, where
        assert stop.max_steps >= NO_SIGNAL_EPOCHS * steps_per_epoch, where  # scratch: 3x
        assert stop.warmup_steps == int(0.06 * stop.max_steps) > 0, where
        # The minimum budget is the warmup plus at least 20 steps at the peak LR, and every trial ran it.
        assert stop.min_steps >= stop.warmup_steps + 20, where
        assert stop.max_steps >= stop.steps_run >= stop.min_steps, where
        # Patience, the cap, or the LR search's pruning (only ever past the minimum budget, checked above).
        assert stop.stop_reason in ("patience", "budget", "pruned"), where
        if stop.stop_reason == "budget":
            assert stop.steps_run == stop.max_steps, where
        if stop.stop_reason == "pruned":
            assert stop.cut_short and not stop.converged and stop.steps_run < stop.max_steps, where
        # One evaluation every eval_every steps (at least 10: a 4-step epoch would spend patience in 12), the
        # last one where training ended.
        steps = [r["main_step"] for r in main_phase(result)]
        assert stop.eval_every >= 10 and steps == sorted(set(steps)) and steps[-1] == stop.steps_run, where
        assert all(s % stop.eval_every == 0 for s in steps[:-1]), where
        assert stop.best_step in steps, where


def test_pruning_reads_the_selection_rows_and_stops_only_losing_lrs(no_signal_ladder):
    _, _, _, out, note = no_signal_ladder
    pruned_any = False
    for entry in [*note["rungs"], note["scratch"]]:
        kept = [t for t in entry["lr_search"] if not t["pruned"]]
        for t in entry["lr_search"]:
            if t["pruned"]:
                pruned_any = True
                assert not t["chosen"] and not t["tied"]
                # A pruned LR trained fewer steps than the longest kept one.
                assert t["steps"] < max(k["steps"] for k in kept)
    assert pruned_any  # the low LRs of this task fall behind and flatten
    # What the rules read: every selection row's loss at each evaluation. A deeper rung's first evaluation is the
    # probe it starts from (LP-FT), row for row on the probe's selection rows: no decision row is among them.
    with np.load(next(out.glob("rungs/00_linear_probe/*/predictions.npz"))) as data:
        probe = data["validation_row_losses"]
    for trial in out.glob("rungs/0[12]_*/*/predictions.npz"):
        with np.load(trial) as data:
            curve = data["selection_curve_losses"]
        assert curve.shape[1] == len(probe) == note["selection"]["selection_rows"]
        np.testing.assert_allclose(curve[0], probe, atol=1e-4)


def test_pruning_keeps_the_exhaustive_searchs_recommendation_and_outcome(no_signal_ladder):
    seed, _, config, out, note = no_signal_ladder
    # The same ladder with every LR at its whole budget (the control left out: the climb never reads it).
    exhaustive = config.model_copy(
        update={
            "ladder": config.ladder.model_copy(
                update={
                    "lr_search": config.ladder.lr_search.model_copy(update={"prune": False}),
                    "scratch": config.ladder.scratch.model_copy(update={"enabled": False}),
                }
            ),
            "output_dir": str(out.parent / "exhaustive"),
        }
    )
    full = Ladder(exhaustive).run()
    assert (full.decision.recommended, full.decision.outcome) == (
        note["decision"]["recommended"],
        note["decision"]["outcome"],
    )
    steps = {
        p.parent.name: json.loads(p.read_text())["stopping"]["steps_run"]
        for p in out.glob("rungs/0[12]_*/*/metrics.json")
    }
    assert steps  # the pruned ladder's trials, for the record of what pruning saved
    assert all(t.pruned is None for r in full.rungs for t in r.lr_search)


def reference_scratch(config, out: Path, lr: float, steps: int):
    """A from-scratch run of `steps` steps at `lr` on the ladder's rows, early stopping and restoring off."""
    tcfg = config.train
    per_epoch = FEW_TRAIN_ROWS // tcfg.batch_size
    single = config.model_copy(
        update={
            "ladder": None,
            "strategy": {"name": "scratch"},
            "train": tcfg.model_copy(
                update={
                    "epochs": steps // per_epoch,
                    "head_lr": lr,
                    "backbone_lr": lr,
                    "early_stopping": tcfg.early_stopping.model_copy(update={"enabled": False, "restore_best": False}),
                }
            ),
            "output_dir": str(out),
        }
    )
    result = Engine(single).run()
    assert result.stopping.steps_run == steps
    return result


def test_scratch_trains_as_well_as_a_long_reference(no_signal_ladder):
    seed, scenario, config, out, note = no_signal_ladder
    scratch = note["scratch"]
    assert scratch is not None and scratch["test"] is not None
    # Its own grid (transformers: 1e-4..1e-3) and 3x the rungs' step cap.
    assert [t["lr"] for t in scratch["lr_search"] if not t["extended"]] == pytest.approx([1e-4, 3e-4, 1e-3])
    assert all(c["max_steps"] == 3 * NO_SIGNAL_EPOCHS * FEW_TRAIN_ROWS // 16 for c in scratch["convergence"])
    # The reference: 300 steps at each LR of a grid one step wider on the high side, the best on the whole
    # validation csv (the ladder chose on its selection half), compared on the test csv.
    refs = [reference_scratch(config, out.parent / f"reference_{lr:.0e}", lr, 300) for lr in (3e-4, 1e-3, 3e-3)]
    best = max(refs, key=lambda r: r.splits["validation"].metrics["accuracy"])
    reference = best.splits["test"].metrics["accuracy"]
    ladder = scratch["test"]["accuracy"]
    print(f"seed {seed}: ladder scratch test {ladder:.3f} (lr {scratch['lr']:.0e}), reference {reference:.3f}")
    # 0.08: the standard error of an accuracy difference of two models on these 200 test rows is ~0.04 at
    # accuracy 0.8, so two equally good runs differ by up to ~2 SE; one class pair merged would cost 0.25.
    assert ladder >= reference - 0.08


# --- (2) a convnet: the deeper rung starts where the probe ended --------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_a_deeper_convnet_rung_starts_where_the_probe_ended(tmp_path, seed):
    backbone = convnet_backbone(tmp_path / "resnet", seed=seed)
    # 3 classes x 16 train images at batch 16: 3 steps per epoch; 3 x 40 validation images (60 select, 60 decide).
    images = color_image_splits(tmp_path / "images", {"train": 16, "validation": 40}, seed=seed)
    out = tmp_path / "ladder"
    config = load_config(
        None,
        [],
        backbone={"name": str(backbone), "data_config": {"input_size": 32}},
        data={"dataset": str(images)},
        train={"epochs": 10, "batch_size": 16, "seed": seed},
        ladder={
            "rungs": [{"name": "linear_probe"}, {"name": "partial_unfreeze", "last_k": 1, "lr": 1e-3}],
            "lr_search": {"multipliers": [1.0]},
            "scratch": False,
            "baseline": False,
            "transferability": False,
            "max_seeds": 1,
            "bootstrap_samples": 1000,
        },
        metrics=["accuracy"],
        checkpoint={"each_epoch": False},
        log_with="none",
        output_dir=str(out),
    )
    Ladder(config).run()
    runs = trials(out)
    probe = next(r for f, r in runs.items() if f.parent.name == "00_linear_probe")
    deeper = [(f, r) for f, r in runs.items() if f.parent.name == "01_partial_unfreeze"]
    assert deeper
    selection = probe.splits["validation"]
    assert 0.4 < selection.metrics["accuracy"] and selection.loss > 0.05  # a probe with something left to learn
    saved = load_file(str(backbone / "model.safetensors"))
    for folder, result in deeper:
        start = main_phase(result)[0]
        assert start["main_step"] == 0 and start["phase"] == 2
        print(
            f"seed {seed} {folder.name}: probe selection acc {selection.metrics['accuracy']:.4f} loss "
            f"{selection.loss:.6f}; deeper rung at step 0 acc {start['accuracy']:.4f} loss {start['loss']:.6f}"
        )
        assert start["accuracy"] == selection.metrics["accuracy"]
        assert start["loss"] == pytest.approx(selection.loss, abs=1e-4)
        # Every BatchNorm kept the statistics it was loaded with (frozen_stats), the trained block's included:
        # all are locked, and the artifact (which carries the statistics of any BatchNorm that updates) has the
        # checkpoint's.
        stats = [k for k in saved if k.endswith(("running_mean", "running_var"))]
        assert result.trainable["locked_batchnorm"] == len(stats) // 2 == 20
        state = load_adapted(folder / "artifact").model.state_dict()
        for key in stats:
            torch.testing.assert_close(state[key], saved[key], rtol=0, atol=0)


# --- (4) tied LRs at the edge -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_tied_lrs_raise_no_edge_flag(tmp_path, source_backbones, seed):
    scenario = scenario_close(tmp_path, seed=seed, source=source_backbones[seed])
    out = tmp_path / "ladder"
    config = text_config(
        scenario,
        out,
        seed=seed,
        epochs=10,
        rungs=[{"name": "linear_probe"}, {"name": "lora", "lr": 2e-3}],
        multipliers=[0.3, 1.0, 3.0],
        scratch=False,
        baseline=False,
    )
    Ladder(config).run()
    note = json.loads((out / "transfer_note.json").read_text())
    lora = next(r for r in note["rungs"] if r["id"] == "lora")
    searched = lora["lr_search"]
    assert [t["lr"] for t in searched] == pytest.approx([6e-4, 2e-3, 6e-3])  # no extension past a tie
    # Every LR starts from the solved probe (1.0 on the selection rows) and keeps its best evaluation.
    assert all(t["metric"] >= 0.97 for t in searched), searched
    assert all(t["tied"] for t in searched)
    chosen = next(t for t in searched if t["chosen"])
    assert chosen["lr"] == lora["lr"] == min(t["lr"] for t in searched)  # the lowest tied LR
    assert lora["lr_edge"] is None
    assert not any(f["kind"] == "lr_at_edge" for f in note["flags"])

"""The scratch control in a second process beside the rungs: the same search, read back as `--resume` reads it,
and the rules that decide when it runs there."""

from __future__ import annotations

import json

import pytest
import torch

from ladder.synthetic import LADDER_SEEDS, keyword_ladder_config, scenario_no_signal
from peft_ladder.budget import StepBudget
from peft_ladder.config import ConfigError, load_config
from peft_ladder.ladder import Ladder
from peft_ladder.ladder.control import (
    MIN_BESIDE_SECONDS,
    STEP_PER_FORWARD,
    beside_or_why_not,
    estimate_control_seconds,
)
from peft_ladder.ladder.trial import control_budget

CPU, GPU = torch.device("cpu"), torch.device("cuda")


def config(epochs: int = 10, **scratch):
    return load_config(
        None,
        [],
        backbone={"name": "unused"},
        data={"dataset": "csv", "data_files": {"train": "unused.csv"}},
        train={"epochs": epochs},
        ladder={"scratch": scratch},
        output_dir="unused",
    )


@pytest.fixture
def two_free_cores(monkeypatch):
    monkeypatch.setattr("peft_ladder.ladder.control.usable_cores", lambda: 2 * torch.get_num_threads())
    monkeypatch.setattr("peft_ladder.ladder.control.memory_needed_and_available", lambda: (2**30, 4 * 2**30))


def test_auto_runs_beside_only_on_a_cpu_with_a_core_to_spare_for_a_long_control(two_free_cores, monkeypatch):
    cfg, long = config(), 10 * MIN_BESIDE_SECONDS
    assert beside_or_why_not(cfg, device=CPU, num_processes=1, estimated_seconds=long)[0]
    assert not beside_or_why_not(cfg, device=CPU, num_processes=1, estimated_seconds=MIN_BESIDE_SECONDS / 2)[0]
    assert not beside_or_why_not(cfg, device=CPU, num_processes=1, estimated_seconds=None)[0]
    assert not beside_or_why_not(cfg, device=GPU, num_processes=1, estimated_seconds=long)[0]
    assert not beside_or_why_not(cfg, device=CPU, num_processes=2, estimated_seconds=long)[0]
    monkeypatch.setattr("peft_ladder.ladder.control.memory_needed_and_available", lambda: (2**30, 2**29))
    assert not beside_or_why_not(cfg, device=CPU, num_processes=1, estimated_seconds=long)[0]  # no memory for it
    monkeypatch.setattr("peft_ladder.ladder.control.memory_needed_and_available", lambda: (2**30, 4 * 2**30))
    monkeypatch.setattr("peft_ladder.ladder.control.usable_cores", lambda: 2 * torch.get_num_threads() - 1)
    assert not beside_or_why_not(cfg, device=CPU, num_processes=1, estimated_seconds=long)[0]


def test_the_recipe_decides_over_auto_except_where_it_cannot_work(two_free_cores):
    long = 10 * MIN_BESIDE_SECONDS
    assert not beside_or_why_not(config(parallel=False), device=CPU, num_processes=1, estimated_seconds=long)[0]
    assert beside_or_why_not(config(parallel=True), device=CPU, num_processes=1, estimated_seconds=1.0)[0]
    assert beside_or_why_not(config(parallel=True), device=GPU, num_processes=1, estimated_seconds=1.0)[0]
    # Many processes train every rung together: the control waits its turn.
    assert not beside_or_why_not(config(parallel=True), device=CPU, num_processes=2, estimated_seconds=long)[0]
    # Futility stops need the best pretrained rung, which only the climb trains.
    assert not beside_or_why_not(config(futility=True), device=CPU, num_processes=1, estimated_seconds=long)[0]
    with pytest.raises(ConfigError, match="parallel"):
        config(parallel=True, futility=True)
    assert not beside_or_why_not(config(enabled=False), device=CPU, num_processes=1, estimated_seconds=long)[0]


def test_the_estimate_grows_with_the_grid_the_budget_and_the_forward_time():
    cfg = config(budget=3)
    assert estimate_control_seconds(cfg, 3, 300, None) is None
    one = estimate_control_seconds(cfg, 1, 320, 0.01)  # 10 whole batches of 32 an epoch
    assert one == pytest.approx(estimate_control_seconds(cfg, 3, 320, 0.01) / 3)
    assert estimate_control_seconds(cfg, 1, 640, 0.01) == pytest.approx(2 * one)
    longer = config(budget=6)
    assert estimate_control_seconds(longer, 1, 320, 0.01) == pytest.approx(2 * one)


def test_the_estimate_counts_the_steps_the_minimum_at_peak_adds_to_a_short_epoch():
    """96 rows are 3 steps an epoch: 2 epochs x budget 3 would be 18 steps, but no trial stops before its warmup and
    `min_steps_at_peak` (20, x3 for the control) steps at peak LR: the control trains 64 steps, as it did in the
    benchmark run whose estimate (taken from the epoch cap) was a third of the time it took."""
    cfg = config(epochs=2, budget=3)
    cap = StepBudget.plan(cfg.train.model_copy(update=control_budget(cfg.train, 3)), steps_per_epoch=3)
    assert cap.raised and cap.max_steps > 60
    rows_per_second_of_forward = 100.0  # forward_seconds_per_row 0.01
    estimate = estimate_control_seconds(cfg, 1, 96, 1 / rows_per_second_of_forward)
    assert estimate == pytest.approx(cap.max_steps * 32 * STEP_PER_FORWARD / rows_per_second_of_forward)


@pytest.mark.slow
def test_the_control_beside_the_rungs_gives_the_sequential_result(tmp_path, source_backbones, monkeypatch):
    """Scenario (b): the control beats every pretrained rung (negative transfer), so its result decides a flag."""
    seed = LADDER_SEEDS[0]
    scenario = scenario_no_signal(tmp_path, seed=seed, source=source_backbones[seed])
    notes = {}
    for parallel in (False, True, "failed"):
        if parallel == "failed":  # a child that dies before any trial: the ladder trains the control itself
            monkeypatch.setattr("peft_ladder.ladder.climb.ControlBeside", _DeadControl)
        out = tmp_path / f"parallel_{parallel}"
        cfg = keyword_ladder_config(
            scenario,
            out,
            seed=seed,
            epochs=4,
            rungs=[{"name": "linear_probe"}],  # the control's flag against the probe is what is at stake
            multipliers=[1.0],
            scratch={"parallel": bool(parallel), "lrs": [1e-3, 3e-3]},  # two LRs: the second judged by the first
        )
        Ladder(cfg).run()
        notes[parallel] = json.loads((out / "transfer_note.json").read_text())
    sequential, beside = notes[False]["scratch"], notes[True]["scratch"]
    for run in (True, "failed"):
        for key in ("lr", "lr_search", "metric", "decision", "convergence", "tied"):
            if key in sequential:
                assert _without_seconds(notes[run]["scratch"][key]) == _without_seconds(sequential[key]), (run, key)
        assert [f["kind"] for f in notes[run]["flags"]] == [f["kind"] for f in notes[False]["flags"]]
    waited = {row["phase"]: row for row in notes["failed"]["timing"]["phases"]}
    assert waited["scratch: waiting for the control beside the rungs"]["trials"] == len(sequential["lr_search"])
    assert "negative_transfer" in [f["kind"] for f in notes[True]["flags"]]
    # The child trained every control trial; the ladder read them back and trained none itself.
    rows = {row["phase"]: row for row in notes[True]["timing"]["phases"]}
    assert "scratch: LR search" not in rows
    assert rows["scratch: waiting for the control beside the rungs"]["trials"] == 0
    (beside_row,) = notes[True]["timing"]["beside"]
    assert beside_row["rung"] == "scratch" and beside_row["trials"] == len(beside["lr_search"])
    assert not notes[False]["timing"]["beside"]
    assert (tmp_path / "parallel_True" / "rungs" / "01_scratch" / "control.log").exists()


class _DeadControl:
    """A control process that died before finishing a trial (killed, out of memory)."""

    def __init__(self, config, output_dir, index, seed, *, resume):
        self.log_file = output_dir / "rungs" / f"{index:02d}_scratch" / "control.log"
        self.seconds = 0.0

    def start(self) -> None:
        pass

    def wait(self) -> bool:
        return False

    def stop(self) -> None:
        pass


def _without_seconds(value):
    if isinstance(value, dict):
        return {k: _without_seconds(v) for k, v in value.items() if k != "seconds" and "seconds" not in k}
    if isinstance(value, list):
        return [_without_seconds(v) for v in value]
    return value

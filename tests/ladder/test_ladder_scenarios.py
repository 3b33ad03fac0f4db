"""The ladder on tiny tasks with known answers (see `synthetic.py` for how each one is built), each over
three seeds of the whole ladder (data, pretraining, training and the decision split all change with it).

(a) close target, few labels: the converged probe already solves it, so the climb stops at the probe.
(b) frozen features without signal: scratch beats every pretrained rung that ran: negative transfer.
(c) deeper adaptation really helps: the climb escalates past the probe, then stops when full
    fine-tuning adds nothing over partial unfreezing.
(d) frozen features that separate the classes at a scale an epoch-budgeted head cannot use: the solved
    probe sees it, an AdamW head does not, and the ladder stops at the probe.
Each asserts on the decision and on the numbers in the JSON note, which must validate against the schema.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from ladder.synthetic import (
    LADDER_SEEDS,
    keyword_ladder_config,
    scenario_close,
    scenario_no_signal,
    scenario_separable_but_slow,
)
from peft_ladder.engine import Engine
from peft_ladder.ladder import Ladder
from peft_ladder.ladder.note import SCHEMA_PATH

pytestmark = pytest.mark.slow
SCHEMA = json.loads(SCHEMA_PATH.read_text())
SEEDS = LADDER_SEEDS  # `source_backbones` (conftest.py) builds one backbone per seed


ladder_config = keyword_ladder_config  # warmup 0: these scenarios predate the step budget


def read_note(out: Path) -> dict:
    note = json.loads((out / "transfer_note.json").read_text())
    jsonschema.validate(note, SCHEMA)
    md = (out / "transfer_note.md").read_text()
    for rung in note["rungs"]:
        assert f"`{rung['id']}`" in md
    assert (out / "transfer_note.png").stat().st_size > 10_000
    check_time_table(note, md)
    return note


def check_time_table(note: dict, md: str) -> None:
    """The note's time table has a row for every phase that ran, and its rows add up to at most the wall time."""
    timing = note["timing"]
    rows = {row["phase"]: row for row in timing["phases"]}
    ran = ["start: interpreter, imports, config"] if note["clock_started"] == "process_start" else []
    ran += ["setup: splits, backbone, encoding", "frozen evidence: forward pass, pooling comparison, depth curve"]
    ran += ["frozen evidence: LogME, H-score"] if note["transferability"] else []
    for entry in [*note["rungs"], *([note["scratch"]] if note["scratch"] else [])]:
        ran.append(f"{entry['id']}: LR search")
        ran += [f"{entry['id']}: extra seeds"] if len(entry["seeds"]) > 1 else []
    ran += ["cheap baseline"] if note["baseline"] else []
    ran += [
        "statistics: bootstrap intervals, comparisons, flags",
        "note: the artifact's copy, unkept artifacts removed",
        "plot: the note's figure",
    ]
    assert sorted(rows) == sorted(ran)
    assert all(row["seconds"] >= 0 for row in rows.values())
    # Every trial that trained sits in a search or seed row (none was reused: no --resume here).
    searched = sum(len({t["lr"] for t in e["lr_search"]}) or 1 for e in [*note["rungs"], note["scratch"]] if e)
    assert sum(row["trials"] for row in rows.values()) >= searched
    timed = sum(row["seconds"] for row in rows.values())
    assert timed <= note["total_seconds"]
    assert timed + timing["other_seconds"] + timing["earlier_sessions_seconds"] == pytest.approx(note["total_seconds"])
    section = md.split("## Where the time went")[1].split("## ")[0]
    assert all(f"| {phase} |" in section for phase in rows) and "| **total** |" in section


def comparison(note: dict, candidate: str, reference: str, kind: str = "climb") -> dict:
    return next(
        c for c in note["comparisons"] if (c["candidate"], c["reference"], c["kind"]) == (candidate, reference, kind)
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_a_close_task_stops_at_the_probe(tmp_path, source_backbones, seed):
    scenario = scenario_close(tmp_path, seed=seed, source=source_backbones[seed])
    out = tmp_path / "ladder"
    config = ladder_config(
        scenario,
        out,
        seed=seed,
        epochs=5,
        batch_size=8,
        rungs=[{"name": "linear_probe"}, {"name": "lora", "lr": 2e-3}, {"name": "partial_unfreeze"}, {"name": "full"}],
        multipliers=[0.3, 1.0, 3.0],
    )
    Ladder(config).run()
    note = read_note(out)
    rungs = {r["id"]: r for r in note["rungs"]}
    decision = note["decision"]
    assert decision["recommended"] == "linear_probe"
    assert decision["outcome"] in ("stop", "uncertain") and decision["stopped_at"] == "lora"
    assert decision["rungs_skipped"] == ["partial_unfreeze", "full"]
    probe = rungs["linear_probe"]
    assert probe["metric"]["estimate"] >= 0.95
    # The probe is solved, not searched: converged, no LR, one deterministic run.
    assert probe["lr"] is None and probe["lr_search"] == [] and probe["seeds"] == [seed]
    assert [c["method"] for c in probe["convergence"]] == ["lbfgs"] and probe["convergence"][0]["converged"]
    climb = comparison(note, "lora", "linear_probe")
    assert climb["low"] <= note["min_gain"] and climb["outcome"] == decision["outcome"]
    # LoRA searched the same grid around its LR (and one step past an edge when the best sat alone on it), chose
    # on the selection rows, and started from the probe's head.
    lora = rungs["lora"]
    grid = [t["lr"] for t in lora["lr_search"] if not t["extended"]]
    assert grid == pytest.approx([6e-4, 2e-3, 6e-3])
    chosen = next(t for t in lora["lr_search"] if t["chosen"])
    best = max(t["metric"] for t in lora["lr_search"])
    # The chosen LR is the best or tied with it (within one paired SE); a pretrained rung takes the lowest tied LR.
    assert chosen["lr"] == lora["lr"] and (chosen["metric"] == best or chosen["tied"])
    assert chosen["tied"] and chosen["lr"] == min(t["lr"] for t in lora["lr_search"] if t["tied"])
    assert all(t["tied"] for t in lora["lr_search"] if t["metric"] == best)
    # Every LR starts from the solved probe and keeps its best evaluation: all score alike, so the grid's edges
    # are a flat curve, not an optimum further out: no edge, no flag, no extension.
    assert all(t["tied"] for t in lora["lr_search"]) and not any(t["extended"] for t in lora["lr_search"])
    assert lora["lr_edge"] is None
    assert not any(f["kind"] == "lr_at_edge" and f["rung"] == "lora" for f in note["flags"])
    assert lora["head_from"] == "linear_probe"
    # What trained: the probe only the head; LoRA a sliver of each block.
    probe_parts = {p["part"]: p for p in probe["trainable"]["parts"]}
    assert probe_parts["head"]["pct"] == 100
    assert probe["trainable"]["frozen_parts"] == [p for p in probe_parts if p != "head"]
    assert 0 < lora["trainable"]["pct"] < 20
    # Few labels, but a keyword task: the from-scratch control, on its own LR grid with 3x the steps, can match the
    # probe (seeds 1-2: 1.00 on the decision rows, as the TF-IDF baseline nearly does), so "competitive" is a fair
    # flag; it is never reliably better, so no negative transfer and the probe is what to deploy. Transferability
    # still ranks the pretrained features first.
    assert not any(f["kind"] == "negative_transfer" for f in note["flags"])
    assert comparison(note, "scratch", "linear_probe", "vs_scratch")["low"] <= 0
    assert (decision["deploy"]["kind"], decision["deploy"]["id"]) == ("rung", "linear_probe")
    t = note["transferability"]
    assert t["pretrained"]["logme"] > t["random_init"]["logme"]
    # The decision rows are held out from every choice, and the note says how many there are.
    assert note["selection"]["selection_rows"] + note["selection"]["decision_rows"] == 200
    assert probe["metric"]["n"] == note["selection"]["decision_rows"]
    # The probe trained on cached features; the recommended artifact is the ladder's output.
    record = json.loads(next((out / "rungs").glob("00_linear_probe/*/metrics.json")).read_text())["cache"]
    assert record["used"]
    assert json.loads((out / "artifact" / "peft_ladder.json").read_text())["strategy"] == "linear_probe"
    assert len(list((out / "rungs").glob("*/*/artifact"))) == 3  # probe, lora, scratch at their chosen LRs


@pytest.mark.parametrize("seed", SEEDS)
def test_b_features_without_signal_flag_negative_transfer(tmp_path, source_backbones, seed):
    scenario = scenario_no_signal(tmp_path, seed=seed, source=source_backbones[seed])
    out = tmp_path / "ladder"
    config = ladder_config(
        scenario,
        out,
        seed=seed,
        epochs=10,
        rungs=[{"name": "linear_probe"}, {"name": "lora", "lr": 2e-3}, {"name": "partial_unfreeze"}, {"name": "full"}],
        multipliers=[1.0],
    )
    Ladder(config).run()
    note = read_note(out)
    rungs = {r["id"]: r for r in note["rungs"]}
    assert note["decision"]["recommended"] == "linear_probe"
    assert note["decision"]["outcome"] in ("stop", "uncertain")
    assert rungs["linear_probe"]["metric"]["estimate"] <= 0.35  # chance is 0.25, whatever the pooling
    negative = [f for f in note["flags"] if f["kind"] == "negative_transfer"]
    assert negative and all(f["interval"]["low"] > 0 for f in negative)
    # The flag rests on the rungs that ran, and names the deeper ones that did not.
    assert any("partial_unfreeze" in f["message"] for f in negative)
    assert note["scratch"]["metric"]["estimate"] >= 0.5
    # Constant frozen features: no class separation at all.
    assert note["transferability"]["pretrained"]["h_score"] == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
def test_c_deeper_adaptation_helps_and_the_ladder_escalates(tmp_path, source_backbones, seed):
    scenario = scenario_no_signal(tmp_path, seed=seed, source=source_backbones[seed])
    out = tmp_path / "ladder"
    config = ladder_config(
        scenario,
        out,
        seed=seed,
        epochs=10,
        rungs=[{"name": "linear_probe"}, {"name": "partial_unfreeze", "lr": 1e-3}, {"name": "full", "lr": 1e-3}],
        multipliers=[1.0],
        scratch=False,
        baseline=False,
    )
    Ladder(config).run()
    note = read_note(out)
    rungs = {r["id"]: r for r in note["rungs"]}
    decision = note["decision"]
    assert decision["recommended"] == "partial_unfreeze"
    assert decision["rungs_run"] == ["linear_probe", "partial_unfreeze", "full"]
    first = comparison(note, "partial_unfreeze", "linear_probe")
    assert first["outcome"] == "climb" and first["low"] > 0.3
    # Mean over the seeds the climb confirmed it with (one seed can sit on a plateau); chance is 0.25.
    assert rungs["partial_unfreeze"]["metric"]["estimate"] >= 0.75 and len(rungs["partial_unfreeze"]["seeds"]) == 3
    # full adds nothing reliable over partial: the climb ends there, and says how.
    assert decision["outcome"] in ("stop", "uncertain") and decision["stopped_at"] == "full"
    # The depth curve sees the signal die in the last block and sets partial_unfreeze's depth from it.
    curve = note["depth_curve"]
    assert curve["peak"] == 0 and curve["points"][0]["accuracy"] > curve["points"][1]["accuracy"]
    assert curve["used"] == {"partial_unfreeze": curve["implied_last_k"]} and not curve["fixed_by_recipe"]
    # Drift: the probe leaves the backbone alone; partial moves only the last block.
    per_part = rungs["partial_unfreeze"]["drift"]["per_part"]
    assert rungs["linear_probe"]["drift"]["rel_weight_change"] == 0
    blocks = [part for part in per_part if part not in ("stem", "neck")]
    assert per_part["stem"] == 0 and per_part[blocks[0]] == 0 and per_part[blocks[-1]] > 0
    # One drift record per evaluation: from the starting point (step 0, nothing moved yet) to the last step run.
    convergence = rungs["partial_unfreeze"]["convergence"][0]
    drift_steps = [d["step"] for d in rungs["partial_unfreeze"]["drift_per_epoch"]]
    assert drift_steps[0] == 0 and rungs["partial_unfreeze"]["drift_per_epoch"][0]["rel_weight_change"] == 0
    assert drift_steps == sorted(set(drift_steps))
    assert drift_steps[-1] == convergence["steps_run"] <= convergence["max_steps"]
    assert convergence["max_steps"] == 10 * convergence["steps_per_epoch"]  # epochs 10: above the minimum budget
    # partial_unfreeze trained its last block on the cached output of the frozen ones.
    partial = json.loads(next((out / "rungs").glob("01_partial_unfreeze/*/metrics.json")).read_text())["cache"]
    assert partial["used"] and partial["cut"] == f"input of block {note['backbone']['num_blocks'] - 1}"


@pytest.mark.parametrize("seed", SEEDS)
def test_d_separable_features_that_need_many_epochs_stop_at_the_probe(tmp_path, source_backbones, seed):
    scenario = scenario_separable_but_slow(tmp_path, seed=seed, source=source_backbones[seed])
    out = tmp_path / "ladder"
    config = ladder_config(
        scenario,
        out,
        seed=seed,
        epochs=4,
        batch_size=8,
        rungs=[{"name": "linear_probe"}, {"name": "lora", "lr": 2e-3}, {"name": "full"}],
        multipliers=[1.0],
        scratch=False,
        baseline=False,
    )
    Ladder(config).run()
    note = read_note(out)
    probe = next(r for r in note["rungs"] if r["id"] == "linear_probe")
    assert note["decision"]["recommended"] == "linear_probe"
    assert probe["metric"]["estimate"] >= 0.9 and probe["convergence"][0]["converged"]
    if seed == SEEDS[0]:
        # The same probe trained like a rung (AdamW at the recipe's default head LR, an epoch budget) is
        # nowhere near: it is what made the ladder climb when the probe was not solved.
        single = config.model_copy(
            update={
                "ladder": None,
                "strategy": {
                    "name": "linear_probe",
                    "solver": "adamw",
                    "bn_policy": "freeze",
                    "folds": 5,
                    "l2_grid": None,
                },
                "train": config.train.model_copy(update={"head_lr": 1e-3}),
                "output_dir": str(tmp_path / "adamw_probe"),
            }
        )
        results = Engine(single).run()
        assert results.splits["validation"].metrics["accuracy"] < probe["metric"]["estimate"] - 0.3

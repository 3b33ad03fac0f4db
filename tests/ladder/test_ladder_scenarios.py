"""The ladder on tiny tasks with known answers (see `synthetic.py` for how each one is built).

(a) close target, few labels: the probe already solves it, so the climb stops at the adapter rung.
(b) frozen features without signal: scratch beats every pretrained rung that ran: negative transfer.
(c) deeper adaptation really helps: the climb escalates past the probe, then stops when full
    fine-tuning adds nothing over partial unfreezing.
Each asserts on the decision and on the numbers in the JSON note, which must validate against the schema.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from ladder.synthetic import pretrained_source_backbone, scenario_close, scenario_no_signal
from peft_ladder.config import load_config
from peft_ladder.ladder import Ladder
from peft_ladder.ladder.note import SCHEMA_PATH

pytestmark = pytest.mark.slow
SCHEMA = json.loads(SCHEMA_PATH.read_text())


@pytest.fixture(scope="module")
def source_backbone(tmp_path_factory) -> Path:
    folder, accuracy = pretrained_source_backbone(tmp_path_factory.mktemp("source") / "backbone")
    assert accuracy >= 0.98
    return folder


def ladder_config(
    scenario, out: Path, *, epochs: int, rungs: list[dict], multipliers: list[float], batch_size: int = 16, **ladder
):
    return load_config(
        None,
        [],
        backbone={"name": str(scenario.backbone)},
        data={
            "dataset": "csv",
            "data_files": {"train": str(scenario.train_csv), "validation": str(scenario.validation_csv)},
            "max_length": 16,
        },
        train={"epochs": epochs, "batch_size": batch_size, "head_lr": 3e-2, "warmup_ratio": 0.0},
        ladder={"rungs": rungs, "lr_search": {"multipliers": multipliers}, "bootstrap_samples": 1000, **ladder},
        metrics=["accuracy"],
        checkpoint={"each_epoch": False},
        log_with="none",
        output_dir=str(out),
    )


def read_note(out: Path) -> dict:
    note = json.loads((out / "transfer_note.json").read_text())
    jsonschema.validate(note, SCHEMA)
    md = (out / "transfer_note.md").read_text()
    for rung in note["rungs"]:
        assert f"`{rung['id']}`" in md
    assert (out / "transfer_note.png").stat().st_size > 10_000
    return note


def test_a_close_task_stops_at_the_probe(tmp_path, source_backbone):
    scenario = scenario_close(tmp_path, source=source_backbone)
    out = tmp_path / "ladder"
    config = ladder_config(
        scenario,
        out,
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
    assert decision["stop_reason"] == "no_reliable_gain" and decision["stopped_at"] == "lora"
    assert decision["rungs_skipped"] == ["partial_unfreeze", "full"]
    assert rungs["linear_probe"]["metric"]["estimate"] >= 0.95
    climb = next(c for c in note["comparisons"] if c["kind"] == "climb")
    assert (climb["candidate"], climb["reference"]) == ("lora", "linear_probe")
    assert climb["low"] <= 0
    # The same LR budget for every rung, the best on validation chosen, the probe's head reused.
    for rung in [*note["rungs"], note["scratch"]]:
        tried = rung["lr_search"]
        assert len(tried) == 3 and sum(t["chosen"] for t in tried) == 1
        chosen = next(t for t in tried if t["chosen"])
        assert chosen["lr"] == rung["lr"] and chosen["metric"] == max(t["metric"] for t in tried)
    assert [t["lr"] for t in rungs["lora"]["lr_search"]] == pytest.approx([6e-4, 2e-3, 6e-3])
    assert rungs["lora"]["head_from"] == "linear_probe"
    # What trained: the probe only the head; LoRA a sliver of each block.
    probe_parts = {p["part"]: p for p in rungs["linear_probe"]["trainable"]["parts"]}
    assert probe_parts["head"]["pct"] == 100 and rungs["linear_probe"]["trainable"]["frozen_parts"] == [
        p for p in probe_parts if p != "head"
    ]
    assert 0 < rungs["lora"]["trainable"]["pct"] < 20
    # Few labels: scratch is reliably worse, so no transfer flag; transferability ranks pretrained first.
    assert not any(f["kind"] in ("negative_transfer", "scratch_competitive") for f in note["flags"])
    vs_scratch = next(c for c in note["comparisons"] if c["kind"] == "vs_scratch")
    assert vs_scratch["high"] < 0
    t = note["transferability"]
    assert t["pretrained"]["logme"] > t["random_init"]["logme"]
    assert t["pretrained"]["h_score"] > t["random_init"]["h_score"]
    # One backbone pass per split for the frozen rung: transferability extracted the training split's
    # features, the probe's three trials trained on them and extracted the validation split once.
    records = [json.loads(p.read_text())["cache"] for p in (out / "rungs").glob("00_linear_probe/*/metrics.json")]
    assert len(records) == 3 and all(r["used"] for r in records)
    assert sum(r["misses"] for r in records) == 1
    # The recommended rung's artifact is the ladder's output; the losing LRs' artifacts were pruned.
    assert json.loads((out / "artifact" / "peft_ladder.json").read_text())["strategy"] == "linear_probe"
    assert len(list((out / "rungs").glob("*/*/artifact"))) == 3  # probe, lora, scratch at their chosen LRs


def test_b_features_without_signal_flag_negative_transfer(tmp_path, source_backbone):
    scenario = scenario_no_signal(tmp_path, source=source_backbone)
    out = tmp_path / "ladder"
    config = ladder_config(
        scenario,
        out,
        epochs=10,
        rungs=[{"name": "linear_probe"}, {"name": "lora", "lr": 2e-3}, {"name": "partial_unfreeze"}, {"name": "full"}],
        multipliers=[1.0],
    )
    Ladder(config).run()
    note = read_note(out)
    rungs = {r["id"]: r for r in note["rungs"]}
    assert note["decision"]["stop_reason"] == "no_reliable_gain"
    assert rungs["linear_probe"]["metric"]["estimate"] <= 0.3  # chance is 0.25
    negative = [f for f in note["flags"] if f["kind"] == "negative_transfer"]
    assert len(negative) == 1 and negative[0]["interval"]["low"] > 0
    assert note["scratch"]["metric"]["estimate"] >= 0.5
    # Constant frozen features: no class separation at all.
    assert note["transferability"]["pretrained"]["h_score"] == pytest.approx(0, abs=1e-6)


def test_c_deeper_adaptation_helps_and_the_ladder_escalates(tmp_path, source_backbone):
    scenario = scenario_no_signal(tmp_path, source=source_backbone)
    out = tmp_path / "ladder"
    config = ladder_config(
        scenario,
        out,
        epochs=10,
        rungs=[{"name": "linear_probe"}, {"name": "partial_unfreeze", "lr": 1e-3}, {"name": "full", "lr": 1e-3}],
        multipliers=[1.0],
        scratch=False,
    )
    Ladder(config).run()
    note = read_note(out)
    rungs = {r["id"]: r for r in note["rungs"]}
    decision = note["decision"]
    assert decision["recommended"] == "partial_unfreeze"
    assert decision["rungs_run"] == ["linear_probe", "partial_unfreeze", "full"]
    first = next(c for c in note["comparisons"] if c["candidate"] == "partial_unfreeze" and c["kind"] == "climb")
    assert first["low"] > 0.3
    assert rungs["partial_unfreeze"]["metric"]["estimate"] >= 0.9
    # full adds nothing reliable over partial: the climb stops there, and says so.
    assert (decision["stop_reason"], decision["stopped_at"]) == ("no_reliable_gain", "full")
    # Drift: the probe leaves the backbone alone; partial moves only the last block and the neck.
    per_part = rungs["partial_unfreeze"]["drift"]["per_part"]
    assert rungs["linear_probe"]["drift"]["rel_weight_change"] == 0
    assert per_part["stem"] == 0 and per_part["neck"] > 0
    assert len(rungs["partial_unfreeze"]["drift_per_epoch"]) == 10
    # partial_unfreeze trained its last block on the cached output of the frozen ones.
    partial = json.loads(next((out / "rungs").glob("01_partial_unfreeze/*/metrics.json")).read_text())["cache"]
    assert partial["used"] and partial["cut"] == f"input of block {note['backbone']['num_blocks'] - 1}"

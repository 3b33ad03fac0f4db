"""The probe and LoRA rungs on the real all-MiniLM-L6-v2 checkpoint move the backbone less than full
fine-tuning, as the note's drift figures show (a small text task: stdlib docstrings)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from peft_ladder.config import load_config
from peft_ladder.ladder import Ladder
from peft_ladder.ladder.note import SCHEMA_PATH

pytestmark = pytest.mark.slow


def test_minilm_drift_is_smaller_for_probe_and_lora_than_for_full(tmp_path, minilm_dir):
    config = load_config(
        "recipes/tiny/minilm_1layer_ladder.yaml",
        [
            f"output_dir={tmp_path / 'ladder'}",
            "backbone.model_kwargs.num_hidden_layers=6",  # all six layers of the real checkpoint
            "ladder.rungs=[{name: linear_probe}, {name: lora}, {name: full}]",
            "ladder.scratch=false",
            "data.max_samples={train: 128, validation: 64, test: 16}",
        ],
    )
    note = Ladder(config, run_all=True).run()
    data = json.loads((tmp_path / "ladder" / "transfer_note.json").read_text())
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    assert data["backbone"]["num_blocks"] == 6
    # How far each rung moved the backbone by the end of its training (its kept evaluation may be its start,
    # the probe, when training never beat it on the selection rows).
    drift = {r["id"]: (r["drift_per_epoch"] or [r["drift"]])[-1] for r in data["rungs"]}
    assert drift["linear_probe"]["rel_weight_change"] == 0
    assert drift["linear_probe"]["feature_1mcos"] < 1e-6 and drift["linear_probe"]["cka"] > 0.999
    for key in ("rel_weight_change", "max_block_rel_weight_change", "feature_1mcos", "feature_rel_l2"):
        assert drift["linear_probe"][key] < drift["lora"][key] < drift["full"][key], key
    assert drift["full"]["cka"] < drift["lora"]["cka"]
    # LoRA changes only the blocks' attention (merged B@A); the stem (embeddings) stays put.
    assert drift["lora"]["per_part"]["stem"] == 0 and drift["full"]["per_part"]["stem"] > 0
    assert note.decision.rungs_run == ["linear_probe", "lora", "full"]

"""Typed rungs: a valid recipe runs to the end whatever LR each trial gets; an invalid rung stops the ladder
before the first rung trains, naming the rung."""

from __future__ import annotations

import pytest

from peft_ladder.config import ConfigError, load_config
from peft_ladder.ladder import Ladder

pytestmark = pytest.mark.slow
TINY = "recipes/tiny/minilm_1layer_ladder.yaml"


def test_backbone_lr_above_a_searched_head_lr_is_fine(tmp_path):
    """LoRA's own LR as the recipe's backbone LR (5e-4 with head 1e-3) used to fail at the probe's 0.3x
    multiplier: the backbone-below-head rule now applies only to strategies that train the backbone."""
    config = load_config(
        TINY,
        [
            f"output_dir={tmp_path / 'out'}",
            "train.backbone_lr=5e-4",
            "train.head_lr=1e-3",
            "ladder.lr_search.multipliers=[0.3, 1.0]",
            "ladder.rungs=[{name: linear_probe, solver: adamw}, {name: bitfit}]",
            "ladder.run_all=true",
            "ladder.scratch=false",
            "ladder.baseline=false",
            "ladder.max_seeds=1",
        ],
    )
    note = Ladder(config).run()
    assert note.decision.rungs_run == ["linear_probe", "bitfit"]
    probe = next(r for r in note.rungs if r.id == "linear_probe")
    assert sorted(t.lr for t in probe.lr_search if not t.extended)[0] == pytest.approx(3e-4)


def test_a_rung_that_does_not_fit_the_backbone_fails_before_anything_trains(tmp_path):
    config = load_config(
        TINY,
        [
            f"output_dir={tmp_path / 'out'}",
            "ladder.rungs=[{name: linear_probe}, {name: bitfit}, {name: partial_unfreeze, blocks: [7]}]",
        ],
    )
    with pytest.raises(ConfigError, match=r"ladder\.rungs\.2 \(partial_unfreeze\).*out of range"):
        Ladder(config).run()
    assert not (tmp_path / "out" / "rungs").exists()


@pytest.mark.parametrize(
    ("rung", "key"),
    [("{name: lora, r: 0}", "ladder.rungs.1"), ("{name: partial_unfreeze, blocks: []}", "ladder.rungs.1")],
)
def test_an_invalid_option_fails_when_the_recipe_loads(tmp_path, rung, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(TINY, [f"output_dir={tmp_path}", f"ladder.rungs=[{{name: linear_probe}}, {rung}]"])

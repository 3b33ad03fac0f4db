"""The strategy registry: ladder order, duplicate and unknown names, config validation, adding a strategy."""

from __future__ import annotations

import re

import pytest
import torch
from pydantic import Field
from tiny_models import NUM_LABELS, TINY_BACKBONES

from peft_ladder import (
    apply_strategy,
    get_strategy,
    list_strategies,
    load_adapted,
    load_backbone,
    register_strategy,
    save_adapted,
)
from peft_ladder.strategies import Strategy, StrategyConfig, make_strategy_config
from peft_ladder.strategies.linear_probe import LinearProbe

LADDER = ["linear_probe", "lora", "bitfit", "partial_unfreeze", "full", "scratch"]
CASE = {c.id: c for c in TINY_BACKBONES}


def test_builtin_strategies_are_listed_in_ladder_order():
    names = list_strategies()
    assert set(LADDER) <= set(names)
    assert [n for n in names if n in LADDER] == LADDER
    orders = [get_strategy(n).order for n in names]
    assert orders == sorted(orders)
    for name in LADDER:
        assert get_strategy(name).name == name


def test_registering_a_duplicate_name_raises(scratch_registry):
    class AnotherProbe(LinearProbe):  # throwaway subclass reusing a taken name
        name = "linear_probe"

    with pytest.raises(ValueError, match="linear_probe"):
        register_strategy(AnotherProbe)
    assert get_strategy("linear_probe") is LinearProbe


def test_registering_the_same_new_name_twice_raises(scratch_registry):
    class First(LinearProbe):
        name = "test_registry_twice"

    class Second(LinearProbe):
        name = "test_registry_twice"

    register_strategy(First)
    with pytest.raises(ValueError, match="test_registry_twice"):
        register_strategy(Second)
    assert get_strategy("test_registry_twice") is First


def test_a_strategy_without_a_name_cannot_register(scratch_registry):
    class Nameless(Strategy):
        pass

    with pytest.raises(TypeError):
        register_strategy(Nameless)
    assert "Nameless" not in list_strategies()


def test_unknown_strategy_is_a_key_error_naming_it():
    with pytest.raises(KeyError) as info:
        get_strategy("nope")
    assert "nope" in str(info.value)
    with pytest.raises(KeyError, match="nope"):
        make_strategy_config("nope", {})


def test_unknown_option_names_the_dotted_key():
    with pytest.raises(ValueError, match=r"strategy\.rank"):
        make_strategy_config("lora", {"rank": 4})


def test_wrong_type_names_the_dotted_key():
    with pytest.raises(ValueError) as info:
        make_strategy_config("lora", {"r": "x"})
    assert re.search(r"strategy\.r\b", str(info.value))


def test_error_prefix_follows_where():
    with pytest.raises(ValueError, match=r"ladder\.rungs\.1\.last_k"):
        make_strategy_config("partial_unfreeze", {"last_k": 0}, where="ladder.rungs.1")


def test_valid_options_give_the_strategys_typed_config():
    cfg = make_strategy_config("dora", {"r": 4})
    assert isinstance(cfg, get_strategy("dora").config_cls)
    assert (cfg.r, cfg.use_dora) == (4, True)
    assert make_strategy_config("linear_probe").bn_policy == "auto"


def test_apply_strategy_rejects_unknown_options(tiny_dirs):
    backbone = load_backbone(str(tiny_dirs["timm_vit"]), num_labels=NUM_LABELS)
    with pytest.raises(ValueError, match=r"strategy\.rank"):
        apply_strategy(backbone, "lora", rank=4)


def test_a_new_strategy_is_one_registered_class(scratch_registry, tiny_dirs, tmp_path):
    class NormsOnlyConfig(StrategyConfig):
        keyword: str = Field("norm", description="train backbone parameters whose name contains this")

    @register_strategy
    class NormsOnly(Strategy):
        name = "test_norms_only"
        config_cls = NormsOnlyConfig
        order = 27  # between bitfit and partial_unfreeze

        def backbone_trainable(self, backbone, config):
            layout = backbone.layout
            return {n for n in layout.all_params() if config.keyword in n and layout.role_of(n)[0] != "head"}

    names = list_strategies()
    assert names.index("bitfit") < names.index("test_norms_only") < names.index("partial_unfreeze")
    with pytest.raises(ValueError, match=r"strategy\.keywrd"):
        make_strategy_config("test_norms_only", {"keywrd": "x"})

    case = CASE["timm_vit"]
    backbone = load_backbone(str(tiny_dirs[case.id]), num_labels=NUM_LABELS)
    adapted = apply_strategy(backbone, "test_norms_only", keyword="norm")
    trainable = {n for n, p in adapted.model.named_parameters() if p.requires_grad}
    norms = {n for n in backbone.layout.all_params() if "norm" in n}
    assert norms and trainable == norms | set(backbone.layout.head_params())
    assert set(adapted.report.trainable_names) == trainable

    # The rest of the toolkit takes it as it is: optimizer groups, save and load.
    grouped = [p for g in adapted.param_groups(head_lr=1e-2, backbone_lr=1e-3) for p in g["params"]]
    assert len(grouped) == len(trainable)
    with torch.no_grad():
        for p in adapted.model.parameters():
            if p.requires_grad:
                p.add_(0.1)
    adapted.model.eval()
    batch = case.batch()
    with torch.no_grad():
        expected = adapted.logits(batch)
    restored = load_adapted(save_adapted(adapted, tmp_path / "norms_only"))
    assert restored.strategy == "test_norms_only" and restored.config.keyword == "norm"
    restored.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(restored.logits(batch), expected, rtol=0, atol=1e-5)

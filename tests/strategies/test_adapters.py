"""The adapter table: one strategy per peft method, its options checked against the peft config class, what
each declares it supports, and a new method added with one `register_adapter` call."""

from __future__ import annotations

import dataclasses

import peft
import pytest
import torch
import torch.nn.functional as F
from peft.mapping import PEFT_TYPE_TO_PREFIX_MAPPING
from pydantic import Field
from tiny_models import NUM_LABELS, TINY_BACKBONES
from torch.nn.modules.batchnorm import _BatchNorm

from peft_ladder import apply_strategy, get_strategy, list_strategies, load_adapted, load_backbone, save_adapted
from peft_ladder.strategies import make_strategy_config
from peft_ladder.strategies.adapters import Adapter, adapter_method, build_peft_config, list_adapters, register_adapter

CASE = {c.id: c for c in TINY_BACKBONES}
TABLE = {"lora", "dora", "rslora", "ia3", "loha", "lokr", "oft", "boft", "vera", "fourierft"}
PEFT_BOOKKEEPING = {f.name for f in dataclasses.fields(peft.PeftConfig)}


def backbone_of(tiny_dirs, case_id: str):
    return load_backbone(str(tiny_dirs[case_id]), num_labels=NUM_LABELS)


def supports(backbone, strategy: str, **options) -> str | None:
    return get_strategy(strategy)().supports(backbone, make_strategy_config(strategy, options))


def trainable(adapted) -> set[str]:
    return {n for n, p in adapted.model.named_parameters() if p.requires_grad}


# --- the table --------------------------------------------------------------------------------


def test_every_table_row_is_its_own_adapter_strategy():
    assert set(list_adapters()) == TABLE
    assert "adalora" not in list_strategies()  # needs per-step engine hooks; see adapter_table.py
    for name in TABLE:
        cls = get_strategy(name)
        assert issubclass(cls, Adapter) and cls.artifact_kind == "adapter" and cls.default_lr > 0
        assert adapter_method(name).name == name and cls.__doc__
    with pytest.raises(KeyError, match="bitfit"):
        adapter_method("bitfit")


def test_lora_keeps_its_defaults_and_its_variants_are_rows():
    lora = make_strategy_config("lora")
    assert (lora.r, lora.lora_alpha, lora.lora_dropout, lora.use_dora, lora.use_rslora) == (8, 16, 0.0, False, False)
    dora, rslora = make_strategy_config("dora"), make_strategy_config("rslora")
    assert (dora.r, dora.lora_alpha, dora.use_dora, dora.use_rslora) == (8, 16, True, False)
    assert (rslora.r, rslora.lora_alpha, rslora.use_dora, rslora.use_rslora) == (8, 16, False, True)
    assert get_strategy("lora").default_lr == 5e-4


@pytest.mark.parametrize("name", sorted(TABLE))
def test_the_options_are_the_peft_config_fields(name):
    method = adapter_method(name)
    fields = {f.name for f in dataclasses.fields(method.peft_config_cls)} - PEFT_BOOKKEEPING
    assert set(get_strategy(name).config_cls.model_fields) == fields - {"modules_to_save"} | {"bn_policy"}
    # The defaults make a valid peft config, and the options dump to names peft knows (the artifact stores them).
    config = make_strategy_config(name)
    assert isinstance(method.peft_config_cls(**config.peft_fields()), method.peft_config_cls)
    assert make_strategy_config(name, config.model_dump(mode="json")) == config


def test_recipe_shorthand_names_the_peft_fields():
    cfg = make_strategy_config("lora", {"r": 4, "alpha": 8, "dropout": 0.0})
    assert (cfg.r, cfg.lora_alpha, cfg.lora_dropout) == (4, 8, 0.0)
    assert {"lora_alpha", "lora_dropout"} <= set(cfg.model_dump()) and "alpha" not in cfg.model_dump()
    assert make_strategy_config("loha", {"alpha": 4, "dropout": 0.2}).module_dropout == 0.2
    assert make_strategy_config("vera", {"dropout": 0.2}).vera_dropout == 0.2
    with pytest.raises(ValueError, match=r"strategy\.alpha: lora_alpha and alpha are one option"):
        make_strategy_config("lora", {"alpha": 8, "lora_alpha": 16})


def test_unknown_and_bad_options_name_the_dotted_key_and_the_valid_fields():
    with pytest.raises(ValueError) as info:
        make_strategy_config("vera", {"rank": 4}, where="ladder.rungs.1")
    message = str(info.value)
    assert "ladder.rungs.1.rank" in message and "Valid fields:" in message
    assert "vera_dropout" in message and "projection_prng_key" in message
    with pytest.raises(ValueError, match=r"strategy\.vera_dropout"):
        make_strategy_config("vera", {"vera_dropout": 1.5})
    with pytest.raises(ValueError, match=r"strategy\.n_frequency"):
        make_strategy_config("fourierft", {"n_frequency": 0})
    with pytest.raises(ValueError, match=r"strategy\.oft_block_size"):
        make_strategy_config("oft", {"oft_block_size": "big"})
    with pytest.raises(ValueError, match=r"strategy\.alpha"):
        make_strategy_config("lora", {"alpha": "big"})


@pytest.mark.parametrize(("key", "value"), [("modules_to_save", ["classifier"]), ("task_type", "SEQ_CLS")])
def test_fields_we_set_are_refused_by_name(key, value):
    with pytest.raises(ValueError, match=rf"ladder\.rungs\.2\.{key}: set by peft_ladder, not an option"):
        make_strategy_config("lora", {key: value}, where="ladder.rungs.2")


def test_peft_cross_field_checks_run_when_the_options_are_read():
    # OFT takes r or oft_block_size; its default sets the block size, so r alone is two answers.
    with pytest.raises(ValueError, match=r"strategy: .*OFTConfig refuses these options: .*r \(4\)"):
        make_strategy_config("oft", {"r": 4})
    assert make_strategy_config("oft", {"r": 4, "oft_block_size": 0}).r == 4


def test_build_peft_config_saves_the_head_and_the_updating_batchnorms(tiny_dirs):
    backbone = backbone_of(tiny_dirs, "hf_resnet")
    head = list(backbone.layout.head_modules)
    frozen = build_peft_config(backbone, make_strategy_config("lora"))
    assert isinstance(frozen, peft.LoraConfig) and frozen.modules_to_save == head
    assert set(frozen.target_modules) == set(backbone.default_targets()) and (frozen.r, frozen.lora_alpha) == (8, 16)
    updating = build_peft_config(backbone, make_strategy_config("lora", {"bn_policy": "update"}))
    norms = {n for n, m in backbone.model.named_modules() if isinstance(m, _BatchNorm)}
    assert norms and set(updating.modules_to_save) == set(head) | norms


# --- what each method supports ----------------------------------------------------------------


def test_linear_only_methods_declare_a_backbone_without_linear_layers_unsupported(tiny_dirs):
    backbone = backbone_of(tiny_dirs, "timm_resnet")
    for name in ("vera", "fourierft", "oft"):
        reason = supports(backbone, name)
        assert reason and "no Linear" in reason
        with pytest.raises(ValueError, match=rf"strategy '{name}' does not fit"):
            apply_strategy(backbone, name)
    for name in ("lora", "dora", "rslora", "ia3", "loha", "lokr", "boft"):  # these wrap Conv2d
        assert supports(backbone, name) is None


def test_given_targets_are_peft_s_to_judge_and_other_layers_are_refused(tiny_dirs):
    backbone = backbone_of(tiny_dirs, "timm_resnet")
    assert supports(backbone, "vera", target_modules=["layer1.0.conv1"]) is None
    with pytest.raises(ValueError, match=r"vera wraps only Linear layers, and layer1\.0\.conv1 is a Conv2d"):
        apply_strategy(backbone, "vera", target_modules=["layer1.0.conv1"])
    vit = backbone_of(tiny_dirs, "timm_vit")
    adapted = apply_strategy(vit, "oft", target_modules=["fc1"])
    assert {n for n in trainable(adapted) if ".oft_R." in n} and all(
        ".fc1." in n for n in trainable(adapted) if "oft_" in n
    )


def test_oft_declares_convnets_unsupported(tiny_dirs):
    # hf ConvNeXt has Linear layers, fed channels-last 4-D maps that peft 0.21's OFT would unfold.
    reason = supports(backbone_of(tiny_dirs, "hf_convnext"), "oft")
    assert reason and "convnet" in reason and "boft" in reason
    assert supports(backbone_of(tiny_dirs, "hf_convnext"), "boft") is None


def test_fourierft_declares_more_frequencies_than_a_target_has_entries(tiny_dirs):
    backbone = backbone_of(tiny_dirs, "timm_swin")
    assert "n_frequency=1000 is more than the 768 spectrum entries" in supports(backbone, "fourierft")
    assert supports(backbone, "fourierft", n_frequency=64) is None
    adapted = apply_strategy(backbone, "fourierft", n_frequency=64)
    assert {n for n in trainable(adapted) if ".fourierft_spectrum." in n}


# --- adding a method --------------------------------------------------------------------------


@pytest.fixture
def hra(scratch_registry):
    """HRA (Householder reflections), a peft method the table leaves out, added the way any method is."""
    return register_adapter(
        "test_hra",
        peft.HRAConfig,
        description="HRA: a product of trained Householder reflections applied to the targets' weights",
        defaults={"r": 2},
        bounds={"r": Field(ge=1)},
        order=19,
        default_lr=1e-3,
    )


def test_a_new_adapter_method_is_one_register_adapter_call(hra, tiny_dirs, tmp_path):
    assert get_strategy("test_hra") is hra and "test_hra" in list_adapters()
    assert make_strategy_config("test_hra").r == 2 and "apply_GS" in hra.config_cls.model_fields
    with pytest.raises(ValueError, match=r"strategy\.r"):
        make_strategy_config("test_hra", {"r": 0})

    case = CASE["timm_vit"]
    adapted = apply_strategy(backbone_of(tiny_dirs, case.id), "test_hra")
    prefix = PEFT_TYPE_TO_PREFIX_MAPPING[adapter_method("test_hra").peft_type]
    names = trainable(adapted)
    head = {n for n in names if adapted.backbone.layout.role_of(n)[0] == "head"}
    reflections = {n for n in names if any(part.startswith(prefix) for part in n.split("."))}
    assert prefix == "hra_" and reflections and head and names == head | reflections

    # It trains: exactly the head and the reflections move.
    before = {k: v.clone() for k, v in adapted.model.state_dict().items()}
    optimizer = torch.optim.AdamW(adapted.param_groups(head_lr=1e-2, backbone_lr=1e-2))
    batch = case.batch()
    labels = torch.arange(len(batch["pixel_values"])) % NUM_LABELS
    adapted.model.train()
    for _ in range(2):
        F.cross_entropy(adapted.logits(batch), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    after = adapted.model.state_dict()
    assert {k for k, v in before.items() if not torch.equal(v, after[k])} == names

    adapted.model.eval()
    with torch.no_grad():
        expected = adapted.logits(batch)
    restored = load_adapted(save_adapted(adapted, tmp_path / "hra"))
    restored.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(restored.logits(batch), expected, rtol=0, atol=1e-5)


def test_register_adapter_refuses_unknown_fields_and_taken_names(scratch_registry):
    with pytest.raises(ValueError, match=r"defaults name \['rank'\].*LoraConfig"):
        register_adapter("test_bad", peft.LoraConfig, defaults={"rank": 4}, default_lr=1e-3, description="x")
    with pytest.raises(ValueError, match=r"aliases name \['alpah'\]"):
        register_adapter("test_bad", peft.LoraConfig, aliases={"a": "alpah"}, default_lr=1e-3, description="x")
    with pytest.raises(ValueError, match="refuses the defaults"):
        register_adapter("test_bad", peft.OFTConfig, defaults={"r": 4}, default_lr=1e-3, description="x")
    with pytest.raises(ValueError, match="'lora' is already registered"):
        register_adapter("lora", peft.LoraConfig, default_lr=1e-3, description="x")
    assert "test_bad" not in list_strategies()

"""Strategy options beyond the defaults: which blocks unfreeze, the BatchNorm policy, adapter methods and targets."""

from __future__ import annotations

import pytest
import torch
from peft.mapping import PEFT_TYPE_TO_PREFIX_MAPPING
from safetensors.torch import load_file
from tiny_models import IMAGE_SIZE, NUM_LABELS, TINY_BACKBONES
from torch.nn.modules.batchnorm import _BatchNorm

from peft_ladder import apply_strategy, load_adapted, load_backbone, save_adapted
from peft_ladder.strategies.adapters import adapter_method, list_adapters

CASE = {c.id: c for c in TINY_BACKBONES}
# A 4-block ViT, so "the last two blocks" differs from "every block"; random init, nothing downloaded.
VIT4 = dict(img_size=IMAGE_SIZE, patch_size=8, embed_dim=32, depth=4, num_heads=2, mlp_ratio=2.0)


@pytest.fixture
def vit4():
    return load_backbone("timm:vit_tiny_patch16_224", pretrained=False, num_labels=NUM_LABELS, model_kwargs=VIT4)


def trainable(adapted) -> set[str]:
    return {n for n, p in adapted.model.named_parameters() if p.requires_grad}


def perturb_trainable(model: torch.nn.Module, seed: int = 0) -> None:
    """Move every trainable tensor, so identity-initialised adapters (LoRA B = 0, IA3 = 1) do something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))


# --- partial_unfreeze -------------------------------------------------------------------------


def test_blocks_0_trains_the_first_block_and_head_only(vit4):
    lay = vit4.layout
    assert lay.num_blocks == 4 and lay.neck and lay.stem
    adapted = apply_strategy(vit4, "partial_unfreeze", blocks=[0])
    assert trainable(adapted) == set(lay.blocks[0].params) | set(lay.head_params())


def test_negative_block_index_counts_from_the_end(vit4):
    lay = vit4.layout
    adapted = apply_strategy(vit4, "partial_unfreeze", blocks=[-2])
    assert trainable(adapted) == set(lay.blocks[2].params) | set(lay.head_params())


def test_last_k_trains_the_last_blocks_neck_and_head(vit4):
    lay = vit4.layout
    adapted = apply_strategy(vit4, "partial_unfreeze", last_k=2)
    expected = set(lay.blocks[2].params) | set(lay.blocks[3].params) | set(lay.neck) | set(lay.head_params())
    assert trainable(adapted) == expected
    assert not trainable(adapted) & (set(lay.stem) | set(lay.blocks[0].params) | set(lay.blocks[1].params))


def test_include_stem_and_explicit_neck(vit4):
    lay = vit4.layout
    adapted = apply_strategy(vit4, "partial_unfreeze", blocks=[0], include_stem=True)
    assert trainable(adapted) == set(lay.stem) | set(lay.blocks[0].params) | set(lay.head_params())

    with_neck = apply_strategy(vit4, "partial_unfreeze", blocks=[0], include_neck=True)
    assert trainable(with_neck) == set(lay.blocks[0].params) | set(lay.neck) | set(lay.head_params())

    without_neck = apply_strategy(vit4, "partial_unfreeze", last_k=1, include_neck=False)
    assert trainable(without_neck) == set(lay.blocks[3].params) | set(lay.head_params())


@pytest.mark.parametrize("blocks", [[4], [-5], [0, 7]])
def test_out_of_range_block_index_is_a_value_error(vit4, blocks):
    with pytest.raises(ValueError, match="out of range"):
        apply_strategy(vit4, "partial_unfreeze", blocks=blocks)


def test_last_k_beyond_the_blocks_is_a_value_error(vit4):
    with pytest.raises(ValueError, match="last_k"):
        apply_strategy(vit4, "partial_unfreeze", last_k=5)
    with pytest.raises(ValueError, match="last_k"):
        apply_strategy(vit4, "partial_unfreeze", last_k=0)


# --- BatchNorm policy -------------------------------------------------------------------------


def _bn_buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{b}": buf.clone()
        for name, m in model.named_modules()
        if isinstance(m, _BatchNorm)
        for b, buf in m.named_buffers()
    }


def test_bn_policy_update_lets_frozen_statistics_move_and_saves_them(tiny_dirs, tmp_path):
    case = CASE["hf_resnet"]
    backbone = load_backbone(str(tiny_dirs[case.id]), num_labels=NUM_LABELS)
    adapted = apply_strategy(backbone, "linear_probe", bn_policy="update")
    assert adapted.report.locked_batchnorm == []
    assert trainable(adapted) == set(backbone.layout.head_params())

    before = _bn_buffers(adapted.model)
    assert before
    adapted.model.train()
    bns = [m for m in adapted.model.modules() if isinstance(m, _BatchNorm)]
    assert all(m.training for m in bns)
    with torch.no_grad():
        adapted.logits(case.batch())
    after = _bn_buffers(adapted.model)
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert all(not torch.equal(before[k], after[k]) for k in stats)

    adapted.model.eval()
    batch = case.batch(seed=1)
    with torch.no_grad():
        expected = adapted.logits(batch)
    folder = save_adapted(adapted, tmp_path / "lp_update")
    delta = load_file(f"{folder}/delta.safetensors")
    assert set(after) <= set(delta)
    assert set(delta) == set(after) | set(backbone.layout.head_params())

    restored = load_adapted(folder)
    assert restored.config.bn_policy == "update" and restored.report.locked_batchnorm == []
    for name, value in _bn_buffers(restored.model).items():
        torch.testing.assert_close(value, after[name], rtol=0, atol=0)
    restored.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(restored.logits(batch), expected, rtol=0, atol=1e-5)


def test_bn_policy_freeze_keeps_statistics_out_of_the_probe_delta(tiny_dirs, tmp_path):
    case = CASE["hf_resnet"]
    backbone = load_backbone(str(tiny_dirs[case.id]), num_labels=NUM_LABELS)
    adapted = apply_strategy(backbone, "linear_probe")
    bn_names = {n for n, m in adapted.model.named_modules() if isinstance(m, _BatchNorm)}
    assert set(adapted.report.locked_batchnorm) == bn_names
    before = _bn_buffers(adapted.model)
    adapted.model.train()
    with torch.no_grad():
        adapted.logits(case.batch())
    after = _bn_buffers(adapted.model)
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    delta = load_file(f"{save_adapted(adapted, tmp_path / 'lp_freeze')}/delta.safetensors")
    assert set(delta) == set(backbone.layout.head_params())


# --- adapters ----------------------------------------------------------------------------------


def test_lora_targets_that_match_nothing_are_a_value_error(tiny_dirs):
    backbone = load_backbone(str(tiny_dirs["timm_vit"]), num_labels=NUM_LABELS)
    with pytest.raises(ValueError, match="no_such_module"):
        apply_strategy(backbone, "lora", target_modules=["no_such_module"])


def test_lora_explicit_targets_replace_the_defaults(tiny_dirs):
    backbone = load_backbone(str(tiny_dirs["timm_vit"]), num_labels=NUM_LABELS)
    adapted = apply_strategy(backbone, "lora", target_modules=["fc1"])
    adapters = {n for n in trainable(adapted) if "lora_" in n}
    assert adapters and all(".mlp.fc1." in n for n in adapters)


@pytest.mark.parametrize("case_id", ["timm_vit", "hf_bert"])
@pytest.mark.parametrize("strategy", list_adapters())
def test_adapter_applies_and_round_trips(tiny_dirs, tmp_path, strategy, case_id):
    case = CASE[case_id]
    backbone = load_backbone(str(tiny_dirs[case_id]), num_labels=NUM_LABELS)
    method = adapter_method(strategy)
    # Asked before the adapters wrap them, as the strategy does.
    targets = backbone.default_targets(linear_only=method.linear_only)
    adapted = apply_strategy(backbone, strategy)
    names = trainable(adapted)
    prefix = PEFT_TYPE_TO_PREFIX_MAPPING[method.peft_type]
    adapters = {n for n in names if any(part.startswith(prefix) for part in n.split("."))}
    assert adapters
    # Adapters sit in the default targets only; everything else trainable is the head.
    assert all(any(f".{t}." in n for t in targets) for n in adapters)
    head = {n for n in names if adapted.backbone.layout.role_of(n)[0] == "head"}
    assert head and names == head | adapters

    perturb_trainable(adapted.model)
    adapted.model.eval()
    batch = case.batch(seed=2)
    with torch.no_grad():
        expected = adapted.logits(batch)
    restored = load_adapted(save_adapted(adapted, tmp_path / f"{strategy}-{case_id}"))
    assert restored.strategy == strategy and restored.config == adapted.config
    restored.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(restored.logits(batch), expected, rtol=0, atol=1e-5)
    assert trainable(restored) == names

"""Optimizer parameter groups: head vs backbone LR, no weight decay on 1-D tensors, layer-wise decay."""

from __future__ import annotations

import pytest
from tiny_models import NUM_LABELS

from peft_ladder import apply_strategy, load_backbone

HEAD_LR, BACKBONE_LR, WD = 1e-2, 1e-4, 0.05


def adapt(tiny_dirs, case_id: str, strategy: str, **options):
    return apply_strategy(load_backbone(str(tiny_dirs[case_id]), num_labels=NUM_LABELS), strategy, **options)


def group_of(groups) -> dict[str, dict]:
    """Parameter name -> the one group holding it (fails on a parameter in two groups)."""
    by_id: dict[int, dict] = {}
    for group in groups:
        for p in group["params"]:
            assert id(p) not in by_id, "a parameter is in two groups"
            by_id[id(p)] = group
    return by_id


@pytest.mark.parametrize("case_id", ["timm_vit", "hf_bert", "hf_resnet"])
@pytest.mark.parametrize("strategy", ["linear_probe", "lora", "bitfit", "partial_unfreeze", "full"])
def test_every_trainable_param_in_exactly_one_group(tiny_dirs, case_id, strategy):
    adapted = adapt(tiny_dirs, case_id, strategy)
    trainable = {id(p) for p in adapted.model.parameters() if p.requires_grad}
    for layer_decay in (None, 0.5):
        groups = adapted.param_groups(
            head_lr=HEAD_LR, backbone_lr=BACKBONE_LR, weight_decay=WD, layer_decay=layer_decay
        )
        assert set(group_of(groups)) == trainable  # frozen parameters in no group
        assert sum(len(g["params"]) for g in groups) == len(trainable)
        assert all(g["params"] for g in groups)


@pytest.mark.parametrize(("case_id", "strategy"), [("timm_vit", "full"), ("hf_bert", "full"), ("timm_vit", "lora")])
def test_head_and_backbone_lrs_and_weight_decay(tiny_dirs, case_id, strategy):
    adapted = adapt(tiny_dirs, case_id, strategy)
    lay = adapted.backbone.layout
    by_id = group_of(adapted.param_groups(head_lr=HEAD_LR, backbone_lr=BACKBONE_LR, weight_decay=WD))
    no_wd_names = set(getattr(adapted.backbone.model, "no_weight_decay", set)())
    for name, p in adapted.model.named_parameters():
        if not p.requires_grad:
            continue
        group = by_id[id(p)]
        is_head = lay.role_of(name)[0] == "head"
        assert group["lr"] == (HEAD_LR if is_head else BACKBONE_LR), name
        assert group["role"] == ("head" if is_head else "backbone")
        plain = name.removeprefix("base_model.model.")
        expect_no_wd = p.ndim <= 1 or plain in no_wd_names
        assert group["weight_decay"] == (0.0 if expect_no_wd else WD), name


def test_timm_no_weight_decay_names_get_none(tiny_dirs):
    adapted = adapt(tiny_dirs, "timm_vit", "full")
    assert {"pos_embed", "cls_token"} <= set(adapted.backbone.model.no_weight_decay())
    by_id = group_of(adapted.param_groups(head_lr=HEAD_LR, backbone_lr=BACKBONE_LR, weight_decay=WD))
    params = dict(adapted.model.named_parameters())
    for name in ("pos_embed", "cls_token"):
        assert params[name].ndim > 1  # not caught by the 1-D rule
        assert by_id[id(params[name])]["weight_decay"] == 0.0
    for name in ("blocks.0.attn.qkv.weight", "patch_embed.proj.weight"):
        assert by_id[id(params[name])]["weight_decay"] == WD
    for name in ("blocks.0.attn.qkv.bias", "blocks.0.norm1.weight", "norm.weight", "head.bias"):
        assert by_id[id(params[name])]["weight_decay"] == 0.0


@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_layer_decay_increases_lr_from_stem_to_last_block(tiny_dirs, strategy):
    adapted = adapt(tiny_dirs, "timm_vit", strategy)
    lay = adapted.backbone.layout
    n = lay.num_blocks
    by_id = group_of(adapted.param_groups(head_lr=HEAD_LR, backbone_lr=BACKBONE_LR, weight_decay=WD, layer_decay=0.5))
    lrs: dict[int, set[float]] = {}
    for name, p in adapted.model.named_parameters():
        if not p.requires_grad:
            continue
        role, layer_id = lay.role_of(name)
        lr = by_id[id(p)]["lr"]
        if role == "head":
            assert lr == HEAD_LR, name
        else:
            lrs.setdefault(layer_id, set()).add(lr)
    assert all(len(v) == 1 for v in lrs.values()), "one LR per layer"
    per_layer = {k: v.pop() for k, v in lrs.items()}
    ordered = [per_layer[k] for k in sorted(per_layer)]
    assert ordered == sorted(set(ordered)), "LR must increase strictly with depth"
    if strategy == "full":
        assert sorted(per_layer) == list(range(n + 2))  # stem, blocks 1..n, neck
        for layer_id, lr in per_layer.items():  # the documented rule: backbone_lr * decay ** (n + 1 - i)
            assert lr == pytest.approx(BACKBONE_LR * 0.5 ** (n + 1 - layer_id))
        assert per_layer[n + 1] == BACKBONE_LR
    else:
        assert sorted(per_layer) == list(range(1, n + 1))  # adapters live in the blocks only

"""The BatchNorm policy: pretrained rungs keep the running statistics they were loaded with (`frozen_stats`
under `auto`), so a deeper rung starts where the probe ended; the scratch control and `update` estimate theirs."""

from __future__ import annotations

import pytest
import torch
from tiny_models import NUM_LABELS, TINY_BACKBONES
from torch.nn.modules.batchnorm import _BatchNorm

from peft_ladder import apply_strategy, load_backbone

CONVNETS = [case for case in TINY_BACKBONES if case.id in ("timm_resnet", "hf_resnet")]


def running_stats(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{buf}": getattr(module, buf).clone()
        for name, module in model.named_modules()
        if isinstance(module, _BatchNorm)
        for buf in ("running_mean", "running_var")
    }


def train_mode_outputs(tiny_dirs, case, strategy: str, **options) -> tuple[dict, dict, torch.Tensor, torch.Tensor]:
    """Stats and logits before and after three train-mode forward passes (no optimizer step)."""
    backbone = load_backbone(str(tiny_dirs[case.id]), num_labels=NUM_LABELS)
    adapted = apply_strategy(backbone, strategy, **options)
    model = adapted.model
    batch = case.batch(n=8, seed=1)
    model.eval()
    with torch.no_grad():
        before_logits = adapted.logits(batch)
    before = running_stats(model)
    model.train()
    with torch.no_grad():
        for seed in range(3):
            adapted.logits(case.batch(n=8, seed=10 + seed))
    model.eval()
    with torch.no_grad():
        after_logits = adapted.logits(batch)
    return before, running_stats(model), before_logits, after_logits


@pytest.mark.parametrize("case", CONVNETS, ids=lambda c: c.id)
@pytest.mark.parametrize("strategy", ["full", "partial_unfreeze", "bitfit"])
def test_pretrained_rungs_keep_the_loaded_statistics_by_default(tiny_dirs, case, strategy):
    before, after, logits0, logits1 = train_mode_outputs(tiny_dirs, case, strategy)
    assert before and all(torch.equal(before[k], after[k]) for k in before)
    torch.testing.assert_close(logits0, logits1)  # no update: the model the probe head was fitted on


@pytest.mark.parametrize("case", CONVNETS, ids=lambda c: c.id)
def test_update_and_the_scratch_control_move_the_statistics(tiny_dirs, case):
    before, after, _, _ = train_mode_outputs(tiny_dirs, case, "full", bn_policy="update")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    before, after, _, _ = train_mode_outputs(tiny_dirs, case, "scratch")
    assert any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("case", CONVNETS, ids=lambda c: c.id)
def test_freeze_keeps_only_the_frozen_parts_statistics(tiny_dirs, case):
    backbone = load_backbone(str(tiny_dirs[case.id]), num_labels=NUM_LABELS)
    adapted = apply_strategy(backbone, "partial_unfreeze", last_k=1, bn_policy="freeze")
    trainable_bn = {
        name
        for name, module in adapted.model.named_modules()
        if isinstance(module, _BatchNorm) and any(p.requires_grad for p in module.parameters(recurse=False))
    }
    assert trainable_bn and trainable_bn.isdisjoint(adapted.report.locked_batchnorm)
    assert adapted.report.locked_batchnorm

"""Every registered strategy x every tiny backbone: what trains, what moves, what loads back."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny_models import NUM_LABELS, TINY_BACKBONES

from peft_ladder import apply_strategy, list_strategies, load_adapted, load_backbone, save_adapted

ADAPTER_MARKERS = ("lora_", "ia3_", "hada_", "lokr_")
CASES = [(s, b) for s in list_strategies() for b in TINY_BACKBONES]
IDS = [f"{s}-{b.id}" for s, b in CASES]


def adapt(tiny_dirs, strategy, case, **options):
    backbone = load_backbone(str(tiny_dirs[case.id]), num_labels=NUM_LABELS)
    return apply_strategy(backbone, strategy, **options)


def expected_trainable(adapted) -> set[str]:
    """The trainable set each strategy promises, computed from the layout independently of the strategy code."""
    lay = adapted.backbone.layout
    names = [n for n, _ in adapted.model.named_parameters()]
    head = {n for n in names if lay.role_of(n)[0] == "head" and ".original_module." not in n}
    strategy = adapted.strategy
    if strategy == "linear_probe":
        return head
    if strategy == "lora":
        return head | {n for n in names if any(m in n for m in ADAPTER_MARKERS)}
    if strategy == "bitfit":
        return head | {n for n in names if n.endswith(".bias")}
    if strategy == "partial_unfreeze":
        return head | set(lay.blocks[-1].params) | set(lay.neck)
    return set(names)


@pytest.mark.parametrize(("strategy", "case"), CASES, ids=IDS)
def test_trainable_set_is_the_promised_one(tiny_dirs, strategy, case):
    adapted = adapt(tiny_dirs, strategy, case)
    trainable = {n for n, p in adapted.model.named_parameters() if p.requires_grad}
    assert trainable == expected_trainable(adapted)
    assert set(adapted.report.trainable_names) == trainable
    assert adapted.report.trainable == sum(p.numel() for p in adapted.model.parameters() if p.requires_grad)
    if strategy == "lora":
        assert any(any(m in n for m in ADAPTER_MARKERS) for n in trainable)


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _train_steps(adapted, case, steps: int = 3) -> None:
    groups = adapted.param_groups(head_lr=1e-2, backbone_lr=1e-2, weight_decay=0.01)
    optimizer = torch.optim.AdamW(groups)
    adapted.model.train()
    batch = case.batch()
    labels = torch.arange(len(next(iter(batch.values())))) % NUM_LABELS
    for _ in range(steps):
        loss = F.cross_entropy(adapted.logits(batch), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


@pytest.mark.parametrize(("strategy", "case"), CASES, ids=IDS)
def test_steps_change_only_trainable_tensors(tiny_dirs, strategy, case):
    adapted = adapt(tiny_dirs, strategy, case)
    before = _snapshot(adapted.model)
    _train_steps(adapted, case)
    after = adapted.model.state_dict()
    params = dict(adapted.model.named_parameters())
    locked_buffers = {f"{m}.{b}" for m in adapted.report.locked_batchnorm for b in ("running_mean", "running_var")}
    for name, old in before.items():
        changed = not torch.equal(old, after[name])
        if name in params and params[name].requires_grad:
            assert changed, f"trainable {name} did not move"
        elif name in params:
            assert not changed, f"frozen {name} moved"
        elif name in locked_buffers:
            assert not changed, f"running statistics of frozen BatchNorm {name} moved"
    for name in adapted.report.locked_batchnorm:
        assert not adapted.model.get_submodule(name).training


@pytest.mark.parametrize(("strategy", "case"), CASES, ids=IDS)
def test_no_gradient_work_through_frozen_parts(tiny_dirs, strategy, case):
    """Backward stops at the first trainable parameter: frozen tensors never get a `.grad`, and what enters
    the first module holding a trainable parameter does not require grad (no gradient checkpointing here)."""
    adapted = adapt(tiny_dirs, strategy, case)
    entering: list[bool] = []  # per call, in execution order, of modules that hold a trainable parameter
    handles = [
        module.register_forward_pre_hook(
            lambda _m, args: entering.append(any(a.requires_grad for a in args if torch.is_tensor(a)))
        )
        for module in adapted.model.modules()
        if any(p.requires_grad for p in module.parameters(recurse=False))
    ]
    _train_steps(adapted, case, steps=1)
    for handle in handles:
        handle.remove()
    frozen = [n for n, p in adapted.model.named_parameters() if not p.requires_grad]
    assert all(dict(adapted.model.named_parameters())[n].grad is None for n in frozen)
    assert entering and not entering[0]
    assert all(not v.requires_grad for v in case.batch().values())


@pytest.mark.parametrize(("strategy", "case"), CASES, ids=IDS)
def test_save_then_load_gives_identical_logits(tiny_dirs, tmp_path, strategy, case):
    adapted = adapt(tiny_dirs, strategy, case)
    _train_steps(adapted, case)
    adapted.model.eval()
    batch = case.batch(seed=1)
    with torch.no_grad():
        expected = adapted.logits(batch)
    folder = save_adapted(adapted, tmp_path / "artifact")
    restored = load_adapted(folder)
    restored.model.eval()
    with torch.no_grad():
        got = restored.logits(batch)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert {n for n, p in restored.model.named_parameters() if p.requires_grad} == set(adapted.report.trainable_names)

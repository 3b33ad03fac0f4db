"""`train.gradient_checkpointing`: the blocks run again in the backward pass (so the activations were not kept),
and the gradients equal the run without it, for frozen inputs in front of adapters and of unfrozen blocks."""

from __future__ import annotations

import pytest
import torch
from tiny_models import TINY_BACKBONES

from peft_ladder import apply_strategy, load_backbone
from peft_ladder.backbones.grad_checkpointing import enable_gradient_checkpointing

CASES = [c for c in TINY_BACKBONES if c.id in ("hf_bert", "hf_deberta_v2", "hf_vit", "timm_vit", "timm_resnet")]


def _grads(case, folder, strategy: str, checkpointing: bool) -> tuple[dict[str, torch.Tensor], int]:
    torch.manual_seed(0)
    backbone = load_backbone(str(folder), num_labels=3)
    adapted = apply_strategy(backbone, strategy, **({"last_k": 1} if strategy == "partial_unfreeze" else {}))
    if checkpointing:
        enable_gradient_checkpointing(adapted.backbone)
    calls = []
    last_block = adapted.backbone.model.get_submodule(adapted.backbone.layout.blocks[-1].name)
    # A layer inside the last block: the recompute calls it again (transformers re-runs the block's `forward`,
    # which no hook on the block itself sees).
    layer = next(m for m in last_block.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)))
    handle = layer.register_forward_hook(lambda *_: calls.append(1))
    adapted.model.train()
    torch.manual_seed(1)  # the same dropout masks in both runs
    logits = adapted.logits(case.batch())
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0])).backward()
    handle.remove()
    grads = {n: p.grad.clone() for n, p in adapted.model.named_parameters() if p.grad is not None}
    return grads, len(calls)


@pytest.mark.parametrize("strategy", ["lora", "partial_unfreeze"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_checkpointing_recomputes_and_gives_the_same_gradients(case, strategy, tiny_dirs):
    folder = tiny_dirs[case.id]
    plain, plain_calls = _grads(case, folder, strategy, checkpointing=False)
    checked, checked_calls = _grads(case, folder, strategy, checkpointing=True)
    assert plain_calls == 1 and checked_calls == 2  # the last block ran again during backward: nothing was kept
    assert plain.keys() == checked.keys() and any("head" in n or "classifier" in n or "fc" in n for n in plain)
    for name in plain:
        torch.testing.assert_close(checked[name], plain[name], rtol=1e-4, atol=1e-6, msg=name)
    assert any(g.abs().sum() > 0 for n, g in checked.items() if "lora" in n or strategy == "partial_unfreeze")

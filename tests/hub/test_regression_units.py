"""A regression rung trains on the standardised target; every folder we write holds its head in the target's own
units, so the stock loader a user tries first (peft over the base, transformers, timm) predicts values they can
read, and `load_adapted` gives back the model exactly as it trained. A multi-label rung's folders give the same
logits to stock tools, with its problem_type. Stock calls run in a fresh process that never imports peft_ladder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_models import CASE_MODALITY

from peft_ladder import apply_strategy, export, load_adapted, load_backbone, save_adapted
from peft_ladder.target_scale import FOLDED_KEY
from peft_ladder.tasks import Task

pytestmark = pytest.mark.slow
TASK = Task("regression", target_mean=12.5, target_std=3.0)
MULTI_LABEL = Task("multi_label", threshold=0.35)
BASES = {"hf_bert": {"pooling": "pooler"}, "timm_resnet": {}}
STRATEGIES = ["lora", "full", "linear_probe"]
COLOURS = ["red", "green", "blue"]

STOCK = r"""
import json, sys, torch
from safetensors.torch import load_file

folder, base, kind, modality, inputs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], load_file(sys.argv[5])
labels = int(sys.argv[6])
with torch.no_grad():
    if modality == "image":
        import timm
        if kind == "adapter":
            from peft import PeftModel
            model = PeftModel.from_pretrained(timm.create_model(f"local-dir:{base}", pretrained=True, num_classes=labels), folder)
        else:
            model = timm.create_model(f"local-dir:{folder}", pretrained=True)
        out = model.eval()(inputs["pixel_values"])
    else:
        from transformers import AutoModelForSequenceClassification
        if kind == "adapter":
            from peft import PeftModel
            base_model = AutoModelForSequenceClassification.from_pretrained(
                base, num_labels=labels, ignore_mismatched_sizes=True
            )
            model = PeftModel.from_pretrained(base_model, folder)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(folder)
        out = model.eval()(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
assert not any(m.startswith("peft_ladder") for m in sys.modules), "a stock load imported peft_ladder"
print(json.dumps(out.reshape(-1).tolist()))
"""


def _inputs(case: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    if CASE_MODALITY[case] == "image":
        return {"pixel_values": torch.randn(4, 3, 32, 32, generator=g)}
    ids = torch.randint(1, 64, (4, 10), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _outputs(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        out = model.eval()(**inputs) if "input_ids" in inputs else model.eval()(inputs["pixel_values"])
    return (out.logits if hasattr(out, "logits") else out).reshape(-1)


def _stock(
    folder: Path, base: Path, kind: str, case: str, inputs: dict, tmp_path: Path, labels: int = 1
) -> torch.Tensor:
    save_file(inputs, str(tmp_path / "inputs.safetensors"))
    args = [str(folder), str(base), kind, CASE_MODALITY[case], str(tmp_path / "inputs.safetensors"), str(labels)]
    done = subprocess.run([sys.executable, "-c", STOCK, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.tensor(json.loads(done.stdout.strip().splitlines()[-1]))


def _rung(tiny_dirs, case: str, strategy: str, labels: list[str] = ("score",)):
    backbone = load_backbone(str(tiny_dirs[case]), label_names=list(labels), **BASES[case])
    adapted = apply_strategy(backbone, strategy)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a trained-looking rung: every trainable tensor moved
        for p in adapted.model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    return adapted


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("case", sorted(BASES))
def test_every_folder_holds_the_head_in_the_targets_units_and_loads_back_as_trained(
    tiny_dirs, tmp_path, case, strategy
):
    adapted = _rung(tiny_dirs, case, strategy)
    inputs = _inputs(case)
    standardised = _outputs(adapted.model, inputs)
    before = {k: v.clone() for k, v in adapted.model.state_dict().items()}
    folder = Path(save_adapted(adapted, tmp_path / "rung", extra={"task": TASK.to_dict()}))
    # Saving leaves the live model exactly as it was (it may keep training).
    after = adapted.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    meta = json.loads((folder / "peft_ladder.json").read_text())
    assert meta[FOLDED_KEY] is True
    in_units = standardised.double() * TASK.target_std + TASK.target_mean
    # load_adapted works on the standardised target again, as the run trained.
    torch.testing.assert_close(_outputs(load_adapted(folder).model, inputs), standardised, rtol=0, atol=1e-4)
    kind = meta["kind"]
    if kind == "delta":  # only the changed tensors: every stock loader refuses it (tests/hub/test_stock_loading.py)
        return
    stock = _stock(folder, tiny_dirs[case], kind, case, inputs, tmp_path)
    torch.testing.assert_close(stock.double(), in_units, rtol=0, atol=1e-3)
    if kind == "adapter":  # --no-merge keeps the adapter as written: the same units for stock peft
        unmerged = export(folder, tmp_path / "unmerged", merge=False)
        stock = _stock(unmerged, tiny_dirs[case], kind, case, inputs, tmp_path)
        torch.testing.assert_close(stock.double(), in_units, rtol=0, atol=1e-3)
        torch.testing.assert_close(
            _outputs(load_adapted(unmerged, base=str(tiny_dirs[case])).model, inputs), standardised, rtol=0, atol=1e-4
        )


def test_an_artifact_written_before_the_fold_is_read_as_it_was_saved(tiny_dirs, tmp_path):
    """No `head_in_target_units` in its `peft_ladder.json`: the head is standardised already, left as it is."""
    adapted = _rung(tiny_dirs, "hf_bert", "linear_probe")
    inputs = _inputs("hf_bert")
    standardised = _outputs(adapted.model, inputs)
    folder = Path(save_adapted(adapted, tmp_path / "rung", extra={"task": TASK.to_dict()}))
    delta = load_file(str(folder / "delta.safetensors"))
    head = [k for k in delta if k.endswith("classifier.weight")]
    assert head, list(delta)
    # Rewrite it as an older version did: the head as trained, no key (the weights manifest is recomputed).
    live = adapted.model.state_dict()
    save_file({k: live[k].contiguous() for k in delta}, str(folder / "delta.safetensors"), metadata={"format": "pt"})
    meta = json.loads((folder / "peft_ladder.json").read_text())
    del meta[FOLDED_KEY]
    from peft_ladder.artifact_checks import weights_manifest

    meta["weights"] = weights_manifest(folder)
    (folder / "peft_ladder.json").write_text(json.dumps(meta))
    torch.testing.assert_close(_outputs(load_adapted(folder).model, inputs), standardised, rtol=0, atol=1e-5)


@pytest.mark.parametrize("strategy", ["lora", "full"])
def test_a_multi_label_folder_gives_stock_tools_its_logits_and_problem_type(tiny_dirs, tmp_path, strategy):
    adapted = _rung(tiny_dirs, "hf_bert", strategy, COLOURS)
    inputs = _inputs("hf_bert")
    logits = _outputs(adapted.model, inputs)
    folder = Path(save_adapted(adapted, tmp_path / "rung", extra={"task": MULTI_LABEL.to_dict()}))
    assert FOLDED_KEY not in json.loads((folder / "peft_ladder.json").read_text())
    kind = json.loads((folder / "peft_ladder.json").read_text())["kind"]
    # The folder's config names the task: a stock pipeline then takes each label's sigmoid, not a softmax.
    assert json.loads((folder / "config.json").read_text())["problem_type"] == "multi_label_classification"
    stock = _stock(folder, tiny_dirs["hf_bert"], kind, "hf_bert", inputs, tmp_path, labels=len(COLOURS))
    torch.testing.assert_close(stock, logits, rtol=0, atol=1e-4)
    exported = export(folder, tmp_path / "export")
    assert json.loads((exported / "config.json").read_text())["problem_type"] == "multi_label_classification"
    stock = _stock(exported, tiny_dirs["hf_bert"], "full", "hf_bert", inputs, tmp_path, labels=len(COLOURS))
    torch.testing.assert_close(stock, logits, rtol=0, atol=1e-4)

"""A regression rung trains on the standardised target; every folder we write holds its head in the target's own
units, so the stock loader a user tries first (peft over the base, transformers, timm) predicts values they can
read, and `load_adapted` gives back the model exactly as it trained. A multi-label rung's folders give the same
logits to stock tools, with its problem_type. The folders are made once; every stock call runs in one fresh
process that never imports peft_ladder."""

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
from peft_ladder.artifact_checks import weights_manifest
from peft_ladder.target_scale import FOLDED_KEY
from peft_ladder.tasks import Task

pytestmark = pytest.mark.slow
REGRESSION = Task("regression", target_mean=12.5, target_std=3.0)
MULTI_LABEL = Task("multi_label", threshold=0.35)
BASES = {"hf_bert": {"pooling": "pooler"}, "timm_resnet": {}}
COLOURS = ["red", "green", "blue"]
# (task, base, strategy): every layout for regression on a text and an image family; multi-label on text.
ROWS = [("regression", case, strategy) for case in BASES for strategy in ("lora", "full", "linear_probe")]
ROWS += [("multi_label", "hf_bert", strategy) for strategy in ("lora", "full")]

STOCK = r"""
import json, sys, torch
from safetensors.torch import load_file

manifest, results = json.loads(open(sys.argv[1]).read()), {}
for key, row in manifest.items():
    folder, base, kind, labels = row["folder"], row["base"], row["kind"], row["labels"]
    inputs = load_file(row["inputs"])
    with torch.no_grad():
        if row["modality"] == "image":
            import timm
            if kind == "adapter":
                from peft import PeftModel
                created = timm.create_model(f"local-dir:{base}", pretrained=True, num_classes=labels)
                model = PeftModel.from_pretrained(created, folder)
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
    results[key] = out.reshape(-1).tolist()
assert not any(m.startswith("peft_ladder") for m in sys.modules), "a stock load imported peft_ladder"
open(sys.argv[2], "w").write(json.dumps(results))
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


def _rung(tiny_dirs, case: str, strategy: str, labels: list[str]):
    backbone = load_backbone(str(tiny_dirs[case]), label_names=labels, **BASES[case])
    adapted = apply_strategy(backbone, strategy)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a trained-looking rung: every trainable tensor moved
        for p in adapted.model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    return adapted


@pytest.fixture(scope="module")
def made(tmp_path_factory, tiny_dirs):
    """Each row's folders (the rung; an adapter's --no-merge export; a multi-label rung's export), what peft_ladder
    gives for them, and what stock tools give in one fresh process."""
    root = tmp_path_factory.mktemp("task_units")
    manifest, rows = {}, {}
    for task_name, case, strategy in ROWS:
        key = f"{task_name}-{case}-{strategy}"
        task, labels = (REGRESSION, ["score"]) if task_name == "regression" else (MULTI_LABEL, COLOURS)
        adapted = _rung(tiny_dirs, case, strategy, labels)
        inputs = _inputs(case)
        save_file(inputs, str(root / f"{key}.safetensors"))
        before = {k: v.clone() for k, v in adapted.model.state_dict().items()}
        folder = Path(save_adapted(adapted, root / key / "rung", extra={"task": task.to_dict()}))
        after = adapted.model.state_dict()
        meta = json.loads((folder / "peft_ladder.json").read_text())
        rows[key] = {
            "outputs": _outputs(adapted.model, inputs),
            "unchanged": all(torch.equal(before[k], after[k]) for k in before),
            "meta": meta,
            "folder": folder,
            "loaded": _outputs(load_adapted(folder).model, inputs),
        }
        kind, base = meta["kind"], str(tiny_dirs[case])
        common = {"base": base, "labels": len(labels), "modality": CASE_MODALITY[case]}
        common["inputs"] = str(root / f"{key}.safetensors")
        if kind != "delta":  # only the changed tensors: every stock loader refuses it (test_stock_loading.py)
            manifest[key] = {"folder": str(folder), "kind": kind, **common}
        if kind == "adapter" and task_name == "regression":  # --no-merge keeps the adapter as written
            unmerged = export(folder, root / key / "unmerged", merge=False)
            manifest[f"{key}-unmerged"] = {"folder": str(unmerged), "kind": kind, **common}
            rows[key]["unmerged_loaded"] = _outputs(load_adapted(unmerged, base=base).model, inputs)
        if task_name == "multi_label":
            exported = export(folder, root / key / "export")
            rows[key]["export_config"] = json.loads((exported / "config.json").read_text())
            manifest[f"{key}-export"] = {"folder": str(exported), "kind": "full", **common}
    (root / "manifest.json").write_text(json.dumps(manifest))
    done = subprocess.run(
        [sys.executable, "-c", STOCK, str(root / "manifest.json"), str(root / "out.json")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    stock = {k: torch.tensor(v) for k, v in json.loads((root / "out.json").read_text()).items()}
    return rows, stock


@pytest.mark.parametrize("case, strategy", [(c, s) for t, c, s in ROWS if t == "regression"])
def test_every_folder_holds_the_head_in_the_targets_units_and_loads_back_as_trained(made, case, strategy):
    rows, stock = made
    key = f"regression-{case}-{strategy}"
    row = rows[key]
    assert row["unchanged"]  # saving leaves the live model exactly as it was (it may keep training)
    assert row["meta"][FOLDED_KEY] is True
    standardised = row["outputs"]
    in_units = standardised.double() * REGRESSION.target_std + REGRESSION.target_mean
    # load_adapted works on the standardised target again, as the run trained.
    torch.testing.assert_close(row["loaded"], standardised, rtol=1e-5, atol=1e-4)
    if row["meta"]["kind"] == "delta":
        return
    torch.testing.assert_close(stock[key].double(), in_units, rtol=1e-5, atol=1e-3)
    if row["meta"]["kind"] == "adapter":
        torch.testing.assert_close(stock[f"{key}-unmerged"].double(), in_units, rtol=1e-5, atol=1e-3)
        torch.testing.assert_close(row["unmerged_loaded"], standardised, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("strategy", ["lora", "full"])
def test_a_multi_label_folder_gives_stock_tools_its_logits_and_problem_type(made, strategy):
    rows, stock = made
    key = f"multi_label-hf_bert-{strategy}"
    row = rows[key]
    assert FOLDED_KEY not in row["meta"]
    # The folder's config names the task: a stock pipeline then takes each label's sigmoid, not a softmax.
    assert json.loads((row["folder"] / "config.json").read_text())["problem_type"] == "multi_label_classification"
    assert row["export_config"]["problem_type"] == "multi_label_classification"
    torch.testing.assert_close(stock[key], row["outputs"], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(stock[f"{key}-export"], row["outputs"], rtol=1e-5, atol=1e-4)


def test_an_artifact_written_before_the_fold_is_read_as_it_was_saved(tiny_dirs, tmp_path):
    """No `head_in_target_units` in its `peft_ladder.json`: the head is standardised already, left as it is."""
    adapted = _rung(tiny_dirs, "hf_bert", "linear_probe", ["score"])
    inputs = _inputs("hf_bert")
    standardised = _outputs(adapted.model, inputs)
    folder = Path(save_adapted(adapted, tmp_path / "rung", extra={"task": REGRESSION.to_dict()}))
    delta = load_file(str(folder / "delta.safetensors"))
    assert any(k.endswith("classifier.weight") for k in delta), list(delta)
    # Rewrite it as an older version did: the head as trained, no key (the weights manifest recomputed).
    live = adapted.model.state_dict()
    save_file({k: live[k].contiguous() for k in delta}, str(folder / "delta.safetensors"), metadata={"format": "pt"})
    meta = json.loads((folder / "peft_ladder.json").read_text())
    del meta[FOLDED_KEY]
    meta["weights"] = weights_manifest(folder)
    (folder / "peft_ladder.json").write_text(json.dumps(meta))
    torch.testing.assert_close(_outputs(load_adapted(folder).model, inputs), standardised, rtol=0, atol=1e-5)

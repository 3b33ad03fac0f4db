"""`export`: every strategy on every tiny family becomes a standalone folder that stock transformers / timm load
in a fresh process with no peft_ladder imported, giving the unmerged model's logits; the cards' usage snippets
run as written against the local folders; shared files carry no absolute path of this machine."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tiny_models import NUM_LABELS, TINY_BACKBONES

from peft_ladder import apply_strategy, get_strategy, list_strategies, load_backbone, save_adapted
from peft_ladder.hub.export import export
from peft_ladder.hub.portable import shared_files
from peft_ladder.strategies import make_strategy_config

pytestmark = pytest.mark.slow
CASES = {c.id: c for c in TINY_BACKBONES}
BASE_STRATEGIES = ["linear_probe", "bitfit", "partial_unfreeze", "full", "scratch", "lora"]
# Every adapter method on one family of each kind (the strategy matrix runs them on all 18).
ADAPTER_FAMILIES = ["timm_vit", "timm_convnext", "hf_bert", "hf_vit"]

LOADER = r"""
import json, sys
import torch
from safetensors.torch import load_file
assert not any(m.startswith("peft_ladder") for m in sys.modules)
manifest = json.loads(open(sys.argv[1]).read())
inputs, expected = load_file(sys.argv[2]), load_file(sys.argv[3])
worst = {}
for key, item in manifest.items():
    folder, case = item["folder"], item["case"]
    batch = {name: inputs[f"{case}.{name}"] for name in item["inputs"]}
    if item["layout"] == "timm":
        import timm
        model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
        logits = model(batch["pixel_values"])
    elif item["modality"] == "image":
        from transformers import AutoModelForImageClassification
        model = AutoModelForImageClassification.from_pretrained(folder).eval()
        logits = model(pixel_values=batch["pixel_values"]).logits
    else:
        from transformers import AutoModelForSequenceClassification
        model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
        logits = model(**batch).logits
    worst[key] = float((logits.detach() - expected[key]).abs().max())
assert not any(m.startswith("peft_ladder") for m in sys.modules), "a stock load imported peft_ladder"
print(json.dumps(worst))
"""


def _pairs() -> list[tuple[str, str]]:
    adapters = [s for s in list_strategies() if get_strategy(s).artifact_kind == "adapter" and s != "lora"]
    pairs = [(s, c) for s in BASE_STRATEGIES for c in CASES]
    return pairs + [(s, c) for s in adapters for c in ADAPTER_FAMILIES]


def _perturb(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))


def test_every_export_loads_with_stock_libraries_and_gives_the_same_logits(tiny_dirs, tmp_path):
    manifest, inputs, expected = {}, {}, {}
    for i, (strategy, case_id) in enumerate(_pairs()):
        case = CASES[case_id]
        backbone = load_backbone(str(tiny_dirs[case_id]), num_labels=NUM_LABELS)
        if get_strategy(strategy)().supports(backbone, make_strategy_config(strategy)):
            continue  # declared unsupported (the strategy matrix checks the refusal)
        adapted = apply_strategy(backbone, strategy)
        _perturb(adapted.model, seed=i)
        adapted.model.eval()
        batch = case.batch(seed=4)
        key = f"{strategy}-{case_id}"
        with torch.no_grad():
            expected[key] = adapted.logits(batch).contiguous()
        inputs.update({f"{case_id}.{name}": value for name, value in batch.items()})
        artifact = save_adapted(adapted, tmp_path / "artifacts" / key)
        folder = export(artifact, tmp_path / "exports" / key)
        layout = "timm" if case_id.startswith("timm") else "transformers"
        manifest[key] = {
            "folder": str(folder),
            "case": case_id,
            "inputs": sorted(batch),
            "layout": layout,
            "modality": case.modality,
        }
    assert len(manifest) > 100
    save_file(inputs, str(tmp_path / "inputs.safetensors"))
    save_file(expected, str(tmp_path / "expected.safetensors"))
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "load.py").write_text(LOADER)
    done = subprocess.run(
        [sys.executable, str(tmp_path / "load.py"), str(tmp_path / "manifest.json")]
        + [str(tmp_path / "inputs.safetensors"), str(tmp_path / "expected.safetensors")],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    worst = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(worst) == set(manifest)
    bad = {k: v for k, v in worst.items() if v > 1e-4}
    assert not bad, bad
    # Nothing meant for sharing names a path of this machine.
    for folder in [*(tmp_path / "artifacts").iterdir(), *(tmp_path / "exports").iterdir()]:
        for file in shared_files(folder):
            if file.suffix in (".json", ".md", ".py", ".txt"):
                text = file.read_text(encoding="utf-8", errors="ignore")
                assert str(tmp_path) not in text and sys.prefix not in text, file


def _snippets(card: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", card, flags=re.S)


@pytest.mark.parametrize(
    ("case_id", "strategy", "pooling"),
    [
        ("hf_bert", "lora", "pooler"),  # stock peft + transformers
        ("hf_bert", "partial_unfreeze", "mean"),  # peft_ladder; export with remote code
        ("hf_vit", "lora", None),  # stock peft on a transformers image model
        ("timm_vit", "lora", None),  # stock peft on timm
        ("timm_resnet", "full", None),  # stock timm
        ("hf_vit", "full", None),  # stock pipeline
    ],
)
def test_every_card_snippet_runs_against_the_local_folder(tiny_dirs, tmp_path, case_id, strategy, pooling):
    base = tiny_dirs[case_id]
    options = {"pooling": pooling} if pooling else {}
    adapted = apply_strategy(load_backbone(str(base), num_labels=NUM_LABELS, **options), strategy)
    artifact = Path(save_adapted(adapted, tmp_path / "artifact"))
    exported = export(artifact, tmp_path / "export")
    programs = []
    for folder in (artifact, exported):
        snippets = _snippets((folder / "README.md").read_text())
        assert snippets, folder
        for code in snippets:
            code = code.replace('REPO = "REPO"', f"REPO = {str(folder)!r}")
            programs.append(re.sub(r'BASE = "[^"]*"', f"BASE = {str(base)!r}", code))
    # Each snippet in a namespace of its own, all in one fresh interpreter (one torch import, not six).
    runner = "import sys, json\nfor code in json.loads(sys.argv[1]):\n    exec(compile(code, 'snippet', 'exec'), {})\n"
    done = subprocess.run(
        [sys.executable, "-c", runner, json.dumps(programs)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        cwd=tmp_path,
    )
    assert done.returncode == 0, "a card snippet failed:\n" + "\n---\n".join(programs) + done.stderr[-2000:]

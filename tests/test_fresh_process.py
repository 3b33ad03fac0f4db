"""Every strategy's artifact loads in a fresh Python process (no pytest, no test helpers) to the same logits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tiny_models import NUM_LABELS, TINY_BACKBONES

from peft_ladder import apply_strategy, list_strategies, load_backbone, save_adapted

REPO_ROOT = Path(__file__).resolve().parents[1]
CASES = [c for c in TINY_BACKBONES if c.id in ("timm_vit", "hf_bert")]

LOADER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    import torch
    from safetensors.torch import load_file, save_file

    import peft_ladder

    assert "pytest" not in sys.modules and "tiny_models" not in sys.modules
    work = Path(sys.argv[1])
    manifest = json.loads((work / "manifest.json").read_text())
    inputs = load_file(str(work / "inputs.safetensors"))
    out = {}
    for key, entry in manifest.items():
        adapted = peft_ladder.load_adapted(entry["folder"])
        adapted.model.eval()
        batch = {name: inputs[f"{entry['case']}.{name}"] for name in entry["inputs"]}
        with torch.no_grad():
            out[key] = adapted.logits(batch).contiguous()
    save_file(out, str(work / "got.safetensors"))
    """
)


def _perturb_trainable(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))


def test_every_artifact_loads_in_a_fresh_process(tiny_dirs, tmp_path):
    manifest, inputs, expected = {}, {}, {}
    for case in CASES:
        batch = case.batch(seed=5)
        inputs.update({f"{case.id}.{name}": value for name, value in batch.items()})
        for i, strategy in enumerate(list_strategies()):
            backbone = load_backbone(str(tiny_dirs[case.id]), num_labels=NUM_LABELS)
            adapted = apply_strategy(backbone, strategy)
            _perturb_trainable(adapted.model, seed=i)  # saved state differs from the base checkpoint
            adapted.model.eval()
            key = f"{strategy}-{case.id}"
            with torch.no_grad():
                expected[key] = adapted.logits(batch).contiguous()
            folder = save_adapted(adapted, tmp_path / "artifacts" / key)
            manifest[key] = {"folder": folder, "case": case.id, "inputs": sorted(batch)}
    save_file(inputs, str(tmp_path / "inputs.safetensors"))
    save_file(expected, str(tmp_path / "expected.safetensors"))
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    script = tmp_path / "load_all.py"
    script.write_text(LOADER)

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_CURRENT_TEST")}
    env.update(PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        cwd=tmp_path,  # not the repo: only PYTHONPATH makes peft_ladder importable
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]

    got = load_file(str(tmp_path / "got.safetensors"))
    expected = load_file(str(tmp_path / "expected.safetensors"))
    assert set(got) == set(expected) == {f"{s}-{c.id}" for s in list_strategies() for c in CASES}
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-5, msg=lambda m, k=key: f"{k}: {m}")

"""Artifacts name their base by its Hub id. Offline, a Hub id resolves only from the Hugging Face cache: the
packaged all-MiniLM-L6-v2 is placed in a temporary cache under its Hub id (the huggingface_hub cache layout),
and stock peft loads the adapter from there, no loader patched."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from peft_ladder import load_backbone

HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
COMMIT = "0" * 40
TEXTS = ["open the socket and send bytes", "read the file line by line", "split the string on commas"]


@pytest.fixture
def hub_cache(tmp_path, minilm_dir) -> Path:
    """A Hugging Face cache holding the packaged MiniLM files under its Hub id, as a download would leave them."""
    cache = tmp_path / "hf_cache"
    repo = cache / f"models--{HUB_ID.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    shutil.copytree(minilm_dir, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return cache


def test_aliases_and_ids_name_their_hub_checkpoint(minilm_dir, tiny_dirs):
    assert load_backbone("minilm", num_labels=3).spec.hub_id == HUB_ID
    assert load_backbone(str(tiny_dirs["hf_bert"]), num_labels=3).spec.hub_id is None  # a local folder
    assert load_backbone("timm:resnet18", num_labels=3, pretrained=False).spec.hub_id is None  # random init


SAVE = """
import json, sys, torch
from pathlib import Path
from transformers import AutoTokenizer
from peft_ladder import apply_strategy, load_adapted, load_backbone, save_adapted
out = Path(sys.argv[1])
backbone = load_backbone("hf:HUB_ID", label_names=["network", "files", "text"], pooling="pooler")
assert backbone.spec.hub_id == "HUB_ID"
adapted = apply_strategy(backbone, "lora")
with torch.no_grad():
    for name, p in adapted.model.named_parameters():
        if "lora_B" in name:
            p.add_(0.01)
folder = Path(save_adapted(adapted, out / "adapter"))
batch = dict(AutoTokenizer.from_pretrained(str(folder))(TEXTS, padding=True, return_tensors="pt"))
adapted.model.eval()
with torch.no_grad():
    expected = adapted.logits(batch)
    restored = load_adapted(folder)  # peft_ladder's own loader: the base by its Hub id, from the cache
    restored.model.eval()
    assert float((restored.logits(batch) - expected).abs().max()) < 1e-5
torch.save({"batch": batch, "expected": expected}, out / "expected.pt")
"""

STOCK = """
import sys, torch
from transformers import AutoConfig
from peft import AutoPeftModelForSequenceClassification
folder = sys.argv[1] + "/adapter"
config = AutoConfig.from_pretrained(folder)  # the adapter folder's config.json holds the labels
model = AutoPeftModelForSequenceClassification.from_pretrained(
    folder, num_labels=config.num_labels, id2label=config.id2label, label2id=config.label2id, ignore_mismatched_sizes=True
).eval()
data = torch.load(sys.argv[1] + "/expected.pt", weights_only=True)
with torch.no_grad():
    got = model(**data["batch"]).logits
assert model.config.id2label[0] == "network"
assert not any(m.startswith("peft_ladder") for m in sys.modules)
print(float((got - data["expected"]).abs().max()))
"""


def test_a_hub_id_loads_from_the_cache_and_stock_peft_loads_the_adapter(hub_cache, tmp_path):
    env = {**os.environ, "HF_HUB_CACHE": str(hub_cache), "HF_HUB_OFFLINE": "1"}
    save = SAVE.replace("HUB_ID", HUB_ID).replace("TEXTS", repr(TEXTS))
    done = subprocess.run(
        [sys.executable, "-c", save, str(tmp_path)], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    folder = tmp_path / "adapter"
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == HUB_ID and config["task_type"] == "SEQ_CLS"
    assert "classifier" in config["modules_to_save"]
    assert json.loads((folder / "config.json").read_text())["id2label"]["0"] == "network"
    # How this machine loaded the tokenizer (offline, from the cache) is not saved with it.
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    assert not {"local_files_only", "is_local", "cache_dir", "token"} & set(tokenizer_config)
    done = subprocess.run(
        [sys.executable, "-c", STOCK, str(tmp_path)], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert float(done.stdout.strip().splitlines()[-1]) < 1e-5

"""The real all-MiniLM-L6-v2 checkpoint: layout, strategies, and an adapter stock peft loads."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from peft_ladder import apply_strategy, load_backbone, save_adapted

NUM_LABELS = 4
TEXTS = ["a cat sat on the mat", "the dog barked", "stocks fell sharply today", "it rained all weekend long"]


@pytest.fixture
def backbone(minilm_dir):
    return load_backbone(str(minilm_dir), num_labels=NUM_LABELS)


@pytest.fixture(scope="module")
def batch(minilm_dir) -> dict[str, torch.Tensor]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir))
    return dict(tokenizer(TEXTS, padding=True, truncation=True, max_length=32, return_tensors="pt"))


def test_layout_and_default_targets(backbone):
    assert (backbone.source, backbone.modality) == ("hf", "text")
    assert backbone.layout.num_blocks == 6
    assert [b.name for b in backbone.layout.blocks] == [f"bert.encoder.layer.{i}" for i in range(6)]
    assert backbone.default_targets() == ["query", "value"]
    assert backbone.layout.head_modules == ["classifier"]
    assert backbone.data_config["tokenizer"]


@pytest.mark.parametrize("strategy", ["linear_probe", "lora", "partial_unfreeze"])
def test_strategies_apply_by_local_path(backbone, batch, strategy):
    adapted = apply_strategy(backbone, strategy)
    lay = adapted.backbone.layout
    trainable = {n for n, p in adapted.model.named_parameters() if p.requires_grad}
    roles = {n: lay.role_of(n) for n in trainable}
    head = {n for n, (role, _) in roles.items() if role == "head"}
    assert trainable and head
    if strategy == "linear_probe":
        assert trainable == head
    elif strategy == "lora":
        adapters = trainable - head
        assert adapters and all("lora_" in n for n in adapters)
        assert {roles[n][1] for n in adapters} == set(range(1, 7))  # every block adapted
        assert adapted.report.pct < 5
    else:
        backbone_roles = {roles[n] for n in trainable - head}
        assert backbone_roles == {("block", 6)}  # last block; mean pooling has no pooler to train
    adapted.model.eval()
    with torch.no_grad():
        assert adapted.logits(batch).shape == (len(TEXTS), NUM_LABELS)


def test_pooling_is_the_one_the_checkpoint_declares(backbone, minilm_dir, batch):
    """all-MiniLM-L6-v2 is a sentence-transformers checkpoint: mean pooling, then L2 normalisation."""
    from sentence_transformers import SentenceTransformer

    assert (backbone.pooling.mode, backbone.pooling.normalize) == ("mean", True)
    assert backbone.pooling.source == "sentence-transformers"
    assert backbone.model.encoder.pooler is None  # unused, so not kept
    # The head's input is exactly the sentence embedding sentence-transformers computes.
    from peft_ladder.features import penultimate_features

    features, _ = penultimate_features(backbone, backbone.model, [batch])
    reference = SentenceTransformer(str(minilm_dir), device="cpu").encode(TEXTS, convert_to_tensor=True)
    torch.testing.assert_close(features, reference.cpu(), rtol=0, atol=1e-5)


def test_lora_artifact_loads_with_stock_peft(minilm_dir, batch, tmp_path):
    """With the pooler's pooling the model is exactly BertForSequenceClassification, adapter included."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    backbone = load_backbone(str(minilm_dir), num_labels=NUM_LABELS, pooling="pooler")
    adapted = apply_strategy(backbone, "lora")
    optimizer = torch.optim.AdamW(adapted.param_groups(head_lr=1e-2, backbone_lr=1e-2))
    adapted.model.train()
    loss = F.cross_entropy(adapted.logits(batch), torch.arange(len(TEXTS)) % NUM_LABELS)
    loss.backward()
    optimizer.step()
    adapted.model.eval()
    with torch.no_grad():
        expected = adapted.logits(batch)

    folder = save_adapted(adapted, tmp_path / "minilm_lora")
    meta = json.loads((tmp_path / "minilm_lora" / "peft_ladder.json").read_text())
    num_labels = len(meta["label2id"])
    assert num_labels == NUM_LABELS

    base = AutoModelForSequenceClassification.from_pretrained(str(minilm_dir), num_labels=num_labels)
    stock = PeftModel.from_pretrained(base, folder)
    stock.eval()
    with torch.no_grad():
        got = stock(**batch).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    # The step moved the adapter (LoRA B starts at zero), so the comparison covers it, not just the head.
    saved = load_file(f"{folder}/adapter_model.safetensors")
    lora_b = [v for k, v in saved.items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)

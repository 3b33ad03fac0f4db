"""The frozen evidence and the probe rung share one forward pass: the training rows go through the frozen
backbone once, and the probe trains on the head input the evidence already cached."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoTokenizer

import peft_ladder.ladder.climb as climb
from ladder.synthetic import FILLER, TARGET_KEYWORDS, keyword_ladder_config, keyword_rows, random_backbone, write_csv
from peft_ladder.backbones.backbone import Backbone
from peft_ladder.build import backbone_for
from peft_ladder.cache import Cut, cached_activations
from peft_ladder.data import encode_splits
from peft_ladder.ladder import Ladder


def _rows_in(batch: dict) -> list[tuple[int, ...]]:
    ids, mask = batch["input_ids"], batch["attention_mask"]
    return [tuple(i[m.bool()].tolist()) for i, m in zip(ids, mask)]


@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_training_rows_pass_the_frozen_backbone_once_and_the_probe_reuses_every_split(tmp_path, monkeypatch, precision):
    backbone = random_backbone(tmp_path / "backbone", seed=0)
    keywords = TARGET_KEYWORDS[:2]
    train_rows = keyword_rows(80, keywords, seed=1, filler=FILLER)
    scenario = SimpleNamespace(
        backbone=backbone,
        train_csv=write_csv(tmp_path / "train.csv", train_rows),
        validation_csv=write_csv(tmp_path / "validation.csv", keyword_rows(40, keywords, seed=2, filler=FILLER)),
    )
    config = keyword_ladder_config(
        scenario,
        tmp_path / "out",
        seed=0,
        epochs=1,
        rungs=[{"name": "linear_probe"}],
        multipliers=[1.0],
        scratch=False,
        baseline=False,
        max_seeds=1,
        probe={"max_rows": 50},  # a subsample: the other 30 training rows are extracted for the probe alone
    )
    cache = tmp_path / "cache"
    config = config.model_copy(
        update={
            "cache": config.cache.model_copy(update={"dir": str(cache)}),
            # Under autocast the frozen pass runs as the Engine does, so the probe still reuses its rows.
            "train": config.train.model_copy(update={"mixed_precision": precision}),
        }
    )
    # The family's pooling (pooler) is replaced by the comparison's choice: the reference model changes.
    monkeypatch.setattr(climb, "best_pooling", lambda scores, task="single_label": "mean")

    seen: list[tuple[int, ...]] = []
    logits = Backbone.logits

    def counting(self, model, batch):
        if self.spec.pretrained and "input_ids" in batch:  # not the random-init floor
            seen.extend(_rows_in(batch))
        return logits(self, model, batch)

    monkeypatch.setattr(Backbone, "logits", counting)
    ladder = Ladder(config)
    ladder.run()
    monkeypatch.undo()

    tokenizer = AutoTokenizer.from_pretrained(str(backbone))
    train = {tuple(tokenizer(r["text"], truncation=True, max_length=16)["input_ids"]) for r in train_rows}
    counts = sorted(seen.count(row) for row in train)
    assert counts == [1] * len(train), f"times each training row went through the frozen backbone: {counts}"
    record = json.loads(next((tmp_path / "out").rglob("metrics.json")).read_text())["cache"]
    assert record["used"]
    assert (record["hits"], record["misses"]) == (len(record["splits"]), 0), record
    assert ladder.config.backbone.pooling.mode == "mean"

    # The probe trained on the head input of its own model (mean pooling): the frozen pass's rows and the
    # extracted ones, each in its place, as a fresh extraction into another folder gives them.
    final = backbone_for(ladder.config, ladder.splits.label_names)
    shared = encode_splits(ladder.splits, final, ladder.config.data)
    split = {"train": shared.datasets["train"]}
    options = dict(
        preprocessing=shared.preprocessing, max_gib=1.0, batch_size=32, device=torch.device("cpu"), precision=precision
    )
    reused, record = cached_activations(final, Cut(None), split, shared.collate, cache_dir=str(cache), **options)
    fresh, _ = cached_activations(final, Cut(None), split, shared.collate, cache_dir=str(tmp_path / "a"), **options)
    assert record["hits"] == 1
    tolerance = {"rtol": 1e-5, "atol": 1e-6} if precision == "no" else {"rtol": 1e-2, "atol": 1e-2}
    torch.testing.assert_close(reused["train"], fresh["train"], **tolerance)
    assert json.loads(next((tmp_path / "out").rglob("metrics.json")).read_text())["precision"] == precision

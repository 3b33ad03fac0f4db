"""The activation cache: tails reproduce the model, runs reuse and invalidate entries, nothing half-written."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from datasets import Dataset
from tiny_models import NUM_LABELS, TINY_BACKBONES, VOCAB, make_color_images
from torch.utils.data import DataLoader

import peft_ladder.cache.cached as cached_module
from peft_ladder import load_adapted, load_backbone
from peft_ladder.cache import (
    Cut,
    KnownRows,
    TailUnsupported,
    activation_key,
    build_tail,
    cached_activations,
    fill_cache,
    run_prefix,
)
from peft_ladder.cache.store import to_tensors
from peft_ladder.config import load_config
from peft_ladder.data import encode_splits
from peft_ladder.engine import Engine

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "tiny" / "minilm_1layer.yaml"


@pytest.mark.parametrize("where", ["head", "last_block", "first_block"])
@pytest.mark.parametrize("case", TINY_BACKBONES, ids=[c.id for c in TINY_BACKBONES])
def test_tail_on_the_cut_prefix_reproduces_the_whole_model(tiny_dirs, case, where):
    backbone = load_backbone(str(tiny_dirs[case.id]), num_labels=NUM_LABELS)
    backbone.model.eval()
    block = {"head": None, "last_block": backbone.layout.num_blocks - 1, "first_block": 1}[where]
    cut = Cut(block)
    if block is not None and backbone.family.tail is None:  # the family table has no block tail for it
        with pytest.raises(TailUnsupported):
            build_tail(backbone, cut)
        return
    batch = case.batch()
    if "attention_mask" in batch:  # padded rows: the tail must respect the mask like the model does
        batch["attention_mask"][1, 7:] = 0
    tail = build_tail(backbone, cut)
    activations = run_prefix(backbone, batch, cut)
    assert not activations.requires_grad
    with torch.no_grad():
        expected = backbone.logits(backbone.model, batch)
        got = tail(activations, batch.get("attention_mask"))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def _config(tmp_path: Path, *overrides: str, name: str = "run"):
    return load_config(TINY, [f"output_dir={tmp_path / name}", f"cache.dir={tmp_path / 'cache'}", *overrides])


def _whole_model_predictions(engine: Engine, split: str = "validation") -> np.ndarray:
    """Predictions of the trained model run whole (no cache), on the engine's own split."""
    cfg = engine.config
    shared = encode_splits(engine.splits, engine.adapted.backbone, cfg.data)
    encoded, collate = shared.datasets, shared.collate
    model = engine.adapted.model.eval()
    preds = []
    with torch.inference_mode():
        for batch in DataLoader(encoded[split], batch_size=16, collate_fn=collate):
            preds.append(engine.adapted.backbone.logits(model, batch).argmax(-1))
    return torch.cat(preds).numpy()


def test_probe_trains_on_cached_features_reuses_them_and_its_artifact_agrees(tmp_path):
    first = Engine(_config(tmp_path, "train.epochs=3"))
    results = first.run()
    assert results.cache.used and results.cache.cut == "head input"
    assert (results.cache.hits, results.cache.misses) == (0, 3)
    assert len(list((tmp_path / "cache").glob("*.arrow"))) == 3
    np.testing.assert_array_equal(_whole_model_predictions(first), first.predictions["validation"][0])
    # The saved artifact is the whole model with the trained head.
    restored = load_adapted(tmp_path / "run" / "artifact")
    torch.testing.assert_close(
        restored.backbone.head_state_dict(), first.adapted.backbone.head_state_dict(), rtol=0, atol=0
    )

    again = Engine(_config(tmp_path, "train.epochs=3", name="again")).run()
    assert (again.cache.hits, again.cache.misses) == (3, 0)
    assert again.splits["validation"] == results.splits["validation"]

    # Another tokenization is another entry, not a stale hit.
    shorter = Engine(_config(tmp_path, "data.max_length=16", name="shorter")).run()
    assert (shorter.cache.hits, shorter.cache.misses) == (0, 3)
    # Other rows in a split: only that split is extracted again.
    fewer = Engine(_config(tmp_path, "data.max_samples.train=64", "train.epochs=3", name="fewer")).run()
    assert fewer.cache.misses >= 1 and fewer.cache.hits >= 1


def test_partial_unfreeze_trains_only_its_tail_on_the_cached_prefix(tmp_path):
    cfg = _config(
        tmp_path,
        "backbone.model_kwargs.num_hidden_layers=2",
        "strategy.name=partial_unfreeze",
        "strategy.last_k=1",
        "train.early_stopping.restore_best=false",  # the tail's trained weights, not a start it may not beat
    )
    engine = Engine(cfg)
    results = engine.run()
    assert results.cache.used and results.cache.cut == "input of block 1"
    fresh = load_backbone("minilm", label_names=engine.splits.label_names, model_kwargs={"num_hidden_layers": 2})
    fresh_params = dict(fresh.model.named_parameters())
    layout = engine.adapted.backbone.layout
    for name, param in engine.adapted.model.named_parameters():
        role = layout.role_of(name)[0]
        if param.requires_grad:
            assert role == "head" or layout.block_of(name) == 1 or role == "neck"
        else:
            assert param.grad is None, f"a gradient was allocated on frozen {name}"
            assert torch.equal(param.detach().cpu(), fresh_params[name]), f"frozen {name} moved"
    assert any(
        not torch.equal(p.detach().cpu(), fresh_params[n])
        for n, p in engine.adapted.model.named_parameters()
        if layout.block_of(n) == 1
    )
    np.testing.assert_array_equal(_whole_model_predictions(engine), engine.predictions["validation"][0])


def test_strategies_without_a_frozen_prefix_run_the_whole_model(tmp_path):
    for strategy in ("lora", "bitfit", "full"):
        results = Engine(_config(tmp_path, f"strategy.name={strategy}", name=strategy)).run()
        assert results.cache.used is False
    assert not list((tmp_path / "cache").glob("*.arrow"))


def _image_config(tmp_path: Path, *overrides: str):
    make_color_images(tmp_path / "images")
    return load_config(
        None,
        [
            f"output_dir={tmp_path / 'run'}",
            f"data.dataset={tmp_path / 'images'}",
            "data.validation_fraction=0.25",
            f"cache.dir={tmp_path / 'cache'}",
            *overrides,
        ],
        backbone={
            "name": "timm:vit_tiny_patch16_224",
            "pretrained": False,
            "model_kwargs": {"img_size": 32, "depth": 2},
        },
        strategy={"name": "linear_probe"},
        train={"epochs": 1, "batch_size": 6, "head_lr": 1e-3},
        log_with="none",
        overwrite_output_dir=True,
    )


def test_augmentation_turns_the_cache_off_and_image_caches_work_without_it(tmp_path):
    augmented = Engine(_image_config(tmp_path, "data.augment=true", "data.num_workers=2")).run()
    assert augmented.cache.used is False
    assert not list((tmp_path / "cache").glob("*.arrow"))
    plain = Engine(_image_config(tmp_path, "strategy.name=partial_unfreeze")).run()
    assert plain.cache.used and plain.cache.cut == "input of block 1"


def test_an_interrupted_extraction_leaves_no_entry(tmp_path, monkeypatch):
    real, calls = cached_module.run_prefix, []

    def dies_on_the_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(cached_module, "run_prefix", dies_on_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        Engine(_config(tmp_path, "train.eval_batch_size=16")).run()
    assert not list((tmp_path / "cache").glob("*.arrow")) and not list((tmp_path / "cache").glob(".*tmp"))
    monkeypatch.setattr(cached_module, "run_prefix", real)
    results = Engine(_config(tmp_path, name="after")).run()
    assert results.cache.misses == 3


def test_a_tail_that_disagrees_with_the_model_is_not_used(tmp_path, monkeypatch):
    def wrong_tail(backbone, cut):
        real = build_tail(backbone, cut)
        return lambda x, mask: real(x, mask) + 1.0  # shifted logits: the check must catch it

    monkeypatch.setattr(cached_module, "build_tail", wrong_tail)
    results = Engine(_config(tmp_path)).run()
    # The probe is then solved on features of the whole model, one pass over the training rows.
    assert results.cache.used is False and results.stopping.converged


def _token_rows(n: int) -> tuple[Dataset, Any]:
    """`n` unpadded token rows of varying length and a collate that pads them (with an attention mask)."""
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, 10, (n,), generator=g).tolist()
    rows = [torch.randint(1, VOCAB, (k,), generator=g).tolist() for k in lengths]
    ds = Dataset.from_dict({"input_ids": rows, "labels": [i % NUM_LABELS for i in range(n)]})

    def collate(items: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in items)
        ids = torch.tensor([r["input_ids"] + [0] * (width - len(r["input_ids"])) for r in items])
        mask = torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in items])
        return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([r["labels"] for r in items])}

    return ds, collate


def test_known_rows_are_stored_in_their_places_and_only_the_others_run(tiny_dirs, tmp_path, monkeypatch):
    """The ladder's frozen pass hands its training rows' head input to the probe's cache (`KnownRows`)."""
    backbone = load_backbone(str(tiny_dirs["hf_bert"]), num_labels=NUM_LABELS)
    ds, collate = _token_rows(11)
    options = dict(preprocessing={}, max_gib=1.0, batch_size=4, device=torch.device("cpu"))
    plain, _ = cached_activations(backbone, Cut(None), {"train": ds}, collate, cache_dir=str(tmp_path / "a"), **options)
    expected = plain["train"]["activations"].clone()
    at = [1, 2, 7]
    expected[at] += 1.0  # a mark: the known rows must be stored as given, not computed again

    real, ran = cached_module.run_prefix, []

    def counting(backbone, batch, cut):
        ran.append(len(batch["input_ids"]))
        return real(backbone, batch, cut)

    monkeypatch.setattr(cached_module, "run_prefix", counting)
    labels = torch.tensor(ds["labels"])
    for folder, rows in [("b", at), ("c", list(range(len(ds))))]:
        ran.clear()
        known = {"train": KnownRows(rows, expected[rows], labels[rows])}
        entries, record = fill_cache(
            backbone, Cut(None), {"train": ds}, collate, cache_dir=str(tmp_path / folder), known=known, **options
        )
        stored = to_tensors(*entries["train"])
        torch.testing.assert_close(stored["activations"], expected, rtol=1e-5, atol=1e-6)
        assert stored["labels"].tolist() == ds["labels"] and record["misses"] == 1
        assert sum(ran) == len(ds) - len(rows)
        if folder == "c":
            torch.testing.assert_close(stored["activations"], expected, rtol=0, atol=0)


def test_the_pooling_is_part_of_the_head_input_key(tiny_dirs):
    """Mean and cls over the same encoder are different head inputs; where the choice came from is not."""
    ds, _ = _token_rows(2)
    folder = str(tiny_dirs["hf_bert"])

    def key(backbone, block: int | None = None) -> str:  # the same weights digest: only the pooling may differ
        return activation_key(backbone, Cut(block), "train", ds, weights="w", preprocessing={}, precision="no")

    cls, mean = (load_backbone(folder, num_labels=NUM_LABELS, pooling=p) for p in ("cls", "mean"))
    assert key(cls) != key(mean)
    before = key(mean)
    mean.pooling = replace(mean.pooling, source="probe")  # what the ladder records once its comparison chose
    assert key(mean) == before
    assert key(cls, 1) == key(mean, 1)  # a block's input does not depend on the pooling


@pytest.mark.parametrize(
    ("strategy", "cut"), [("linear_probe", "head input"), ("partial_unfreeze", "input of block 1")]
)
@pytest.mark.parametrize("tail_is_right", [True, False], ids=["right tail", "wrong tail"])
def test_under_bf16_autocast_a_right_tail_is_used_and_a_wrong_one_refused(
    tmp_path, monkeypatch, strategy, cut, tail_is_right
):
    """The rows are extracted under the run's autocast and the tail trains under it: the check runs the whole model
    under it too, and allows bf16's rounding, which moves a row's result from one batch shape to another (the rows
    were extracted 32 at a time and are checked 8 at a time). Checked in float32 against bf16 rows, a right tail
    of the real 6-block MiniLM was 2.3e-2 away and refused (the whole model then ran every step); a float32
    tolerance refused this one (6e-5 apart). A tail off by a tenth of the logits is still refused."""
    options = ["strategy.last_k=1"] if strategy == "partial_unfreeze" else []
    if not tail_is_right:
        build = cached_module.build_tail

        def off_by_a_tenth(backbone, at):
            tail = build(backbone, at)
            return lambda x, mask: tail(x, mask) * 1.1

        monkeypatch.setattr(cached_module, "build_tail", off_by_a_tenth)
    cfg = _config(
        tmp_path,
        "backbone.model_kwargs.num_hidden_layers=2",
        f"strategy.name={strategy}",
        *options,
        "train.mixed_precision=bf16",
    )
    results = Engine(cfg).run()
    assert results.precision == "bf16"
    if tail_is_right:
        assert results.cache.used and results.cache.cut == cut, results.cache
    else:
        assert not results.cache.used and "validation" in results.splits, results.cache  # the whole model ran

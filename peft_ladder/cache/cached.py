"""Train on cached activations of the frozen part: plan the cut, fill the cache, check the tail.

`linear_probe` caches the head's input (the penultimate features); `partial_unfreeze` caches the input
of its first trainable block. Training then runs only the head or the trainable tail. Cached
activations are the frozen part in eval mode (no dropout there), which is what a frozen feature
extractor is; the trainable tail keeps its dropout.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from datasets import Dataset
from torch.utils.data import DataLoader

from peft_ladder.backbones.backbone import Backbone
from peft_ladder.cache.fingerprint import cache_key, table_digest, weights_digest
from peft_ladder.cache.store import ActivationStore, StoredMeta, TooLarge, default_cache_dir, to_tensors
from peft_ladder.cache.tail import Cut, TailUnsupported, build_tail, run_prefix
from peft_ladder.strategies.base import AdaptedModel

logger = logging.getLogger(__name__)

# The tail must reproduce the uncut model's logits to this tolerance (relative to their scale) on real rows.
_CHECK_ROWS, _CHECK_RTOL = 8, 1e-3


def plan_cut(adapted: AdaptedModel, *, enabled: bool, prefix: bool, augment: bool) -> tuple[Cut | None, str]:
    """Where the frozen part of `adapted` ends, or None and why nothing can be cached."""
    backbone, layout = adapted.backbone, adapted.backbone.layout
    if not enabled:
        return None, "cache.enabled is false"
    if augment and backbone.modality == "image":
        return None, "data.augment is on: every epoch sees new inputs, so the backbone runs every step"
    if adapted.config.bn_policy == "update" and any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in backbone.model.modules()
    ):
        return None, "bn_policy=update moves frozen BatchNorm statistics every step"
    trained = [n for n in adapted.report.trainable_names if layout.role_of(n)[0] != "head"]
    if not trained:
        return Cut(None), "frozen backbone: the head trains on cached features"
    if not prefix:
        return None, "cache.prefix is false"
    if adapted.model is not backbone.model:
        return None, f"{adapted.strategy} wraps the model (adapters); no frozen prefix to cache"
    if any(layout.role_of(n)[0] == "stem" for n in trained):
        return None, "the stem trains: nothing before it is frozen"
    blocks = [layout.block_of(n) for n in trained if layout.role_of(n)[0] == "block"]
    if not blocks:
        return None, "only parts after the blocks train; no tail runner starts there"
    first = min(blocks)
    if first == 0:
        return None, "block 0 trains: nothing before it is frozen"
    return Cut(first), f"blocks 0..{first - 1} frozen: the tail from block {first} trains on their cached output"


class CachedTail(nn.Module):
    """What trains when the frozen part is cached: the model's tail after the cut, as one module so that
    Accelerate (DDP, mixed precision) wraps it like a model. Its parameters are the whole model's; the
    frozen ones get no gradient."""

    def __init__(self, model: nn.Module, tail: Any):
        super().__init__()
        self.model = model
        object.__setattr__(self, "_tail", tail)

    def forward(self, activations: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self._tail(activations, attention_mask)


class _Rows(torch.utils.data.Dataset):
    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors["labels"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}


def _collate(rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    batch = {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
    if "attention_mask" in batch:  # token rows: trim the split-wide padding to this batch's longest row
        width = int(batch["attention_mask"].sum(1).max())
        batch["activations"] = batch["activations"][:, :width]
        batch["attention_mask"] = batch["attention_mask"][:, :width]
    return batch


def cached_logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The engine's logits function for a (possibly wrapped) `CachedTail`."""
    return model(batch["activations"], batch.get("attention_mask"))


@dataclass
class CachedData:
    """Cached splits ready to train on, and what the cache did (for the run record)."""

    cut: Cut
    datasets: dict[str, _Rows]
    collate: Any
    tail: CachedTail
    record: dict[str, Any] = field(default_factory=dict)


def build_cached_data(
    adapted: AdaptedModel,
    cut: Cut,
    encoded: dict[str, Dataset],
    collate: Any,
    *,
    preprocessing: dict[str, Any],
    cache_dir: str | None,
    max_gib: float,
    batch_size: int,
    device: torch.device,
    precision: str = "no",
) -> CachedData:
    """Fill (or reuse) the cache of every split for `cut` and return the splits ready to train on.

    Raises:
        TailUnsupported: the family has no tail for this cut, the tail does not reproduce the model,
            or the activations would be larger than `max_gib`. The caller trains the whole model.
    """
    backbone = adapted.backbone
    tail = build_tail(backbone, cut)  # before any extraction: an unsupported family costs nothing
    tensors, record = cached_activations(
        backbone,
        cut,
        encoded,
        collate,
        preprocessing=preprocessing,
        cache_dir=cache_dir,
        max_gib=max_gib,
        batch_size=batch_size,
        device=device,
        precision=precision,
    )
    _check_tail(backbone, tail, encoded["validation"], collate, tensors["validation"], device)
    return CachedData(cut, {n: _Rows(t) for n, t in tensors.items()}, _collate, CachedTail(adapted.model, tail), record)


def cached_activations(
    backbone: Backbone,
    cut: Cut,
    encoded: dict[str, Dataset],
    collate: Any,
    *,
    preprocessing: dict[str, Any],
    cache_dir: str | None,
    max_gib: float,
    batch_size: int,
    device: torch.device,
    precision: str = "no",
) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """The activations at `cut` of every split in `encoded`, from the cache or extracted into it.

    Returns:
        (split -> {"activations", "labels"[, "attention_mask"]} tensors, a record of hits and time).

    Raises:
        TailUnsupported: the activations would be larger than `max_gib`.
    """
    start = time.perf_counter()
    store = ActivationStore(cache_dir or default_cache_dir())
    weights = weights_digest(backbone.model, backbone.layout.head_modules)
    tensors, hits = {}, []
    for name, ds in encoded.items():
        key = cache_key(
            revision=backbone.spec.revision,
            weights=weights,
            cut=cut.describe(),
            preprocessing=preprocessing,
            split=name,
            data=table_digest(ds),
            precision=precision,
        )
        found = store.load(key)
        hits.append(found is not None)
        if found is None:
            try:
                found = _extract(store, key, backbone, cut, ds, collate, batch_size, device, precision, max_gib)
            except TooLarge as err:
                raise TailUnsupported(str(err)) from None
        tensors[name] = to_tensors(*found)
    record = {
        "cut": cut.describe(),
        "splits": {name: len(t["labels"]) for name, t in tensors.items()},
        "hits": sum(hits),
        "misses": len(hits) - sum(hits),
        "seconds": time.perf_counter() - start,
        "dir": str(store.root),
    }
    return tensors, record


def _extract(
    store: ActivationStore,
    key: str,
    backbone: Backbone,
    cut: Cut,
    ds: Dataset,
    collate: Any,
    batch_size: int,
    device: torch.device,
    precision: str,
    max_gib: float,
) -> tuple[Dataset, StoredMeta]:
    model = backbone.model
    was_training = model.training
    model.eval()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    state: dict[str, StoredMeta] = {}

    def batches():
        loader = DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate)
        for batch in loader:
            inputs = {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                x = run_prefix(backbone, inputs, cut).float().cpu()
            mask = batch.get("attention_mask")
            tokens = mask is not None and x.dim() == 3 and x.shape[:2] == mask.shape
            rows = [x[i][mask[i].bool()] for i in range(len(x))] if tokens else list(x)  # real tokens only
            if not state:
                shape = list(x.shape[2:] if tokens else x.shape[1:])
                describe = f"{backbone.spec.name} {cut.describe()}"
                state["meta"] = StoredMeta(row_shape=shape, tokens=tokens, rows=0, describe=describe)
            yield {
                "activations": [r.reshape(-1).numpy() for r in rows],
                "length": [r.shape[0] if tokens else 0 for r in rows],
                "labels": batch["labels"].tolist(),
            }

    try:
        logger.info("cache: extracting %s of %s for %d rows", cut.describe(), backbone.spec.name, len(ds))
        return store.write(key, batches(), lambda _first: state["meta"], len(ds), max_gib * 2**30)
    finally:
        model.train(was_training)


@torch.inference_mode()
def _check_tail(
    backbone: Backbone, tail: Any, ds: Dataset, collate: Any, cached: dict[str, torch.Tensor], device: torch.device
) -> None:
    """The tail on cached rows must give the uncut model's logits; otherwise the cache is not used."""
    model = backbone.model
    was_training = model.training
    model.eval()
    try:
        n = min(_CHECK_ROWS, len(ds))
        batch = collate([ds[i] for i in range(n)])
        full = backbone.logits(model, {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}).float()
        rows = _collate([{k: v[i] for k, v in cached.items()} for i in range(n)])
        rows = {k: v.to(device) for k, v in rows.items()}
        cut_logits = tail(rows["activations"], rows.get("attention_mask")).float()
    finally:
        model.train(was_training)
    diff = (full - cut_logits).abs().max().item()
    if diff > _CHECK_RTOL * max(1.0, full.abs().max().item()):
        raise TailUnsupported(f"the cached tail differs from the whole model by {diff:.2e} on validation rows")

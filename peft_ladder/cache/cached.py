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
from peft_ladder.io import disk_full_is_a_user_error
from peft_ladder.precision import autocast
from peft_ladder.strategies.base import AdaptedModel
from peft_ladder.tasks import IGNORE

logger = logging.getLogger(__name__)

# The tail must reproduce the uncut model's logits on real rows to `atol + rtol * max |logit|`. In float32 the two
# sum in other orders (1e-3 leaves room for a long encoder). Under bf16 autocast the CPU's kernels block their
# sums by the batch's shape, so one row's result moves by bf16 roundings from one batch to another (MiniLM's
# pooled features: 9e-5 apart at batch 8 against 16, identical in float32): torch.testing's bfloat16 rtol. A
# wrong tail (another cut, a missing norm) is off by the logits' own scale.
_CHECK_ROWS, _CHECK_ATOL = 8, 1e-5
_CHECK_RTOL = {"bf16": 1.6e-2}
_CHECK_RTOL_DEFAULT = 1e-3


def cache_refusal(backbone: Backbone, *, enabled: bool, augment: bool, bn_policy: str) -> str | None:
    """Why no part of `backbone` can be cached, whatever trains; None when a frozen part could be."""
    if not enabled:
        return "cache.enabled is false"
    if augment and backbone.modality == "image":
        return "data.augment is on: every epoch sees new inputs, so the backbone runs every step"
    if bn_policy == "update" and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in backbone.model.modules()):
        return "bn_policy=update moves frozen BatchNorm statistics every step"
    return None


def plan_cut(adapted: AdaptedModel, *, enabled: bool, prefix: bool, augment: bool) -> tuple[Cut | None, str]:
    """Where the frozen part of `adapted` ends, or None and why nothing can be cached."""
    backbone, layout = adapted.backbone, adapted.backbone.layout
    refusal = cache_refusal(backbone, enabled=enabled, augment=augment, bn_policy=adapted.config.bn_policy)
    if refusal:
        return None, refusal
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
        if "word_labels" in batch:  # a tagger's labels are per token, aligned with the activations
            batch["labels"] = batch["labels"][:, :width]
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
    _check_tail(backbone, tail, encoded["validation"], collate, tensors["validation"], device, precision)
    return CachedData(cut, {n: _Rows(t) for n, t in tensors.items()}, _collate, CachedTail(adapted.model, tail), record)


@dataclass
class KnownRows:
    """Rows of a split whose activations are already computed (the ladder's frozen pass holds the head input of
    its training subsample): they are stored as they are, and only the other rows run through the model.

    Attributes:
        rows: row indices in the split.
        activations: [len(rows), *row_shape], float32, computed like an extraction at the same precision (fixed
            shape rows: not token sequences).
        labels: [len(rows)].
    """

    rows: list[int]
    activations: torch.Tensor
    labels: torch.Tensor


def activation_key(
    backbone: Backbone,
    cut: Cut,
    split: str,
    ds: Dataset,
    *,
    weights: str,
    preprocessing: dict[str, Any],
    precision: str,
) -> str:
    """The cache key of `split`'s activations at `cut`.

    Args:
        weights: `weights_digest` of the backbone without its head (computed once for every split).
    """
    parts: dict[str, Any] = {
        "revision": backbone.spec.revision,
        "weights": weights,
        "cut": cut.describe(),
        "preprocessing": preprocessing,
        "split": split,
        "data": table_digest(ds),
        "precision": precision,
    }
    if cut.block is None:
        # The head's input is the pooled vector, and a pooling has no weights: mean and cls over the same
        # encoder must not share an entry. Where the choice came from (`source`) changes nothing computed.
        spec = backbone.pooling
        parts["pooling"] = None if spec is None else {"mode": spec.mode, "normalize": spec.normalize}
    return cache_key(**parts)


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
    entries, record = fill_cache(
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
    start = time.perf_counter()
    tensors = {name: to_tensors(*found) for name, found in entries.items()}
    record["seconds"] += time.perf_counter() - start
    return tensors, record


def fill_cache(
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
    known: dict[str, KnownRows] | None = None,
) -> tuple[dict[str, tuple[Dataset, StoredMeta]], dict[str, Any]]:
    """Make sure every split in `encoded` has its cache entry at `cut`, extracting the missing ones.

    Args:
        known: per split, rows already computed; only the split's other rows run through the model.

    Returns:
        (split -> the stored rows and what they hold, a record of hits, misses and time).

    Raises:
        TailUnsupported: the activations would be larger than `max_gib`, or `known` rows are not shaped like the
            rows the model gives.
    """
    start = time.perf_counter()
    store = ActivationStore(cache_dir or default_cache_dir())
    weights = weights_digest(backbone.model, backbone.layout.head_modules)
    entries, hits = {}, []
    for name, ds in encoded.items():
        key = activation_key(backbone, cut, name, ds, weights=weights, preprocessing=preprocessing, precision=precision)
        found = store.load(key)
        hits.append(found is not None)
        if found is None:
            given = (known or {}).get(name)
            try:
                found = _extract(store, key, backbone, cut, ds, collate, batch_size, device, precision, max_gib, given)
            except TooLarge as err:
                raise TailUnsupported(str(err)) from None
        entries[name] = found
    record = {
        "cut": cut.describe(),
        "splits": {name: meta.rows for name, (_, meta) in entries.items()},
        "hits": sum(hits),
        "misses": len(hits) - sum(hits),
        "seconds": time.perf_counter() - start,
        "dir": str(store.root),
    }
    return entries, record


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
    known: KnownRows | None = None,
) -> tuple[Dataset, StoredMeta]:
    """Run the model on every row of `ds` not in `known` and write all rows, in order, under `key`."""
    model = backbone.model
    was_training = model.training
    model.eval()
    given = {} if known is None else {row: k for k, row in enumerate(known.rows)}
    todo = [i for i in range(len(ds)) if i not in given]
    # Without known rows these are the plain contiguous batches of a DataLoader over `ds`.
    chunks = [todo[s : s + batch_size] for s in range(0, len(todo), batch_size)]
    describe = f"{backbone.spec.name} {cut.describe()}"

    state: dict[str, StoredMeta] = {}
    if known is not None and not todo:
        shape = list(known.activations.shape[1:])
        state["meta"] = StoredMeta(row_shape=shape, tokens=False, rows=0, describe=describe)
    # row -> (activations, tokens, label, a tagger's word tags) until written
    computed: dict[int, tuple[torch.Tensor, int, Any, list[int] | None]] = {}
    written = 0

    def ready() -> dict[str, list]:
        """The rows from `written` on that are available, in order (known rows fill their own places)."""
        nonlocal written
        out: dict[str, list] = {"activations": [], "length": [], "labels": []}
        while written < len(ds) and (written in computed or written in given):
            if written in given:
                k = given[written]
                row, length, label, words = known.activations[k], 0, known.labels[k].tolist(), None
            else:
                row, length, label, words = computed.pop(written)
            out["activations"].append(row.reshape(-1).numpy())
            out["length"].append(length)
            out["labels"].append(label)
            if words is not None:
                out.setdefault("word_labels", []).append(words)
            written += 1
        return out

    def batches():
        loader = DataLoader(ds, batch_sampler=chunks, collate_fn=collate)
        for chunk, batch in zip(chunks, loader):
            inputs = {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}
            with autocast(precision, device):
                x = run_prefix(backbone, inputs, cut).float().cpu()
            mask = batch.get("attention_mask")
            tokens = mask is not None and x.dim() == 3 and x.shape[:2] == mask.shape
            rows = [x[i][mask[i].bool()] for i in range(len(x))] if tokens else list(x)  # real tokens only
            if "meta" not in state:
                shape = list(x.shape[2:] if tokens else x.shape[1:])
                state["meta"] = StoredMeta(row_shape=shape, tokens=tokens, rows=0, describe=describe)
                if known is not None and (tokens or list(known.activations.shape[1:]) != shape):
                    raise TailUnsupported(
                        f"the known rows of {describe} are {list(known.activations.shape[1:])} vectors but the model "
                        f"gives {'token sequences of ' if tokens else ''}{shape}"
                    )
            for j, (i, row) in enumerate(zip(chunk, rows)):
                computed[i] = (row, row.shape[0] if tokens else 0, *_row_labels(batch, j, tokens))
            out = ready()
            if out["labels"]:
                yield out
        out = ready()
        if out["labels"]:
            yield out

    try:
        if todo:
            more = f" ({len(given)} more already computed)" if given else ""
            logger.info(f"cache: extracting {cut.describe()} of {backbone.spec.name} for {len(todo)} rows{more}")
        else:
            logger.info(
                f"cache: storing {cut.describe()} of {backbone.spec.name}, already computed for all {len(ds)} rows"
            )
        hint = "set cache.dir to a folder with room, or cache.enabled=false"
        # RNG-neutral: iterating a DataLoader draws a seed from torch's global generator, so without the fork a
        # run that extracts would train with other dropout masks than the same run on a warm cache.
        with (
            disk_full_is_a_user_error(store.root, "the activation cache", hint=hint),
            torch.random.fork_rng(devices=[]),
        ):
            return store.write(key, batches(), lambda _first: state["meta"], len(ds), max_gib * 2**30)
    finally:
        model.train(was_training)


def _row_labels(batch: dict[str, Any], j: int, tokens: bool) -> tuple[Any, list[int] | None]:
    """Row `j`'s label as stored, and a tagger's word tags (None for other tasks). A tagger's tags are kept for
    the stored tokens only (the real ones, as its activations), and its words' tags without the batch's padding."""
    if "word_labels" not in batch:
        return batch["labels"][j].tolist(), None
    if not tokens:
        raise TailUnsupported("a tagger's activations at this cut are not one vector per token")
    tags = batch["labels"][j][batch["attention_mask"][j].bool()].tolist()
    words = batch["word_labels"][j].tolist()
    while words and words[-1] == IGNORE:
        words.pop()
    return tags, words


@torch.inference_mode()
def _check_tail(
    backbone: Backbone,
    tail: Any,
    ds: Dataset,
    collate: Any,
    cached: dict[str, torch.Tensor],
    device: torch.device,
    precision: str = "no",
) -> None:
    """The tail on cached rows must give the uncut model's logits, both at the run's precision (the rows were
    extracted at it, and training runs the tail under it); otherwise the cache is not used. Checked in float32
    against a bf16 extraction, a right tail of a 6-block MiniLM tagger was refused (2.3e-2 apart); under the same
    autocast the two differ only by bf16's rounding."""
    model = backbone.model
    was_training = model.training
    model.eval()
    try:
        n = min(_CHECK_ROWS, len(ds))
        batch = collate([ds[i] for i in range(n)])
        rows = _collate([{k: v[i] for k, v in cached.items()} for i in range(n)])
        rows = {k: v.to(device) for k, v in rows.items()}
        with autocast(precision, device):
            full = backbone.logits(model, {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}).float()
            cut_logits = tail(rows["activations"], rows.get("attention_mask")).float()
    finally:
        model.train(was_training)
    if cut_logits.dim() == 3:  # a tagger: the real tokens' logits (the model's batch may be padded wider)
        mask = rows["attention_mask"].bool().cpu()
        full, cut_logits = full[:, : mask.shape[1]].cpu()[mask], cut_logits.cpu()[mask]
    diff = (full - cut_logits).abs().max().item()
    if diff > _CHECK_ATOL + _CHECK_RTOL.get(precision, _CHECK_RTOL_DEFAULT) * full.abs().max().item():
        raise TailUnsupported(f"the cached tail differs from the whole model by {diff:.2e} on validation rows")

"""What a cached activation depends on, hashed: the frozen weights, the inputs, the cut point (and, for the
head's input, the pooling in front of it: `cached.activation_key` names the parts).

A cache entry is reused only when every one of these is equal, so a changed checkpoint, revision,
tokenizer, transform, split, row order or pooling computes the activations again instead of reusing stale ones.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import torch
import xxhash
from datasets import Dataset
from datasets.fingerprint import Hasher

# Bump when what is stored (layout, dtype, how it is computed) changes.
CACHE_FORMAT = 1


def weights_digest(model: torch.nn.Module, skip_prefixes: list[str]) -> str:
    """Hash of every parameter and buffer of `model` whose name starts with none of `skip_prefixes`.

    The head is skipped: it is what trains on the cached activations, and the ladder's rungs start
    from different heads over the same frozen backbone.
    """
    digest = xxhash.xxh3_128()  # datasets' own hash; ~20x faster than blake2b on weights (0.01 s for MiniLM)
    for name, tensor in sorted(model.state_dict().items()):
        if any(name == p or name.startswith(p + ".") for p in skip_prefixes):
            continue
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()


def table_digest(dataset: Dataset, columns: list[str] | None = None) -> str:
    """Hash of the rows of `dataset`, in order (indices mappings applied), as Arrow IPC bytes.

    Image columns hold the encoded image bytes (or the file path, for datasets that store paths).
    """
    table = dataset.with_format("arrow")[:]
    if columns is not None:
        table = table.select(columns)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return xxhash.xxh3_128(sink.getvalue()).hexdigest()


def cache_key(**parts: Any) -> str:
    """One key from JSON-like parts (datasets' own Hasher, as `Dataset.map` fingerprints use)."""
    return Hasher.hash({"format": CACHE_FORMAT, **parts})

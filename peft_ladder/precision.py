"""`train.mixed_precision: auto`: bf16 autocast where the hardware computes bf16 natively, float32 elsewhere.

Why: on a CPU with AVX512-BF16 (AMD Zen 4, Intel Cooper Lake and later) or AMX (Intel Sapphire Rapids), a bf16
autocast step of MiniLM takes 0.47x (full) and 0.43x (LoRA) of float32's time (the benchmark's section 8,
`benchmarks/bench/precision_auto.py`, on a 2-core AMD EPYC; `benchmarks/results/ladder_bench.md` has the run).
Without those instructions bf16 is emulated and slower than float32, so `auto` keeps float32 there. On CUDA,
`auto` means bf16 from Ampere on (what `torch.cuda.is_bf16_supported` says without emulation). Weights and the
optimizer stay float32 under autocast (Accelerate's native AMP), so checkpoints and artifacts are the same format
either way.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Literal

import torch

Precision = Literal["no", "fp16", "bf16"]


def native_bf16(device_type: str) -> bool:
    """Whether `device_type` computes bf16 matrix products natively (not emulated)."""
    if device_type == "cuda":
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # an older torch without the argument
            return torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        cpu = getattr(torch, "cpu", None)
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)
    return False


def resolve_precision(asked: str, device_type: str) -> Precision:
    """The precision a run uses: `asked` itself, or for `auto` bf16 where `device_type` has native bf16, and "no"
    elsewhere."""
    if asked != "auto":
        return asked  # type: ignore[return-value]
    return "bf16" if native_bf16(device_type) else "no"


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """The autocast an Engine at `precision` (resolved) runs its forward passes under, for passes made outside
    one (the ladder's frozen evidence), so their features equal the Engine's."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

"""Torch in a child process: threads, device, what ran where, and a sync for timing.

torch is passed in or imported inside the functions, never at module level: the parent imports this module
(for `TorchInfo`) and must stay without torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TorchInfo:
    """What a child reports about torch, for the results' `machine` (the parent never imports torch)."""

    torch: str
    device: str
    gpu: str | None
    threads: int


def import_torch(threads: int) -> Any:
    import torch

    torch.set_num_threads(threads)
    return torch


def resolve_device(torch: Any, asked: str) -> Any:
    if asked == "auto":
        asked = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(asked)


def torch_info(torch: Any, device: Any) -> TorchInfo:
    return TorchInfo(
        torch=str(torch.__version__),  # a str subclass whose unpickling would import torch in the parent
        device=str(device),
        gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        threads=torch.get_num_threads(),
    )


def sync_fn(torch: Any, device: Any) -> Callable[[], None]:
    """Waits for queued GPU work before a clock is read; nothing to wait for on CPU."""
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

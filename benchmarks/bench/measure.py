"""Clocks and memory readings. No torch at import: the parent imports this module too (see `child.run_child`)."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from typing import Any


def time_repeats(fn: Callable[[], Any], warmup: int, repeats: int, sync: Callable[[], None]) -> list[float]:
    """Seconds of each of `repeats` calls of `fn`, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def maxrss_bytes() -> int:
    """This process's peak resident set size (`ru_maxrss` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def rss_bytes() -> int:
    import psutil  # an Accelerate dependency

    return psutil.Process().memory_info().rss


def memory_now(torch: Any, device: Any) -> int:
    """Bytes held now: CUDA memory allocated on a GPU, the process's resident set on CPU."""
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else rss_bytes()


def memory_peak(torch: Any, device: Any) -> int:
    """Peak bytes: `torch.cuda.max_memory_allocated` on a GPU, the process's `ru_maxrss` on CPU."""
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else maxrss_bytes()


def mb(n_bytes: float) -> float:
    return round(n_bytes / 2**20, 1)

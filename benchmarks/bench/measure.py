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


def tensor_bytes(tensors: Any) -> int:
    """Bytes of the distinct storages behind `tensors` (a view and its base count once)."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


class CpuTensorPeak:
    """The CPU counterpart of `torch.cuda.max_memory_allocated`: the peak bytes of live tensors while the block
    runs, counted from the tensors already `held` when it starts.

    The profiler with `profile_memory=True` records every CPU allocation and free in order (`[memory]` events,
    negative bytes for a free); their highest running sum is the block's peak above its start. A process's
    resident set (`ru_maxrss`) also holds the libraries and the allocator's slack, about 800 MB here before any
    model is built, which no strategy changes and which flattens every ratio toward 1. Not for timed code: the
    profiler slows what it watches.
    """

    def __init__(self, torch: Any, held: int):
        self._cpu = torch._C._autograd.DeviceType.CPU
        self.held = held
        self.peak = held
        self._profile = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True)

    def __enter__(self) -> CpuTensorPeak:
        self._profile.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._profile.__exit__(*exc)
        events = [e for e in self._profile.profiler.kineto_results.events() if e.name() == "[memory]"]
        running = highest = 0
        for event in sorted(events, key=lambda e: e.start_ns()):
            if event.device_type() == self._cpu:  # a CUDA run reads the CUDA allocator's own peak instead
                running += event.nbytes()
                highest = max(highest, running)
        self.peak = self.held + highest


def mb(n_bytes: float) -> float:
    return round(n_bytes / 2**20, 1)

"""Peak memory of a stretch of work, for the run record and the transfer note.

On CUDA this is the caching allocator's peak (`torch.cuda.max_memory_allocated`), reset at the start.
On CPU there is no allocator peak to read, so a thread samples the process's resident set size; that
figure includes everything the process holds (Python, libraries, data), so compare it across rungs of
one run, not with GPU numbers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psutil  # an Accelerate dependency
import torch


class PeakMemory:
    """Context manager: `with PeakMemory(device) as peak: ...; peak.result()`.

    Args:
        device: where the work runs.
        interval: seconds between RSS samples on CPU.
    """

    def __init__(self, device: torch.device, interval: float = 0.05):
        self.device = device
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def kind(self) -> str:
        return "cuda_max_allocated" if self.device.type == "cuda" else "process_rss"

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            process = psutil.Process()
            self.peak_bytes = process.memory_info().rss

            def sample() -> None:
                while not self._stop.wait(self.interval):
                    if not self._paused.is_set():
                        self.peak_bytes = max(self.peak_bytes, process.memory_info().rss)

            self._thread = threading.Thread(target=sample, daemon=True, name="peak-memory")
            self._thread.start()
        return self

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Leave out work that is not the run's own (the ladder's drift measurement copies the model)."""
        if self.device.type == "cuda":
            self.peak_bytes = max(self.peak_bytes, torch.cuda.max_memory_allocated(self.device))
        self._paused.set()
        try:
            yield
        finally:
            self._paused.clear()
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            self.peak_bytes = max(self.peak_bytes, torch.cuda.max_memory_allocated(self.device))
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            self.peak_bytes = max(self.peak_bytes, psutil.Process().memory_info().rss)

    def result(self) -> dict[str, Any]:
        return {"kind": self.kind, "peak_mb": round(self.peak_bytes / 2**20, 1)}

"""Sections 3-8 in one child process, one after the other (one interpreter start instead of five; none of them
measures memory)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.bench import (
    engine_vs_raw,
    ladder_vs_full,
    ladder_vs_separate,
    lora_vs_trainer,
    precision_auto,
    probe,
)
from benchmarks.bench.device import TorchInfo, import_torch, resolve_device, torch_info
from benchmarks.bench.settings import Job

# The engine sections in the order they run, by their key in the results.
ENGINE_SECTIONS: tuple[tuple[str, Callable[[Job, Any], dict[str, Any]]], ...] = (
    ("probe_10_epochs", probe.measure),
    ("lora_vs_trainer", lora_vs_trainer.measure),
    ("ladder_vs_separate", ladder_vs_separate.measure),
    ("engine_vs_raw", engine_vs_raw.measure),
    (ladder_vs_full.SECTION, ladder_vs_full.measure),
    (precision_auto.SECTION, precision_auto.measure),
)


@dataclass(frozen=True)
class EngineSectionsOutput:
    info: TorchInfo
    records: dict[str, dict[str, Any]]  # section key -> its record in the results
    seconds: dict[str, float]  # section key -> wall seconds, for the progress lines


def run_engine_sections(job: Job) -> EngineSectionsOutput:
    """Child: the job's engine sections (all when it names none) on the job's device."""
    torch = import_torch(job.threads)
    device = resolve_device(torch, job.device)
    records: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    for name, measure in ENGINE_SECTIONS:
        if job.sections is not None and name not in job.sections:
            continue
        start = time.perf_counter()
        records[name] = measure(job, device)
        seconds[name] = time.perf_counter() - start
    return EngineSectionsOutput(info=torch_info(torch, device), records=records, seconds=seconds)

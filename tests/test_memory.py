"""Peak memory on CPU: the sampled RSS sees an allocation held during the run, not one made while paused."""

from __future__ import annotations

import time

import torch

from peft_ladder.memory import PeakMemory

MB = 2**20


def _hold(megabytes: int, seconds: float = 0.4) -> None:
    block = torch.ones(megabytes * MB // 4)  # float32, touched, so it is resident
    time.sleep(seconds)
    del block


def test_peak_rss_counts_the_run_and_skips_paused_work():
    with PeakMemory(torch.device("cpu"), interval=0.02) as peak:
        baseline = peak.peak_bytes
        with peak.paused():
            _hold(600)
    assert peak.result()["kind"] == "process_rss"
    assert peak.peak_bytes - baseline < 300 * MB

    with PeakMemory(torch.device("cpu"), interval=0.02) as peak:
        baseline = peak.peak_bytes
        _hold(600)
    assert peak.peak_bytes - baseline > 500 * MB

"""The process group a run belongs to, as Accelerate's launcher set it up."""

from __future__ import annotations

from accelerate import PartialState
from accelerate.utils import parse_flag_from_env


def process_state() -> PartialState:
    """Accelerate's shared process state, created the way an `Accelerator` would create it.

    A bare `PartialState()` ignores `ACCELERATE_USE_CPU`: under `ACCELERATE_USE_CPU=true accelerate launch
    --multi_gpu --num_processes 2` every process then believed it was a one-process run, and a ladder became
    two ladders racing on one folder. The first state created is the one every later Accelerator shares.
    """
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))

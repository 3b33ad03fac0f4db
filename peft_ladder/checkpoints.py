"""Accelerate checkpoints in `checkpoints/step_N` folders: written whole or not at all, last K kept."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from accelerate import Accelerator

from peft_ladder.io import swap_into_place

_STEP_DIR = re.compile(r"^step_(\d+)$")


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def save_checkpoint(accelerator: Accelerator, root: Path, step: int, keep_last: int) -> Path:
    """`accelerator.save_state` into a temporary folder, renamed once every process has written.

    A run killed mid-save leaves only a `.tmp` folder, which resume ignores.
    """
    final = root / f"step_{step}"
    tmp = root / f"step_{step}.tmp"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        swap_into_place(tmp, final)
        for old in list_checkpoints(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def resolve_resume(resume: str, root: Path) -> Path:
    """`latest` -> newest complete checkpoint under `root`; otherwise a checkpoint folder path."""
    if resume == "latest":
        found = list_checkpoints(root)
        if not found:
            raise FileNotFoundError(f"--resume latest: no checkpoint under {root}; start without --resume.")
        return found[-1]
    path = Path(resume)
    if not path.is_dir():
        raise FileNotFoundError(f"--resume {resume}: no such checkpoint folder.")
    return path

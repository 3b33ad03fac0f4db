"""Whose folder is it: a run's `output_dir` is claimed before anything is written, so earlier results are never
lost or overwritten without an explicit flag.

A folder holding an earlier run (train or ladder) is refused unless `overwrite_output_dir` (`--overwrite`),
which removes that run's files and says which, or resume (`--resume`), which continues a run of the same
kind. Files that are not a run's are never touched.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

from peft_ladder.errors import UserError

Kind = Literal["train", "ladder"]
# What a run writes at the top of its folder (a ladder also writes `rungs/` and the note).
TRAIN_FILES = ("config.yaml", "metrics.json", "artifact", "checkpoints", "logs")
LADDER_FILES = (
    "transfer_note.json",
    "transfer_note.md",
    "transfer_note.png",
    "rungs",
    "artifact",
    "config.yaml",
    "sessions.json",
)


class OutputDirInUse(UserError, FileExistsError):
    """The output folder holds an earlier run and no flag says what to do with it."""


def run_kind(folder: Path) -> Kind | None:
    """What earlier run `folder` holds: a ladder (its note or rungs), a train run, or none."""
    if not folder.is_dir():
        return None
    if (folder / "rungs").is_dir() or (folder / "transfer_note.json").is_file():
        return "ladder"
    if any((folder / name).exists() for name in TRAIN_FILES):
        return "train"
    return None


def claim(folder: Path, kind: Kind, *, overwrite: bool, resume: bool) -> list[str]:
    """Make `folder` this run's: refuse it, continue in it, or clear the earlier run from it.

    Returns:
        The names removed (with overwrite).

    Raises:
        OutputDirInUse: an earlier run is there and neither flag fits.
    """
    earlier = run_kind(folder)
    if earlier is None:
        folder.mkdir(parents=True, exist_ok=True)
        return []
    found = [n for n in (TRAIN_FILES if earlier == "train" else LADDER_FILES) if (folder / n).exists()]
    if resume and not overwrite:
        if earlier != kind:
            raise OutputDirInUse(
                f"output_dir {folder} holds a {earlier} run, and --resume continues a {kind} run: choose another "
                f"output_dir, or --overwrite to replace it (removes {', '.join(found)})."
            )
        return []
    if not overwrite:
        raise OutputDirInUse(
            f"output_dir {folder} already holds a {earlier} run ({', '.join(found)}): pass --overwrite "
            f"(overwrite_output_dir=true) to replace it, --resume to continue it, or choose another output_dir."
        )
    for name in found:
        path = folder / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return found

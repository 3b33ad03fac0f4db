"""Whose folder is it: a run's `output_dir` is claimed before anything is written, so earlier results are never
lost or overwritten without an explicit flag.

A live run locks its folder first (`run_lock.py`): a second run into it stops at once, naming the owner. A
folder holding an earlier run (train or ladder) is refused unless `overwrite_output_dir` (`--overwrite`), which
removes that run's files and says which, or resume (`--resume`), which continues a run of the same kind.

Each run lists in `RUN_FILE` what it may write at the top of its folder, narrowed at its end to what it did write;
`--overwrite` removes only those (for a folder from before the list, what a run of that kind writes, and only when
what is there is a run's: the resolved config in `config.yaml`, a transfer note, the ladder's rungs with their
sessions), and refuses a folder where names the new run writes are someone else's. They
are first renamed into one hidden folder beside them, atomically each, then removed: a symlink is removed as a
link and never followed, and an interrupted overwrite leaves the hidden folder, cleared by the next claim, never
a half-cleared run. Files that are not a run's are never touched; a folder whose names clash with a run's
without being one is refused even with `--overwrite`.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Literal

from peft_ladder.errors import UserError
from peft_ladder.io import write_text_atomic
from peft_ladder.run_lock import LOCK_FILE, holds, lock_folder, release

Kind = Literal["train", "ladder"]
RUN_FILE = ".peft_ladder_run.json"
ASIDE_PREFIX = ".peft_ladder_old-"
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
WRITES: dict[Kind, tuple[str, ...]] = {"train": TRAIN_FILES, "ladder": LADDER_FILES}


class OutputDirInUse(UserError, FileExistsError):
    """The output folder holds an earlier run and no flag says what to do with it."""


def run_kind(folder: Path) -> Kind | None:
    """What earlier run `folder` holds: a ladder, a train run, or none (see the module docstring)."""
    if not folder.is_dir():
        return None
    listed = _listed(folder)
    if listed is not None:
        return listed[0]
    # A run from before the list: what only a run of ours leaves behind.
    if (folder / "rungs").is_dir() and (
        (folder / "sessions.json").is_file() or _is_note(folder / "transfer_note.json")
    ):
        return "ladder"
    if _is_note(folder / "transfer_note.json"):
        return "ladder"
    if _is_recipe(folder / "config.yaml"):  # a train run writes its resolved recipe first
        return "train"
    return None


def claim(folder: Path, kind: Kind, *, overwrite: bool, resume: bool) -> list[str]:
    """Make `folder` this run's: lock it, then refuse it, continue in it, or clear the earlier run from it.

    Returns:
        The names removed (with overwrite).

    Raises:
        FolderLocked: a live run holds it.
        OutputDirInUse: an earlier run is there and neither flag fits, or files no run wrote clash with ours.
    """
    fresh = not (folder / LOCK_FILE).exists()
    lock_folder(folder, f"{kind} run")
    try:
        return _claim_locked(folder, kind, overwrite=overwrite, resume=resume)
    except OutputDirInUse:  # refused: the folder is left as it was found
        release(folder)
        if fresh:
            (folder / LOCK_FILE).unlink(missing_ok=True)
        raise


def _claim_locked(folder: Path, kind: Kind, *, overwrite: bool, resume: bool) -> list[str]:
    for aside in folder.glob(ASIDE_PREFIX + "*"):  # an overwrite that was interrupted, now ours to finish
        shutil.rmtree(aside, ignore_errors=True)
    earlier = run_kind(folder)
    if earlier is None:
        clash = [n for n in WRITES[kind] if _present(folder / n)]
        if clash:
            raise OutputDirInUse(
                f"output_dir {folder} holds {', '.join(clash)}, which no peft_ladder run wrote there (no "
                f"{RUN_FILE}, no run's resolved config in config.yaml), and a {kind} run writes those names: choose another "
                "output_dir, or move them; nothing was removed, even with --overwrite."
            )
        _list(folder, kind)
        return []
    names = _listed(folder)[1] if _listed(folder) is not None else WRITES[earlier]
    found = [n for n in names if _present(folder / n)]
    # Names this run writes that the earlier run did not: the user's (a `logs/` added since). Never removed, and
    # never written into.
    foreign = [n for n in WRITES[kind] if n not in names and _present(folder / n)]
    if foreign:
        raise OutputDirInUse(
            f"output_dir {folder} holds {', '.join(foreign)}, which the earlier {earlier} run there did not write "
            f"(its {RUN_FILE} lists {', '.join(names) or 'nothing'}), and a {kind} run writes those names: move them, "
            "or choose another output_dir; nothing was removed."
        )
    if not found:  # a run that stopped before writing anything: nothing to keep, continue or remove
        _list(folder, kind)
        return []
    if resume and not overwrite:
        if earlier != kind:
            raise OutputDirInUse(
                f"output_dir {folder} holds a {earlier} run, and --resume continues a {kind} run: choose another "
                f"output_dir, or --overwrite to replace it (removes {', '.join(found)})."
            )
        _list(folder, kind)
        return []
    if not overwrite:
        raise OutputDirInUse(
            f"output_dir {folder} already holds a {earlier} run ({', '.join(found)}): pass --overwrite "
            f"(overwrite_output_dir=true) to replace it, --resume to continue it, or choose another output_dir."
        )
    aside = folder / f"{ASIDE_PREFIX}{uuid.uuid4().hex[:8]}"
    aside.mkdir()
    for name in found:
        (folder / name).rename(aside / name)  # the entry itself: a symlink moves as a link
    (folder / RUN_FILE).unlink(missing_ok=True)
    shutil.rmtree(aside)  # never follows a symlink out of the folder
    _list(folder, kind)
    return found


def settle(folder: Path) -> None:
    """At a run's end (finished, failed or interrupted): its list keeps only the names it did write, so that files
    put there later (a user's own `logs/`) are never taken for the run's. A run killed outright keeps the list of
    everything it may write. Only the run that holds the folder settles it (a run refused because another holds
    it leaves that run's list alone)."""
    if not holds(folder):
        return
    listed = _listed(folder)
    if listed is None:
        return
    kind, names = listed
    written = [n for n in names if _present(folder / n)]
    if written != names:
        _list(folder, kind, written)


def _list(folder: Path, kind: Kind, names: list[str] | None = None) -> None:
    """The run's list: everything a run of its kind may write while it runs (`settle` narrows it at the end)."""
    record = {"kind": kind, "writes": list(WRITES[kind] if names is None else names)}
    write_text_atomic(folder / RUN_FILE, json.dumps(record, indent=2))


def _present(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _listed(folder: Path) -> tuple[Kind, list[str]] | None:
    """The run's own list (kind, names), or None when the folder has none (or an unreadable one)."""
    try:
        record = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
        kind, names = record["kind"], record["writes"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if kind not in WRITES or not isinstance(names, list):
        return None
    # Only names a run of that kind writes: a list edited to name other files does not make them ours.
    return kind, [n for n in names if n in WRITES[kind]]


def _is_note(path: Path) -> bool:
    """Whether `path` is a transfer note a ladder of ours wrote (a JSON object with its decision)."""
    if not path.is_file() or path.is_symlink():
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and "decision" in data and "rungs" in data


# Keys of the resolved config a run writes as config.yaml (every section, defaults included); a user's own recipe
# kept in the folder names a few of them.
RESOLVED_KEYS = ("backbone", "data", "train", "checkpoint", "cache", "output_dir", "overwrite_output_dir", "log_with")


def _is_recipe(path: Path) -> bool:
    """Whether `path` is a config.yaml a run of ours wrote (the resolved config: every section, defaults included),
    read without running it."""
    import yaml

    if not path.is_file() or path.is_symlink():
        return False
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and all(key in data for key in RESOLVED_KEYS)

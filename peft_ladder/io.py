"""Files that are never half-written: write to a temporary name beside the target, then rename.

A rename within one folder is atomic, so a reader (or a resumed run) sees the old file or the new one,
never a torn one; a write that fails leaves the old file in place and no temporary behind.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from peft_ladder.errors import UserError

# Below this much free space, a failed write is taken for a full disk (torch's zip writer says only
# "unexpected pos" when its write comes up short).
_NEARLY_FULL = 64 * 2**20


def replace_atomic(path: Path, write: Callable[[Path], object], *, suffix: str = "") -> Path:
    """Call `write(tmp)` on a temporary path beside `path`, then rename it to `path`.

    Args:
        path: the file to create or replace.
        write: writes the whole file to the path it is given.
        suffix: for writers that insist on an extension (numpy's savez appends `.npz` otherwise).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp{suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    return replace_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def swap_into_place(tmp: Path, dest: Path) -> None:
    """Rename the folder `tmp` to `dest`; an existing `dest` is moved aside first and removed only after."""
    old = None
    if dest.exists():
        old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(dest, old)
    os.replace(tmp, dest)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:  # a file or a link that stood where the folder goes
            old.unlink(missing_ok=True)


class DiskFull(UserError, OSError):
    """A write ran out of space; the message names the folder and what was free."""


@contextmanager
def disk_full_is_a_user_error(folder: Path, what: str, *, needed: int | None = None, hint: str = "") -> Iterator[None]:
    """Within the block, running out of space on `folder`'s device is one `DiskFull` line naming it and what was
    free (the caller removes its temporary files after; earlier results are untouched).

    Args:
        what: what was being written ("the artifact", "the activation cache").
        needed: bytes the write needs, when known.
        hint: another way out, e.g. a key that moves the writes elsewhere.
    """
    try:
        yield
    except DiskFull:
        raise
    except Exception as err:
        free = free_bytes(folder)  # measured now, before the caller's cleanup frees space
        if not out_of_space(err, free):
            raise
        need = f", about {needed / 2**20:,.0f} MiB needed" if needed else ""
        raise DiskFull(
            f"no space left on the device of {folder} while writing {what} ({_room(free)}{need}): "
            f"free some space{(' or ' + hint) if hint else ''}, then run again; nothing was left half-written and "
            "earlier results are intact."
        ) from err


def free_bytes(path: Path) -> int | None:
    """Free space on the device holding `path` (or its nearest existing parent); None when it cannot be read."""
    for folder in (Path(path), *Path(path).parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def out_of_space(err: BaseException, free: int | None) -> bool:
    """A failed write was the disk filling up: its errno or words say so (safetensors' error is not an OSError),
    or almost nothing was left free (torch's writer loses the errno)."""
    current: BaseException | None = err
    for _ in range(8):
        if current is None:
            break
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(current).lower()
        if any(words in text for words in ("no space left", "storagefull", "quota exceeded")):
            return True
        current = current.__cause__ or current.__context__
    return free is not None and free < _NEARLY_FULL


def _room(n: int | None) -> str:
    return "free space unknown" if n is None else f"{n / 2**20:,.0f} MiB free"

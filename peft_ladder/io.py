"""Files that are never half-written: write to a temporary name beside the target, then rename.

A rename within one folder is atomic, so a reader (or a resumed run) sees the old file or the new one,
never a torn one; a write that fails leaves the old file in place and no temporary behind.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path


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
        shutil.rmtree(old, ignore_errors=True)

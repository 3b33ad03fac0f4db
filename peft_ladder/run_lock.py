"""A live run owns its folder: an OS-level lock (`fcntl.flock`) on `<folder>/.peft_ladder.lock`, taken before
anything in the folder is read or removed and held until the run ends; the folder itself is locked too, so that
removing the file while the run is alive does not let a second run in.

The file says who holds it (pid, host, command, start time) so that a refusal can name the owner. The lock
itself is the kernel's: it goes with its process, so a killed run leaves a stale file that the next run simply
locks again. Within one process the lock is re-entrant (a train run resumed in the same Python session, a
ladder's trials); forked children (DataLoader workers) do not keep it. Where `fcntl` does not exist (Windows)
runs are not locked.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from peft_ladder.errors import UserError

LOCK_FILE = ".peft_ladder.lock"
_HELD: dict[Path, tuple[int, int]] = {}  # folder -> the open descriptors (lock file, folder) that hold its lock


class FolderLocked(UserError, FileExistsError):
    """Another live process owns the folder."""


def lock_folder(folder: Path, what: str) -> None:
    """Make `folder` (created when missing) this process's until `release` or the process's end.

    Args:
        what: what runs there, for the refusal another process shows (`train run`, `ladder`, `export`).

    Raises:
        FolderLocked: a live process holds it, named in the message.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return
    folder = Path(folder).resolve()
    if folder in _HELD:
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FolderLocked(
            f"{folder} is in use by a running peft_ladder {owner(folder)}: wait for it to finish or stop it, or "
            "choose another folder; nothing in it was read or removed."
        ) from None
    folder_fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(folder_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # a live run holds the folder, though its lock file was removed (and just made anew)
        os.close(folder_fd)
        os.close(fd)
        raise FolderLocked(
            f"{folder} is in use by a running peft_ladder run (its lock file {LOCK_FILE} was removed while it ran): "
            "wait for it to finish or stop it, or choose another folder; nothing in it was read or removed."
        ) from None
    record = {"what": what, "pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%H:%M:%S")}
    record["command"] = " ".join(sys.argv[:3])[:200]
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(record).encode())
    _HELD[folder] = (fd, folder_fd)


def _forget_in_child() -> None:
    """A forked child (a DataLoader worker) gets copies of the descriptors, and a flock stays held while any copy
    is open: the child closes its copies, so the lock lives exactly as long as the run's own process holds it."""
    for fds in _HELD.values():
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def holds(folder: Path) -> bool:
    """Whether this process holds `folder`'s lock."""
    return Path(folder).resolve() in _HELD


def release(folder: Path) -> None:
    """Let `folder` go (the file stays: removing it would race with a process about to lock it)."""
    for fd in _HELD.pop(Path(folder).resolve(), ()):
        os.close(fd)  # closing the descriptors drops the flocks


def locked_by_another(folder: Path) -> str | None:
    """Who holds `folder` when a live process other than this one does (its description), else None."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    folder = Path(folder).resolve()
    if folder in _HELD or not folder.is_dir():
        return None
    for path in (folder / LOCK_FILE, folder):
        if not path.exists():
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return owner(folder)
        finally:
            os.close(fd)
    return None


def owner(folder: Path) -> str:
    """The lock file's record, in words."""
    try:
        r = json.loads((Path(folder) / LOCK_FILE).read_text())
        return f"{r['what']} (pid {r['pid']} on {r['host']}, since {r['since']}: {r['command']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "run (its lock file is unreadable)"

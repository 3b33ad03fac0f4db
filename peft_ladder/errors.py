"""Errors the user can fix, told as one `error:` paragraph with exit status 2; every other exception keeps its
traceback.

A user error names the key, file or column, what was found there and how to fix it. It is:

- a `UserError` (`ConfigError` among them), or one of our own refusals (`PushError`, `CheckpointRefused`);
- a `ValueError`, `LookupError` or `OSError` raised by a `raise` statement in peft_ladder's own code: those
  statements are where inputs are checked, and their messages name the key. The same types raised anywhere
  else (a dict lookup, `int("x")`, a check inside torch) are bugs and keep their traceback;
- a library saying that something the user named does not exist or cannot be fetched: huggingface_hub's
  repository / revision / file not found, gated and offline errors and its repo id check; datasets'
  dataset / data files not found and the parse failure of a data file; an `OSError` raised inside
  transformers, huggingface_hub, datasets or timm (their words for a missing model id, folder or file); timm's
  refusals of a model name or its pretrained weights;
- an `OSError` of the operating system about a path (permission denied, read-only, no space, not a folder,
  already exists), which names the path.

`run_command` runs a command under these rules; `--debug` or `PEFT_LADDER_DEBUG=1` shows the traceback of
every error instead.
"""

from __future__ import annotations

import argparse
import ast
import errno
import functools
import linecache
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

DEBUG_ENV = "PEFT_LADDER_DEBUG"
EXIT_USER_ERROR = 2
_PACKAGE_DIR = Path(__file__).resolve().parent
# Types whose `raise` statements in peft_ladder check inputs (KeyError is a LookupError: unknown names).
_CHECKED_TYPES = (ValueError, LookupError, OSError)
# Our own refusals that live with their modules, by qualified name: deciding must not import them.
_OWN_REFUSALS = {"peft_ladder.hub.push.PushError", "peft_ladder.checkpoints.CheckpointRefused"}
_HUB_NOT_FOUND = {
    "RepositoryNotFoundError",  # GatedRepoError is one
    "RevisionNotFoundError",
    "EntryNotFoundError",  # LocalEntryNotFoundError (offline, not cached) and RemoteEntryNotFoundError
    "DisabledRepoError",
    "OfflineModeIsEnabled",
    "HFValidationError",  # a malformed repo id (often a local path that does not exist)
}
_DATASETS_NOT_FOUND = {"DatasetNotFoundError", "DataFilesNotFoundError", "EmptyDatasetError", "DatasetGenerationError"}
# Libraries whose OSErrors mean "what you named is not there / cannot be fetched".
_LOADER_PACKAGES = ("transformers", "huggingface_hub", "datasets", "timm")
# timm's model factory and weight loading: its RuntimeErrors there refuse a model name or its weights.
_TIMM_FACTORY_FILES = ("_factory.py", "_builder.py", "_hub.py", "_registry.py", "_pretrained.py")
_PATH_ERRNOS = {
    errno.EACCES: "check its permissions or choose another path",
    errno.EPERM: "check its permissions or choose another path",
    errno.EROFS: "the file system is read-only: choose another path",
    errno.ENOSPC: "the disk is full: free space or choose another path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EISDIR: "it is a folder where a file was expected: choose another path",
    errno.EEXIST: "something is already there: remove it or choose another path",
    errno.ENAMETOOLONG: "the name is too long: choose a shorter path",
}


class UserError(Exception):
    """Something the user gave (a recipe, a name, a path, a column, an option) is wrong. The message names it,
    says what was found and how to fix it."""


class ConfigError(UserError, ValueError):
    """A recipe or override is wrong; the message names the file and the dotted key."""


class CommandParser(argparse.ArgumentParser):
    """argparse whose mistakes (an unknown flag, a missing argument) read like every other user error: one
    `error:` line naming the flag, and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"error: {message}; `{self.prog} --help` lists the options.\n")


def debug_requested(flag: bool = False) -> bool:
    """`--debug`, or `PEFT_LADDER_DEBUG` set to anything but empty / 0 / false / no / off."""
    return flag or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def run_command(command: Callable[[], int | None], *, debug: bool = False, secrets: Sequence[str | None] = ()) -> int:
    """Run an entry point's command: its exit status, or 2 after one `error:` paragraph on stderr.

    Args:
        command: the work; returns an exit status (None: 0).
        debug: re-raise every error with its traceback (also `PEFT_LADDER_DEBUG=1`).
        secrets: strings never to print (a `--token`); `HF_TOKEN` is always hidden.

    Returns:
        The command's status, or 2 for a user error. Any other exception propagates (its traceback shows).
    """
    try:
        status = command()
    except BrokenPipeError:  # `peft-ladder recipe keys | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as err:
        if debug_requested(debug) or not is_user_error(err):
            raise
        print(f"error: {user_message(err, secrets)}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    return 0 if status is None else status


def is_user_error(err: BaseException) -> bool:
    """Whether `err` is about something the user gave (see the module docstring) rather than a bug."""
    if isinstance(err, UserError) or _has_class(err, _OWN_REFUSALS):
        return True
    if _library_not_found(err):
        return True
    if isinstance(err, _CHECKED_TYPES) and _raised_by_peft_ladder(err):
        return True
    return isinstance(err, OSError) and err.filename is not None and err.errno in _PATH_ERRNOS


def user_message(err: BaseException, secrets: Sequence[str | None] = ()) -> str:
    """One paragraph for `err`: its message without tracebacks or blank lines, and how to fix it where a
    library's words do not say."""
    if isinstance(err, OSError) and err.filename is not None and err.errno in _PATH_ERRNOS and err.strerror:
        message = f"{err.filename}: {err.strerror.lower()}; {_PATH_ERRNOS[err.errno]}."
    elif isinstance(err, KeyError) and len(err.args) == 1 and isinstance(err.args[0], str):
        message = err.args[0]  # str(KeyError) would quote it
    else:
        message = str(err) or type(err).__name__
    if not isinstance(err, UserError) and not _raised_by_peft_ladder(err) and _library_not_found(err):
        message = _library_message(err, message)
    message = _one_paragraph(message, keep_lines=isinstance(err, UserError))
    for secret in [*secrets, os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")]:
        if secret:
            message = message.replace(secret, "<token>")
    return message


def hub_reason(err: BaseException) -> str | None:
    """Why a Hub id did not load, and the fix, from huggingface_hub's error in `err`'s chain; None when none
    is there. For raise sites that name the key themselves (`backbone.name`, `data.dataset`) too."""
    names = {cls.__name__ for e in _chain(err) for cls in type(e).__mro__}
    if "HFValidationError" in names:
        return "it is neither an existing local folder nor a Hub id (user/name): check the path or the id"
    offline_words = any("offline" in str(e).lower() for e in _chain(err))
    if "OfflineModeIsEnabled" in names or "LocalEntryNotFoundError" in names or (offline_words and _offline()):
        if _offline():
            return "HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache: download it once online, or name a local folder"
        return "the Hub cannot be reached and it is not in the local Hugging Face cache: check the network (and HF_ENDPOINT), or name a local folder"
    if "GatedRepoError" in names:
        return "the repo is gated: accept its terms on huggingface.co, then log in with `hf auth login`"
    if "RepositoryNotFoundError" in names:
        return "the Hub has no such repo: check the id (user/name); for a private one log in with `hf auth login`"
    if "RevisionNotFoundError" in names:
        return "the Hub repo has no such revision: check the branch, tag or commit"
    if "EntryNotFoundError" in names:
        return "the repo lacks a file this needs: check that the id names the right kind of model"
    return None


# ---- how an error is classified --------------------------------------------------------------------------


def _has_class(err: BaseException, qualified: set[str]) -> bool:
    return any(f"{cls.__module__}.{cls.__qualname__}" in qualified for cls in type(err).__mro__)


def _named(err: BaseException, package: str, names: set[str]) -> bool:
    """`err` is (a subclass of) one of `names` defined in `package`: found by name, so nothing is imported."""
    return any(cls.__name__ in names and cls.__module__.split(".")[0] == package for cls in type(err).__mro__)


def _library_not_found(err: BaseException) -> bool:
    if _named(err, "huggingface_hub", _HUB_NOT_FOUND) or _named(err, "datasets", _DATASETS_NOT_FOUND):
        return True
    filename = _innermost_file(err)
    if filename is None:
        return False
    package = _site_package(filename)
    if isinstance(err, OSError) and package in _LOADER_PACKAGES:
        return True
    return package == "timm" and isinstance(err, RuntimeError) and Path(filename).name in _TIMM_FACTORY_FILES


def _raised_by_peft_ladder(err: BaseException) -> bool:
    """The innermost frame is a `raise` statement in peft_ladder's own files (not an operation that failed)."""
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = tb.tb_frame.f_code.co_filename
    return _in_package(filename) and tb.tb_lineno in _raise_lines(filename)


def _innermost_file(err: BaseException) -> str | None:
    tb = err.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename


def _in_package(filename: str) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(_PACKAGE_DIR)
    except (OSError, ValueError):
        return False


def _site_package(filename: str) -> str | None:
    """The top-level package a library file belongs to (`.../site-packages/timm/models/x.py` -> timm)."""
    parts = Path(filename).parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            rest = parts[parts.index(marker) + 1 :]
            return rest[0] if len(rest) > 1 else None
    return None


@functools.lru_cache(maxsize=64)
def _raise_lines(filename: str) -> frozenset[int]:
    """Every line a `raise <exception>` statement spans in `filename` (a message may take several lines)."""
    try:
        tree = ast.parse("".join(linecache.getlines(filename)))
    except (SyntaxError, ValueError):
        return frozenset()
    return frozenset(
        line
        for node in ast.walk(tree)
        if isinstance(node, ast.Raise) and node.exc is not None
        for line in range(node.lineno, (node.end_lineno or node.lineno) + 1)
    )


# ---- how it is told ---------------------------------------------------------------------------------------


def _library_message(err: BaseException, message: str) -> str:
    """A library's words plus what they leave out: its cause (often the only place naming the id or URL) and
    the fix."""
    causes = [str(c) for c in _chain(err)[1:] if str(c) and str(c) not in message]
    if causes:
        message = f"{message.rstrip('. ')} ({causes[0].rstrip('. ')})"
    if _named(err, "datasets", {"DatasetGenerationError"}):
        return f"datasets could not read the data files: {message}; check the files' format (delimiter, quoting)."
    if _site_package(_innermost_file(err) or "") == "timm" and isinstance(err, RuntimeError):
        return f"{message.rstrip('. ')}; timm.list_models('<pattern>') lists the model names timm knows."
    reason = hub_reason(err)
    return f"{message.rstrip('. ')}; {reason}." if reason else message


def _chain(err: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in found and len(found) < 8:
        found.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return found


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _one_paragraph(message: str, *, keep_lines: bool) -> str:
    """No traceback, no blank line; `keep_lines` keeps a message's own list of problems (one per line)."""
    message = message.split("Traceback (most recent call last)")[0]
    lines = [line.rstrip() for line in message.splitlines() if line.strip()]
    if keep_lines:
        return "\n".join(lines)
    return " ".join(line.strip() for line in lines)

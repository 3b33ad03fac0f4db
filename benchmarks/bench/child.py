"""Run one function in a fresh spawned interpreter: its output to a log file, its result sent back.

The function travels by reference (module and name), as pickle sends any function: the child imports its
module, which must therefore be a top-level function of an importable module (`benchmarks.bench.*`; the child
starts with the parent's sys.path, so `benchmarks/ladder_bench.py`'s path set-up reaches it too).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

J = TypeVar("J")
R = TypeVar("R")


def child_main(conn: Any, fn: Callable[[Any], Any], job: Any, log_path: str) -> None:
    """Entry point of a spawned child: send back ("ok", fn(job)) or ("error", traceback)."""
    # Engines, tqdm and transformers print a lot; it goes to a log file, the parent prints one line per job.
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        conn.send(("ok", fn(job)))
    except BaseException:
        traceback.print_exc()
        conn.send(("error", traceback.format_exc()))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        conn.close()


def run_child(fn: Callable[[J], R], job: J, label: str, log_path: Path) -> R:
    """Run `fn(job)` in a fresh spawned interpreter and return its result.

    Spawned, not forked: the child's `ru_maxrss` then covers only its own work (a forked child would start
    from the parent's memory), and no torch state leaks between measurements.

    Args:
        fn: a top-level function of a `benchmarks.bench` module (the child imports it by name).
        job: its argument, pickled (a dataclass of `settings`, or of the section's module).
        label: names the job in progress lines and errors.
        log_path: the child's stdout and stderr.
    """
    if "torch" in sys.modules:
        # A child's ru_maxrss starts from its parent's peak (Linux carries it across fork and exec): the parent
        # must stay light, or every child's peak would be the parent's.
        raise RuntimeError("the benchmark's parent process imported torch; keep torch in the children")
    if fn.__module__ == "__main__" or "<locals>" in fn.__qualname__:
        raise ValueError(f"{fn.__qualname__} must be a top-level function of an importable module to run in a child")
    ctx = mp.get_context("spawn")
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    process = ctx.Process(target=child_main, args=(child_conn, fn, job, str(log_path)))
    process.start()
    child_conn.close()
    try:
        status, payload = parent_conn.recv()
    except EOFError:  # it died without a word (killed, out of memory)
        status, payload = "error", "the child exited without sending a result"
    process.join()
    if status != "ok" and process.exitcode:
        payload = f"{payload}\n(exit code {process.exitcode})"
    if status != "ok":
        tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
        raise RuntimeError(f"{fn.__qualname__} failed for {label}:\n{payload}\n--- log tail ---\n{tail}")
    return payload

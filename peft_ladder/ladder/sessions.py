"""A ladder's wall time across `--resume`: each session (one run of the command) records its elapsed seconds in
`sessions.json` after every finished trial, so a session that was killed still counts up to its last trial, and
the note's total is the command's whole cost, not only the last session's.

Where a session starts: a process started as the command (`peft-ladder ...`, `python -m peft_ladder.train`,
`peft_ladder/train.py` under `accelerate launch`) counts from the process's start as the OS records it
(`seconds_since_process_start`: interpreter start, imports, config, data and model loading all count, as they do
in the shell's `time`; the launcher's own start before it, under accelerate launch, does not). From Python (a
notebook, a test, a script of one's own) the process may have lived long before the ladder, so the session starts
when `Ladder.run` does.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Literal

from peft_ladder.io import write_text_atomic

SESSIONS_FILE = "sessions.json"


def started_as_command(argv0: str | None = None) -> bool:
    """Whether this process was started to run a peft_ladder command, judged by its `sys.argv[0]`: the console
    script, or `peft_ladder/train.py` (`python -m peft_ladder.train` sets argv[0] to that file, and `accelerate
    launch peft_ladder/train.py` runs it)."""
    argv0 = sys.argv[0] if argv0 is None and sys.argv else argv0
    if not argv0:
        return False
    path = Path(argv0)
    return path.name in ("peft-ladder", "peft-ladder.exe") or (
        path.name == "train.py" and path.parent.name == "peft_ladder"
    )


def seconds_since_process_start() -> float | None:
    """Seconds since the OS started this process, or None when that cannot be read.

    Linux: the process's start in clock ticks since boot (/proc/self/stat, field 22) against CLOCK_BOOTTIME, to
    a tick (10 ms). Elsewhere psutil's create_time against the wall clock.
    """
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 counts from 1, and 2 precede ")"
        return max(time.clock_gettime(time.CLOCK_BOOTTIME) - started, 0.0)
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import psutil  # an Accelerate dependency

        return max(time.time() - psutil.Process().create_time(), 0.0)
    except Exception:  # noqa: BLE001 - no start time is no reason to fail a run; the clock starts now instead
        return None


class SessionClock:
    """This session's elapsed time, the earlier sessions' (from `sessions.json` under --resume), and their sum.

    Args:
        folder: the ladder's output folder.
        resume: read the earlier sessions' record.
        main_process: only the main process writes the record.
        already: seconds this session had run before the clock was made; default: since the process started when
            it was started as the command (`started_as_command`), else 0.
    """

    def __init__(self, folder: Path, *, resume: bool, main_process: bool = True, already: float | None = None):
        self.path = folder / SESSIONS_FILE
        self.main_process = main_process
        self.earlier: list[float] = []
        if resume and self.path.is_file():
            try:
                self.earlier = [float(s["seconds"]) for s in json.loads(self.path.read_text())["sessions"]]
            except (ValueError, KeyError, TypeError):  # a damaged record loses the earlier time, never the run
                self.earlier = []
        if already is None:
            already = (seconds_since_process_start() or 0.0) if started_as_command() else 0.0
        # Where this session's clock started, for the note to say so.
        self.started_at: Literal["process_start", "ladder_run"] = "process_start" if already > 0 else "ladder_run"
        self.start = time.perf_counter() - already

    @property
    def session_seconds(self) -> float:
        return time.perf_counter() - self.start

    @property
    def total_seconds(self) -> float:
        return sum(self.earlier) + self.session_seconds

    @property
    def sessions(self) -> int:
        return len(self.earlier) + 1

    def tick(self) -> None:
        """Save this session's time so far (after each trial, and at the end)."""
        if not self.main_process:
            return
        sessions = [{"seconds": round(s, 3)} for s in [*self.earlier, self.session_seconds]]
        write_text_atomic(self.path, json.dumps({"sessions": sessions}, indent=2))

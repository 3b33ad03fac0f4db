"""A ladder's wall time across `--resume`: each session (one run of the command) records its elapsed seconds in
`sessions.json` after every finished trial, so a session that was killed still counts up to its last trial, and
the note's total is the ladder's whole cost, not only the last session's."""

from __future__ import annotations

import json
import time
from pathlib import Path

from peft_ladder.io import write_text_atomic

SESSIONS_FILE = "sessions.json"


class SessionClock:
    def __init__(self, folder: Path, *, resume: bool, main_process: bool = True):
        self.path = folder / SESSIONS_FILE
        self.main_process = main_process
        self.earlier: list[float] = []
        if resume and self.path.is_file():
            try:
                self.earlier = [float(s["seconds"]) for s in json.loads(self.path.read_text())["sessions"]]
            except (ValueError, KeyError, TypeError):  # a damaged record loses the earlier time, never the run
                self.earlier = []
        self.start = time.perf_counter()

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

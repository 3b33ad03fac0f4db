"""`PhaseTimer`: the wall seconds of each phase of a ladder, for the note's time table.

A phase may open inside another (a seed added while two rungs are compared); the outer phase then counts only
its own time, so the rows never count a second twice and their sum is at most the session's wall time. A phase
entered again (a rung's extra seeds, added at several points of the climb) adds to its row.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from peft_ladder.ladder.note import PhaseKind, PhaseTime, TimingModel


class PhaseTimer:
    """Times the ladder's phases.

    Args:
        clock: seconds from any fixed point (default `time.perf_counter`; tests pass their own).

    Example:
        >>> timer = PhaseTimer()
        >>> with timer.phase("lora.search", "lora: LR search", "lr_search", rung="lora"):
        ...     pass
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.rows: dict[str, PhaseTime] = {}
        self.parallel: dict[str, PhaseTime] = {}  # `beside`
        self._open: list[tuple[str, float, list[float]]] = []  # key, start, seconds of the phases inside it
        self._mark = clock()

    @contextmanager
    def phase(self, key: str, label: str, kind: PhaseKind, *, rung: str | None = None) -> Iterator[None]:
        """Time the block as phase `key` (its row reads `label`)."""
        row = self.rows.setdefault(key, PhaseTime(phase=label, kind=kind, rung=rung, seconds=0.0))
        inner: list[float] = []
        start = self.clock()
        self._open.append((key, start, inner))
        try:
            yield
        finally:
            self._open.pop()
            elapsed = self.clock() - start
            row.seconds += elapsed - sum(inner)
            if self._open:
                self._open[-1][2].append(elapsed)

    def mark(self) -> None:
        """Start a stretch of straight-line code that `lap` times."""
        self._mark = self.clock()

    def lap(self, key: str, label: str, kind: PhaseKind) -> None:
        """The time since `mark` (or the last lap) as phase `key` (added to its row), outside any open phase."""
        now = self.clock()
        row = self.rows.setdefault(key, PhaseTime(phase=label, kind=kind, seconds=0.0))
        row.seconds += now - self._mark
        self._mark = now

    def record(self, key: str, label: str, kind: PhaseKind, seconds: float, *, within: str | None = None) -> None:
        """A phase the caller measured: a row of its own (outside any open phase), or with `within`, a part of
        that finished phase measured inside it (the transferability scores time themselves), moved out of its row.
        Nothing happens when `key` is already timed (a phase opened around it) or `within` never ran."""
        if within is None:
            self.rows.setdefault(key, PhaseTime(phase=label, kind=kind, seconds=0.0)).seconds += seconds
            return
        if key in self.rows or within not in self.rows:
            return
        parent = self.rows[within]
        seconds = min(seconds, parent.seconds)
        parent.seconds -= seconds
        self.rows[key] = PhaseTime(phase=label, kind=kind, rung=parent.rung, seconds=seconds)

    def beside(
        self, key: str, label: str, kind: PhaseKind, seconds: float, *, rung: str | None = None, trials: int = 0
    ) -> None:
        """Work another process did while this session's phases ran (the control beside the rungs): a row of its
        own, outside the session's rows and their sum, since its seconds overlap theirs."""
        self.parallel[key] = PhaseTime(phase=label, kind=kind, rung=rung, seconds=seconds, trials=trials)

    def count_trial(self) -> None:
        """A trial trained inside the innermost open phase."""
        if self._open:
            self.rows[self._open[-1][0]].trials += 1

    def model(self, total_seconds: float, earlier_sessions_seconds: float = 0.0) -> TimingModel:
        """The time table for the note: every row so far, and what the rows do not cover of `total_seconds`."""
        phases = [row.model_copy() for row in self.rows.values()]
        timed = sum(row.seconds for row in phases)
        return TimingModel(
            phases=phases,
            earlier_sessions_seconds=earlier_sessions_seconds,
            other_seconds=total_seconds - earlier_sessions_seconds - timed,
            beside=[row.model_copy() for row in self.parallel.values()],
        )

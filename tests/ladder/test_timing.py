"""The note's time table: phases inside phases count once, and the rows never add up to more than the total."""

from __future__ import annotations

import pytest

from peft_ladder.ladder.timing import PhaseTimer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_nested_phases_count_once_and_repeated_ones_add_up():
    clock = Clock()
    timer = PhaseTimer(clock)
    clock.now = 2.0
    timer.lap("setup", "setup", "setup")
    with timer.phase("lora.search", "lora: LR search", "lr_search", rung="lora"):
        clock.now += 10
        timer.count_trial()
    with timer.phase("statistics", "statistics", "statistics"):
        clock.now += 1
        with timer.phase("lora.seeds", "lora: extra seeds", "seeds", rung="lora"):
            clock.now += 5
            timer.count_trial()
        clock.now += 1
    with timer.phase("lora.seeds", "lora: extra seeds", "seeds", rung="lora"):
        clock.now += 4
    rows = {r.phase: (r.seconds, r.trials) for r in timer.model(total_seconds=30.0).phases}
    assert rows == {
        "setup": (2.0, 0),
        "lora: LR search": (10.0, 1),
        "statistics": (2.0, 0),
        "lora: extra seeds": (9.0, 1),
    }
    table = timer.model(total_seconds=30.0, earlier_sessions_seconds=3.0)
    assert table.other_seconds == pytest.approx(30 - 3 - 23)


def test_a_part_measured_inside_a_phase_moves_out_of_it_once():
    clock = Clock()
    timer = PhaseTimer(clock)
    with timer.phase("frozen", "frozen evidence", "frozen"):
        clock.now += 8
    timer.record("frozen.transfer", "transferability", "frozen", 3.0, within="frozen")
    timer.record("frozen.transfer", "transferability", "frozen", 3.0, within="frozen")  # already there: no-op
    timer.record("x", "never ran", "frozen", 1.0, within="missing")
    rows = {r.phase: r.seconds for r in timer.model(total_seconds=8.0).phases}
    assert rows == {"frozen evidence": 5.0, "transferability": 3.0}


def test_work_beside_the_phases_is_its_own_row_outside_the_total():
    clock = Clock()
    timer = PhaseTimer(clock)
    with timer.phase("lora.search", "lora: LR search", "lr_search", rung="lora"):
        clock.now += 10
    with timer.phase("scratch.wait", "scratch: waiting", "lr_search", rung="scratch"):
        clock.now += 2
    timer.beside("scratch.beside", "scratch: LR search, beside", "lr_search", 11.0, rung="scratch", trials=3)
    table = timer.model(total_seconds=13.0)
    assert {r.phase: r.seconds for r in table.phases} == {"lora: LR search": 10.0, "scratch: waiting": 2.0}
    assert table.other_seconds == pytest.approx(1.0)  # the 11 s beside overlap the phases
    (row,) = table.beside
    assert (row.phase, row.seconds, row.trials, row.rung) == ("scratch: LR search, beside", 11.0, 3, "scratch")

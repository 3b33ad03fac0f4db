"""The ladder's progress line: its plan and its estimate of the time left as trials are added, skipped, finish
early, fail or are reused by --resume. Arithmetic only: nothing trains."""

from __future__ import annotations

import pytest

from peft_ladder.ladder.progress import LadderProgress


def progress(lines: list[str] | None = None) -> LadderProgress:
    p = LadderProgress(
        ["frozen evidence", "probe", "lora", "full", "scratch", "note and figure"],
        enabled=False,
        log=(lines if lines is not None else []).append,
    )
    p.plan("probe", 1, solved=True)
    p.plan("lora", 3)
    p.plan("full", 3)
    p.plan("scratch", 1, cap_scale=3.0)
    return p


def test_no_estimate_until_a_stepped_trial_has_trained():
    lines: list[str] = []
    p = progress(lines)
    p.start("frozen evidence")
    assert (p.planned, p.done, p.seconds_left()) == (8, 0, None)
    assert lines == [
        "ladder: phase 1/6 frozen evidence (0 of ~8 trials done); time left not known until a trial has trained"
    ]
    p.trial_done("probe", steps_run=None, max_steps=None, seconds=2.0)  # solved: says nothing about a step
    assert p.seconds_left() is None


def test_the_estimate_is_steps_left_times_each_rungs_seconds_per_step():
    lines: list[str] = []
    p = progress(lines)
    p.trial_done("probe", steps_run=None, max_steps=None, seconds=2.0)
    p.start("lora")
    # lora: 100-step cap, stopped early at 50 steps in 10 s (0.2 s a step; trials run half their cap).
    p.trial_done("lora", steps_run=50, max_steps=100, seconds=10.0)
    # left: lora 2 x 100 x 0.5 x 0.2 = 20; full (no trial yet: the mean speed and cap) 3 x 10 = 30; scratch at
    # 3x the cap 300 x 0.5 x 0.2 = 30.
    assert p.seconds_left() == pytest.approx(80.0)
    p.trial_done("lora", steps_run=100, max_steps=100, seconds=20.0)
    # share of the cap run is now 150/200; lora 0.2 s a step: 1 x 100 x 0.75 x 0.2 = 15, full 3 x 15 = 45,
    # scratch 300 x 0.75 x 0.2 = 45.
    assert p.seconds_left() == pytest.approx(105.0)
    p.start("full")
    # full's own speed replaces the mean once one of its trials ran: 1 s a step.
    p.trial_done("full", steps_run=100, max_steps=100, seconds=100.0)
    lora_left = 1 * 100 * (250 / 300) * 0.2
    full_left = 2 * 100 * (250 / 300) * 1.0
    scratch_left = 300 * (250 / 300) * (130 / 250)  # the mean over every stepped trial: 130 s for 250 steps
    assert p.seconds_left() == pytest.approx(lora_left + full_left + scratch_left)
    assert lines[-1] == "ladder: phase 4/6 full (trial 4 of ~8); about 2 min left"  # 105 s, at its start


def test_a_phase_beside_the_others_leaves_the_time_left_and_says_so():
    lines: list[str] = []
    p = progress(lines)
    p.trial_done("probe", steps_run=None, max_steps=None, seconds=2.0)
    p.start("lora")
    p.trial_done("lora", steps_run=50, max_steps=100, seconds=10.0)
    p.beside("scratch")
    assert p.seconds_left() == pytest.approx(80.0 - 30.0)  # the example above without scratch's 30 s
    p.start("full")
    assert lines[-1].endswith("left, besides scratch in a second process")
    p.start("scratch")  # the ladder has come to wait for it
    assert lines[-1].endswith("; waiting for it to finish in its second process")


def test_trials_added_skipped_and_beyond_the_plan_move_the_total():
    p = progress()
    p.trial_done("probe", steps_run=None, max_steps=None, seconds=1.0)
    p.trial_done("lora", steps_run=100, max_steps=100, seconds=10.0)
    before = p.seconds_left()
    p.add_planned("lora")  # an adaptive seed
    assert p.planned == 9 and p.seconds_left() == pytest.approx(before + 10.0)
    for _ in range(4):  # the grid, the seed, and one LR past the edge nobody planned
        p.trial_done("lora", steps_run=100, max_steps=100, seconds=10.0)
    assert (p.phases["lora"].planned, p.phases["lora"].done) == (5, 5)
    p.skip("full")  # the climb ended at lora
    assert p.planned == 1 + 5 + 0 + 1 and p.seconds_left() == pytest.approx(3 * 100 * 1.0 * 0.1)
    p.add_planned("full")  # a later seed reopens a skipped phase
    assert not p.phases["full"].skipped and p.planned == 8


def test_reused_and_failed_trials_count_as_done_without_speed():
    p = progress()
    p.trial_done("probe", steps_run=None, max_steps=None, seconds=0.0, reused=True)
    p.trial_done("lora", steps_run=100, max_steps=100, seconds=0.01, reused=True)  # --resume: found finished
    assert p.done == 2 and p.seconds_left() is None
    p.trial_done("lora", steps_run=None, max_steps=None, seconds=3.0, failed=True)  # diverged
    assert p.done == 3 and p.seconds_left() is None
    p.trial_done("full", steps_run=10, max_steps=10, seconds=5.0)
    # lora's last LR and full's other two at full's 0.5 s a step and 10-step cap; scratch at 3x that cap.
    assert p.seconds_left() == pytest.approx(10 * 0.5 + 2 * 10 * 0.5 + 30 * 0.5)


def test_finish_drops_what_a_failed_rung_did_not_run_and_an_unplanned_phase_joins():
    lines: list[str] = []
    p = progress(lines)
    for phase, n in [("probe", 1), ("lora", 3), ("full", 1), ("scratch", 1)]:
        for _ in range(n):
            p.trial_done(phase, steps_run=10, max_steps=10, seconds=1.0)
    p.finish("full")
    p.start("note and figure")
    assert (p.planned, p.done) == (6, 6)
    assert lines[-1] == "ladder: phase 6/6 note and figure (6 of ~6 trials done); no trials left"
    p.trial_done("unplanned", steps_run=1, max_steps=1, seconds=1.0)  # joins the plan instead of failing the run
    assert list(p.phases)[-1] == "unplanned" and (p.planned, p.done) == (7, 7)


@pytest.mark.parametrize(("seconds", "words"), [(0.2, "1 s"), (40, "40 s"), (420, "7 min"), (8280, "2.3 h")])
def test_time_left_in_words(seconds, words):
    p = LadderProgress(["a"], enabled=False)
    p.plan("a", 2)
    p.trial_done("a", steps_run=10, max_steps=10, seconds=seconds)
    assert p.summary().endswith(f"about {words} left")


def test_the_line_shows_on_a_terminal_only(capsys):
    p = LadderProgress(["a"], enabled=True)  # pytest's captured output is not a terminal: tqdm hides the line
    p.plan("a", 1)
    p.close()
    assert p.bar.disable

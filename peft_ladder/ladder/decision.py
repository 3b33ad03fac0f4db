"""The climb rule and the flags: pure functions of decision-split predictions.

Each climb step compares a deeper rung with the best simpler one on the decision rows (held out from every
choice) and has one of three outcomes against the practical threshold `min_gain`:
- climb: the interval's low end is above `min_gain` (a gain that is reliable AND worth having);
- stop: its high end is below `min_gain` (reliably no gain worth the depth);
- uncertain: the interval straddles `min_gain`; the evidence could not decide within the budget.
The climb goes on only after "climb"; the best rung so far is the recommendation. Rungs run after the climb
ended (`--all`) are compared as well, but never change the recommendation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from peft_ladder.config import LadderConfig
from peft_ladder.ladder.stats import Interval, bootstrap, point_estimate

Outcome = Literal["climb", "stop", "uncertain"]


@dataclass
class RungPredictions:
    """A rung's predictions on one split, one array per training seed, at its chosen LR."""

    id: str
    strategy: str
    predictions: list[np.ndarray]


@dataclass
class Comparison:
    """metric(candidate) - metric(reference), with its interval and, for climb steps, the outcome."""

    candidate: str
    reference: str
    kind: str  # climb, after_stop, vs_probe, vs_scratch, vs_baseline, test
    interval: Interval
    outcome: Outcome | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "reference": self.reference,
            "kind": self.kind,
            "outcome": self.outcome,
            **self.interval.to_dict(),
        }


@dataclass
class Flag:
    kind: str
    rung: str
    message: str
    interval: Interval | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "rung": self.rung,
            "message": self.message,
            "interval": self.interval.to_dict() if self.interval else None,
        }


def judge(interval: Interval, min_gain: float) -> Outcome:
    """climb, stop or uncertain for a gain's interval against the practical threshold."""
    if interval.low > min_gain:
        return "climb"
    if interval.high < min_gain:
        return "stop"
    return "uncertain"


@dataclass
class ClimbState:
    """Where the climb is: the best rung so far, why it ended, and every comparison made."""

    best: RungPredictions | None = None
    stopped: bool = False
    # stop, uncertain (the last step's outcome), target_reached, or top_of_ladder
    stop_reason: str | None = None
    stopped_at: str | None = None
    comparisons: list[Comparison] = field(default_factory=list)


class ClimbRule:
    """Apply the climb rule rung by rung, on the decision split.

    Args:
        cfg: the ladder config (metric, confidence, bootstrap samples, min_gain, target).
        labels: the decision rows' labels every rung is scored on.
    """

    def __init__(self, cfg: LadderConfig, labels: np.ndarray):
        self.cfg = cfg
        self.labels = np.asarray(labels)
        self.state = ClimbState()

    def interval(self, a: RungPredictions, b: RungPredictions | None = None) -> Interval:
        return bootstrap(
            a.predictions,
            self.labels,
            self.cfg.metric,
            b.predictions if b is not None else None,
            samples=self.cfg.bootstrap_samples,
            confidence=self.cfg.confidence,
        )

    def compare(self, rung: RungPredictions) -> Comparison:
        """The step from the best rung so far to `rung`, not yet taken (the ladder may add seeds first)."""
        interval = self.interval(rung, self.state.best)
        kind = "after_stop" if self.state.stopped else "climb"
        return Comparison(rung.id, self.state.best.id, kind, interval, judge(interval, self.cfg.min_gain))

    def observe(self, rung: RungPredictions, comparison: Comparison | None = None) -> Comparison | None:
        """Take a finished rung (in climbing order) and its final comparison with the best simpler rung.

        Before the climb ended, "climb" makes `rung` the best; "stop" or "uncertain" end the climb there.
        After it ended (`--all`), the comparison is recorded and nothing else changes.
        """
        state = self.state
        if state.best is None:
            state.best = rung
            self._check_target()
            return None
        comparison = comparison or self.compare(rung)
        state.comparisons.append(comparison)
        if state.stopped:
            return comparison
        if comparison.outcome == "climb":
            state.best = rung
            self._check_target()
        else:
            state.stopped, state.stop_reason, state.stopped_at = True, comparison.outcome, rung.id
        return comparison

    def _check_target(self) -> None:
        target, state = self.cfg.target, self.state
        if target is not None and not state.stopped and self.interval(state.best).estimate >= target:
            state.stopped, state.stop_reason, state.stopped_at = True, "target_reached", state.best.id

    def finish(self) -> None:
        if not self.state.stopped:
            self.state.stop_reason = "top_of_ladder"


def transfer_flags(
    rule: ClimbRule,
    rungs: list[RungPredictions],
    scratch: RungPredictions | None,
    baseline: RungPredictions | None,
    skipped: list[str],
) -> tuple[list[Flag], list[Comparison]]:
    """Flags about pretraining itself, each with the comparison it rests on.

    - worse_than_probe: a deeper rung reliably below the frozen probe (forgetting, or too large a step).
    - negative_transfer: scratch or the cheap baseline reliably above the best pretrained rung that ran.
    - scratch_competitive: scratch not reliably below it.
    - baseline_competitive: the cheap baseline not reliably below the recommended rung.
    """
    flags: list[Flag] = []
    comparisons: list[Comparison] = []
    probe = next((r for r in rungs if r.strategy == "linear_probe"), None)
    for rung in rungs:
        if probe is None or rung is probe:
            continue
        c = Comparison(rung.id, probe.id, "vs_probe", rule.interval(rung, probe))
        comparisons.append(c)
        if c.interval.high < 0:
            flags.append(
                Flag(
                    "worse_than_probe",
                    rung.id,
                    f"{rung.id} is worse than the frozen probe: adapting the backbone lost what the frozen "
                    "features had (forgetting, or too large a step for this data).",
                    c.interval,
                )
            )
    if not rungs:
        return flags, comparisons
    best = max(rungs, key=lambda r: point_estimate(r.predictions, rule.labels, rule.cfg.metric))
    rests_on = f"the best pretrained rung that ran, {best.id}" + (
        f" ({', '.join(skipped)} not run: a deeper rung could change this)" if skipped else ""
    )
    recommended = rule.state.best
    for control, kind in ((scratch, "vs_scratch"), (baseline, "vs_baseline")):
        if control is None:
            continue
        c = Comparison(control.id, best.id, kind, rule.interval(control, best))
        comparisons.append(c)
        if c.interval.low > 0:
            flags.append(
                Flag(
                    "negative_transfer",
                    best.id,
                    f"{control.id} is reliably better than {rests_on}: the pretrained features hurt this task.",
                    c.interval,
                )
            )
        elif kind == "vs_scratch" and c.interval.high >= 0:
            flags.append(
                Flag(
                    "scratch_competitive",
                    best.id,
                    f"scratch is not reliably worse than {rests_on}: this run shows no benefit from pretraining.",
                    c.interval,
                )
            )
        if kind != "vs_baseline" or recommended is None:
            continue
        if recommended.id != best.id:
            c = Comparison(control.id, recommended.id, kind, rule.interval(control, recommended))
            comparisons.append(c)
        if c.interval.high >= 0:
            flags.append(
                Flag(
                    "baseline_competitive",
                    recommended.id,
                    f"the cheap non-pretrained baseline ({control.id}) is not reliably worse than the recommended "
                    f"rung {recommended.id}: pretraining does not earn its cost here.",
                    c.interval,
                )
            )
    return flags, comparisons

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

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from peft_ladder.config import LadderConfig
from peft_ladder.ladder.stats import Interval, bootstrap, point_estimate
from peft_ladder.metrics import higher_is_better

Outcome = Literal["climb", "stop", "uncertain"]


@dataclass
class RungPredictions:
    """A rung's predictions on one split, one array per training seed, at its chosen LR."""

    id: str
    strategy: str
    predictions: list[np.ndarray]


Direction = Literal["better", "worse", "inside_noise"]

# The words every flag and row uses for a difference's interval, so a message never says more (or less) than
# its interval: "reliably" only when the interval excludes zero.
RELATION: dict[Direction, str] = {
    "better": "reliably better than",
    "worse": "reliably worse than",
    "inside_noise": "not reliably different from",
}


def direction(interval: Interval) -> Direction:
    """better / worse: the interval of candidate - reference lies wholly above / below zero; else inside_noise."""
    if interval.low > 0:
        return "better"
    if interval.high < 0:
        return "worse"
    return "inside_noise"


@dataclass
class Comparison:
    """metric(candidate) - metric(reference), with its interval.

    Attributes:
        kind: climb, after_stop, vs_probe, vs_scratch, vs_baseline, test.
        outcome: the climb rule's verdict, for climb and after_stop rows only (the rows that are climb steps).
        lower_bound: the candidate is the scratch control and it was cut short or still improving, so its
            metric, and this difference, are lower bounds.
        agrees: test rows only: whether the test split reaches the decision rows' verdict on the same step
            (True), the opposite one (False), or either side is undecided (None).
    """

    candidate: str
    reference: str
    kind: str
    interval: Interval
    outcome: Outcome | None = None
    lower_bound: bool = False
    agrees: bool | None = None

    @property
    def direction(self) -> Direction:
        return direction(self.interval)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.candidate, self.reference, self.kind)

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "reference": self.reference,
            "kind": self.kind,
            "outcome": self.outcome,
            "direction": self.direction,
            "lower_bound": self.lower_bound,
            "agrees": self.agrees,
            **self.interval.to_dict(),
        }


@dataclass
class Flag:
    """A warning in the note. `basis` names the comparison (candidate, reference, kind) whose interval it carries."""

    kind: str
    rung: str
    message: str
    interval: Interval | None = None
    basis: tuple[str, str, str] | None = None
    lower_bound: bool = False

    @classmethod
    def on(cls, kind: str, rung: str, message: str, comparison: Comparison) -> Flag:
        """A flag that rests on `comparison`: its interval, its key and its lower-bound mark."""
        return cls(kind, rung, message, comparison.interval, comparison.key, comparison.lower_bound)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "rung": self.rung,
            "message": self.message,
            "interval": self.interval.to_dict() if self.interval else None,
            "basis": dict(zip(("candidate", "reference", "kind"), self.basis)) if self.basis else None,
            "lower_bound": self.lower_bound,
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
        tags: token classification: the tag names the entity metrics read (empty for other tasks).
    """

    def __init__(self, cfg: LadderConfig, labels: np.ndarray, tags: Sequence[str] = ()):
        self.cfg = cfg.resolved()
        self.labels = np.asarray(labels)
        self.tags = tuple(tags)
        self.state = ClimbState()

    def interval(self, a: RungPredictions, b: RungPredictions | None = None) -> Interval:
        return bootstrap(
            a.predictions,
            self.labels,
            self.cfg.metric,
            b.predictions if b is not None else None,
            samples=self.cfg.bootstrap_samples,
            confidence=self.cfg.confidence,
            tags=self.tags or None,
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
        if target is None or state.stopped:
            return
        estimate = self.interval(state.best).estimate
        if estimate >= target if higher_is_better(self.cfg.metric) else estimate <= target:
            state.stopped, state.stop_reason, state.stopped_at = True, "target_reached", state.best.id

    def finish(self) -> None:
        if not self.state.stopped:
            self.state.stop_reason = "top_of_ladder"


CONTROL_NAMES = {"vs_scratch": "the from-scratch control", "vs_baseline": "the cheap non-pretrained baseline"}


def _control_name(kind: str, control_id: str) -> str:
    return f"{CONTROL_NAMES[kind]} (`{control_id}`)"


def _lower_bound_words(reason: str | None) -> str:
    return f"; scratch was {reason}, so its side of this difference is a lower bound" if reason else ""


def transfer_flags(
    rule: ClimbRule,
    rungs: list[RungPredictions],
    scratch: RungPredictions | None,
    baseline: RungPredictions | None,
    skipped: list[str],
    *,
    scratch_lower_bound: str | None = None,
) -> tuple[list[Flag], list[Comparison]]:
    """Flags about pretraining itself, each resting on one comparison (its `basis`) and worded by its interval.

    Each control (scratch, the cheap baseline) is compared with the best pretrained rung that ran (the highest
    decision estimate), with the recommended rung and with the frozen probe, where those differ:
    - negative_transfer: the control is reliably better than the best pretrained rung, so than every one.
    - scratch_competitive / baseline_competitive: not reliably different from the best pretrained rung (or,
      when that one is reliably better, from the recommended rung).
    - beats_recommended: reliably better than the recommended rung, though not than the best pretrained one.
    - worse_than_probe: a deeper rung reliably below the frozen probe (forgetting, or too large a step).

    Args:
        scratch_lower_bound: why the scratch control's result is a lower bound (cut short, still improving),
            or None; every comparison with scratch then carries `lower_bound` and its flags say so.
    """
    flags: list[Flag] = []
    comparisons: list[Comparison] = []
    probe = next((r for r in rungs if r.strategy == "linear_probe"), None)
    steps = {(c.candidate, c.reference): c for c in rule.state.comparisons}
    for rung in rungs:
        if probe is None or rung is probe:
            continue
        # A climb step from the probe already is this comparison: the flag rests on that row, not a copy.
        c = steps.get((rung.id, probe.id)) or Comparison(rung.id, probe.id, "vs_probe", rule.interval(rung, probe))
        if c.kind == "vs_probe":
            comparisons.append(c)
        if c.direction == "worse":
            flags.append(
                Flag.on(
                    "worse_than_probe",
                    rung.id,
                    f"{rung.id} is {RELATION['worse']} the frozen probe {probe.id}: adapting the backbone lost what "
                    "the frozen features had (forgetting, or too large a step for this data).",
                    c,
                )
            )
    if not rungs:
        return flags, comparisons
    best = best_rung(rule, rungs)
    # The recommended rung's predictions as they are now (it may have gained seeds since the climb took it).
    chosen = rule.state.best.id if rule.state.best is not None else best.id
    recommended = next((r for r in rungs if r.id == chosen), best)
    not_run = f" ({', '.join(skipped)} not run: a deeper rung could change this)" if skipped else ""
    for control, kind in ((scratch, "vs_scratch"), (baseline, "vs_baseline")):
        if control is None:
            continue
        lower = scratch_lower_bound if kind == "vs_scratch" else None
        name, tail = _control_name(kind, control.id), _lower_bound_words(lower)
        references = {r.id: r for r in (best, recommended, probe) if r is not None}
        by_ref = {
            rid: Comparison(control.id, rid, kind, rule.interval(control, ref), lower_bound=lower is not None)
            for rid, ref in references.items()
        }
        comparisons.extend(by_ref.values())
        c = by_ref[best.id]
        competitive = "scratch_competitive" if kind == "vs_scratch" else "baseline_competitive"
        if c.direction == "better":
            flags.append(
                Flag.on(
                    "negative_transfer",
                    best.id,
                    f"{name} is {RELATION['better']} every pretrained rung that ran, the best of them "
                    f"{best.id}{not_run} included, on the decision rows: on this data a model without pretraining "
                    f"beat every pretrained starting point{tail}.",
                    c,
                )
            )
        elif c.direction == "inside_noise":
            flags.append(
                Flag.on(
                    competitive,
                    best.id,
                    f"{name} is {RELATION['inside_noise']} the best pretrained rung that ran, {best.id}{not_run}: "
                    f"this run measures no benefit from pretraining over it{tail}.",
                    c,
                )
            )
        if recommended.id == best.id:
            continue
        r = by_ref[recommended.id]
        if r.direction == "better" and c.direction != "better":
            flags.append(
                Flag.on(
                    "beats_recommended",
                    recommended.id,
                    f"{name} is {RELATION['better']} the recommended rung {recommended.id}, though "
                    f"{RELATION[c.direction]} the best pretrained rung {best.id}: the recommendation rests on the "
                    f"climb rule, not on beating a model without pretraining{tail}.",
                    r,
                )
            )
        elif r.direction == "inside_noise" and c.direction == "worse":
            flags.append(
                Flag.on(
                    competitive,
                    recommended.id,
                    f"{name} is {RELATION['inside_noise']} the recommended rung {recommended.id} (it is "
                    f"{RELATION['worse']} {best.id}): the recommended rung measures no benefit from pretraining "
                    f"over it{tail}.",
                    r,
                )
            )
    return flags, comparisons


def best_rung(rule: ClimbRule, rungs: list[RungPredictions]) -> RungPredictions:
    """The pretrained rung with the best decision estimate (the one the controls are held against)."""
    sign = 1.0 if higher_is_better(rule.cfg.metric) else -1.0
    tags = rule.tags or None
    return max(rungs, key=lambda r: sign * point_estimate(r.predictions, rule.labels, rule.cfg.metric, tags=tags))


@dataclass
class Deploy:
    """What to deploy: the recommended rung, unless a model without pretraining is reliably better than every
    pretrained rung that ran (then that model, with the recommended rung kept for when pretraining is required).

    Attributes:
        kind: rung, scratch or baseline.
        id: the rung, scratch's id, or the baseline's name.
        why: one paragraph, from the comparison it rests on.
        basis: that comparison (control vs the best pretrained rung), None for a rung.
    """

    kind: Literal["rung", "scratch", "baseline"]
    id: str
    why: str
    basis: Comparison | None = None


def deploy_choice(
    recommended: str, best: str, comparisons: list[Comparison], estimates: dict[str, float], skipped: list[str]
) -> Deploy:
    """The model to deploy. A control is chosen only when its interval against the best pretrained rung (the
    highest decision estimate, so above every rung's estimate) lies wholly above zero; of two such controls, the
    one with the higher decision estimate.

    Args:
        recommended: the climb's recommended rung.
        best: the pretrained rung with the highest decision estimate.
        comparisons: the `transfer_flags` comparisons (vs_scratch / vs_baseline rows are read).
        estimates: decision estimate per id (rungs, scratch, baseline).
        skipped: rungs the climb did not run.
    """
    winners = [c for c in comparisons if c.kind in CONTROL_NAMES and c.reference == best and c.direction == "better"]
    controls = [c for c in comparisons if c.kind in CONTROL_NAMES and c.reference == best]
    if not winners:
        if not controls:
            why = (
                f"`{recommended}` is the climb's recommendation; no scratch control or cheap baseline ran to check it."
            )
        else:
            names = " and ".join(_control_name(c.kind, c.candidate) for c in controls)
            why = (
                f"`{recommended}` is the climb's recommendation; {names} "
                f"{'is' if len(controls) == 1 else 'are'} not reliably better than every pretrained rung."
            )
        return Deploy("rung", recommended, why)
    top = max(winners, key=lambda c: estimates.get(c.candidate, float("-inf")))
    iv = top.interval
    not_run = f" ({', '.join(skipped)} not run)" if skipped else ""
    others = [c for c in winners if c is not top]
    name = _control_name(top.kind, top.candidate)
    why = (
        f"{name[0].upper()}{name[1:]} is {RELATION['better']} every pretrained rung that ran: "
        f"{iv.estimate:+.3f} [{iv.low:+.3f}, {iv.high:+.3f}] over the best of them, `{best}`{not_run}"
        + (" (a lower bound: scratch did not finish improving)" if top.lower_bound else "")
        + ". It is the model to deploy"
        + (
            "; " + ", ".join(f"`{c.candidate}` is reliably better than every pretrained rung too" for c in others)
            if others
            else ""
        )
        + f"; `{recommended}` is the pretrained rung to use if pretraining is required."
    )
    return Deploy("scratch" if top.kind == "vs_scratch" else "baseline", top.candidate, why, top)

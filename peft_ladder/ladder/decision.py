"""The climb rule and the negative-transfer flags: pure functions of validation predictions.

Climb: escalate to a deeper rung only while it beats the best simpler rung by more than the noise
(the low end of the paired interval above `min_gain`); the best rung so far is the recommendation.
Negative transfer: flagged when scratch is at least as good as the best pretrained rung, or when a
deeper rung is worse than the frozen probe, each with the interval behind the claim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from peft_ladder.config import LadderConfig
from peft_ladder.ladder.stats import Interval, bootstrap


@dataclass
class RungPredictions:
    """A rung's validation predictions, one array per seed, at its chosen LR."""

    id: str
    strategy: str
    predictions: list[np.ndarray]


@dataclass
class Comparison:
    """metric(candidate) - metric(reference), with its paired interval."""

    candidate: str
    reference: str
    kind: str  # "climb", "vs_probe" or "vs_scratch"
    interval: Interval

    def to_dict(self) -> dict[str, Any]:
        return {"candidate": self.candidate, "reference": self.reference, "kind": self.kind, **self.interval.to_dict()}


@dataclass
class Flag:
    kind: str  # negative_transfer, scratch_competitive, worse_than_probe, drift, slice_fails
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


@dataclass
class ClimbState:
    """Where the climb is: the best rung so far, why it stopped, and every comparison made."""

    best: RungPredictions | None = None
    stopped: bool = False
    stop_reason: str | None = None  # no_reliable_gain, target_reached, top_of_ladder
    stopped_at: str | None = None
    comparisons: list[Comparison] = field(default_factory=list)


class ClimbRule:
    """Apply the climb rule rung by rung.

    Args:
        cfg: the ladder config (metric, confidence, bootstrap samples, min_gain, target).
        labels: the validation labels every rung is scored on.
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

    def observe(self, rung: RungPredictions) -> Comparison | None:
        """Take a finished rung (in climbing order); returns its comparison with the best simpler rung.

        After this, `state.stopped` says whether climbing further is warranted.
        """
        state = self.state
        if state.best is None:
            state.best = rung
            self._check_target()
            return None
        comparison = Comparison(rung.id, state.best.id, "climb", self.interval(rung, state.best))
        state.comparisons.append(comparison)
        if comparison.interval.low > self.cfg.min_gain:
            state.best = rung
            self._check_target()
        elif not state.stopped:
            state.stopped, state.stop_reason, state.stopped_at = True, "no_reliable_gain", rung.id
        return comparison

    def _check_target(self) -> None:
        target, state = self.cfg.target, self.state
        if target is not None and not state.stopped and self.interval(state.best).estimate >= target:
            state.stopped, state.stop_reason, state.stopped_at = True, "target_reached", state.best.id

    def finish(self) -> None:
        if not self.state.stopped:
            self.state.stop_reason = "top_of_ladder"

    def flags(
        self, rungs: list[RungPredictions], scratch: RungPredictions | None
    ) -> tuple[list[Flag], list[Comparison]]:
        """Negative-transfer flags, and the comparisons (vs probe, vs scratch) behind them."""
        flags, comparisons = [], []
        probe = next((r for r in rungs if r.strategy == "linear_probe"), None)
        for rung in rungs:
            if probe is None or rung is probe:
                continue
            c = Comparison(rung.id, probe.id, "vs_probe", self.interval(rung, probe))
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
        if scratch is not None and self.state.best is not None:
            best = self.state.best
            c = Comparison(scratch.id, best.id, "vs_scratch", self.interval(scratch, best))
            comparisons.append(c)
            if c.interval.low > 0:
                flags.append(
                    Flag(
                        "negative_transfer",
                        best.id,
                        f"scratch beats the best pretrained rung ({best.id}): the pretrained features hurt this task.",
                        c.interval,
                    )
                )
            elif c.interval.high >= 0:
                flags.append(
                    Flag(
                        "scratch_competitive",
                        best.id,
                        f"scratch is not reliably worse than the best pretrained rung ({best.id}): this run shows no "
                        "benefit from pretraining.",
                        c.interval,
                    )
                )
        return flags, comparisons

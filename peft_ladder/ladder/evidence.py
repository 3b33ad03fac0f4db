"""The note's sentences, built only from the numbers: why the climb ended where it did, what evidence would
decide an uncertain step, and what would justify adapting deeper. Nothing here contradicts the ladder's
position: the deepest rung gets no advice about going deeper."""

from __future__ import annotations

from typing import Any

from peft_ladder.config import LadderConfig
from peft_ladder.ladder.decision import ClimbRule, Comparison
from peft_ladder.ladder.stats import examples_to_resolve

_VERDICT = {
    "climb": "a reliable gain above the threshold",
    "stop": "reliably below the threshold",
    "uncertain": "undecided: the interval straddles the threshold",
}


def _iv(interval: Any) -> str:
    return f"{interval.estimate:+.3f} [{interval.low:+.3f}, {interval.high:+.3f}]"


def decision_why(rule: ClimbRule, by_id: dict[str, Any], cfg: LadderConfig) -> str:
    """One paragraph: each climb step with its interval and outcome, then how the climb ended."""
    state = rule.state
    steps = [
        f"`{c.candidate}` vs `{c.reference}`: {cfg.metric} {_iv(c.interval)}, {_VERDICT[c.outcome]}"
        for c in state.comparisons
        if c.kind == "climb"
    ]
    lines = [f"Climb steps (threshold {cfg.min_gain}): {'; '.join(steps)}." if steps else "Only one rung ran."]
    if state.stop_reason == "stop":
        lines.append(
            f"The climb stopped at `{state.stopped_at}`: its gain over `{state.best.id}` is reliably below "
            f"{cfg.min_gain}, so the extra depth is not earned."
        )
    elif state.stop_reason == "uncertain":
        lines.append(
            f"The climb ended at `{state.stopped_at}`, undecided: the evidence within this budget cannot tell whether "
            f"it gains {cfg.min_gain} or more over `{state.best.id}`, so the simpler rung is kept."
        )
    elif state.stop_reason == "target_reached":
        lines.append(
            f"`{state.stopped_at}` reached the target {cfg.metric} of {cfg.target}; deeper rungs were not run."
        )
    else:
        lines.append("Every rung earned its step (top of the ladder).")
    best = state.best.id
    metric = by_id[best].metric
    lines.append(
        f"Recommended: `{best}`, the least adapted rung that no deeper rung beat reliably "
        f"({cfg.metric} {metric.estimate:.3f} [{metric.low:.3f}, {metric.high:.3f}] on the decision rows)."
    )
    after = [c for c in state.comparisons if c.kind == "after_stop"]
    if after:
        lines.append(
            "Rungs run after the climb ended (--all) are comparisons only and never change the recommendation: "
            + "; ".join(f"`{c.candidate}` vs `{c.reference}` {_iv(c.interval)}" for c in after)
            + "."
        )
    return " ".join(lines)


def evidence_needed(comparison: Comparison | None, min_gain: float, seeds: int, max_seeds: int) -> list[str]:
    """For an uncertain step: how many decision rows (or seeds) would separate its gain from the threshold."""
    if comparison is None or comparison.outcome != "uncertain":
        return []
    iv = comparison.interval
    need = examples_to_resolve(iv, min_gain)
    lines = []
    if need is not None:
        lines.append(
            f"`{comparison.candidate}` vs `{comparison.reference}` {_iv(iv)}: if its gain is really "
            f"{iv.estimate:+.3f}, about {need} decision rows (now {iv.n}; about {2 * need} validation rows with the "
            f"same split) would put the interval on one side of {min_gain}."
        )
    else:
        lines.append(
            f"`{comparison.candidate}` vs `{comparison.reference}` {_iv(iv)}: the gain sits on the threshold; no "
            "realistic amount of data separates the two, so the simpler rung is the answer."
        )
    if seeds < max_seeds:
        lines.append(f"More seeds per rung (ladder.max_seeds, now {max_seeds}) would narrow the run-to-run part.")
    else:
        lines.append(
            f"It already has {seeds} seeds (ladder.max_seeds); more labelled validation rows are what narrows it now."
        )
    return lines


def unfreeze_more_evidence(note: Any, rule: ClimbRule, order: list[str]) -> list[str]:
    """What a deeper rung would have to show, given where the climb ended."""
    best = note.decision.recommended
    deeper = order[order.index(best) + 1 :] if best in order else []
    if not deeper:
        return [f"`{best}` is the deepest rung of this ladder: there is nothing left to unfreeze."]
    lines: list[str] = []
    for c in (c for c in rule.state.comparisons if c.reference == best):
        iv = c.interval
        if c.outcome == "uncertain":
            need = examples_to_resolve(iv, note.min_gain)
            lines.append(
                f"`{c.candidate}` gained {_iv(iv)} over `{best}`: adapting deeper is justified once the interval's low "
                f"end clears {note.min_gain}"
                + (f" (about {need} decision rows at this noise level, now {iv.n})" if need else "")
                + ", or with more seeds."
            )
        elif c.outcome == "stop":
            lines.append(
                f"`{c.candidate}` did not gain over `{best}` ({_iv(iv)}): more depth is not supported by this data; "
                "more labelled data is the first thing to try before unfreezing more."
            )
        elif c.kind == "after_stop" and iv.low > note.min_gain:
            lines.append(
                f"`{c.candidate}` beat `{best}` ({_iv(iv)}) when run after the climb ended: a rerun in which the "
                "rungs between them earn their steps, or more data, would turn this into a climb."
            )
    skipped = note.decision.rungs_skipped
    if skipped:
        lines.append(
            f"Not run: {', '.join(f'`{s}`' for s in skipped)}. `--all` measures them as comparisons; only a climb "
            "that reaches them step by step can recommend them."
        )
    curve = note.depth_curve
    if curve is not None and curve.points:
        peak = curve.points[curve.peak]
        lines.append(
            f"The frozen features fit the task best at block {curve.peak} ({peak.name}, probe CV accuracy "
            f"{peak.accuracy:.3f}); retraining the {curve.implied_last_k} block(s) after it is what the depth curve "
            "supports."
        )
    for flag in note.flags:
        if flag.kind == "slice_fails":
            lines.append(
                f"{flag.message} A deeper rung that lifts this slice reliably without losing overall {note.metric} "
                "would justify more depth."
            )
        elif flag.kind in ("negative_transfer", "scratch_competitive", "baseline_competitive"):
            lines.append(
                "A non-pretrained model is competitive with the pretrained rungs, so the backbone's pretraining is "
                "what is in question: check the domain match or try another backbone before unfreezing more."
            )
            break
    rec = next((r for r in note.rungs if r.id == best), None)
    if rec is not None and rec.drift is not None and rec.drift.warnings:
        lines.append(
            f"`{best}` already moves the backbone past the drift thresholds ({', '.join(rec.drift.warnings)}); "
            "unfreezing more risks forgetting what pretraining gave. Prefer more data or a lower LR."
        )
    t = note.transferability
    if t is not None and t.pretrained["logme"] <= t.random_init["logme"]:
        lines.append(
            "LogME of the pretrained features is not above that of a randomly initialised copy: the frozen "
            "features carry little for this task."
        )
    return lines

"""The note's sentences, built only from the numbers: why the ladder stopped where it did, and what
evidence would justify adapting deeper."""

from __future__ import annotations

from typing import Any

from peft_ladder.config import LadderConfig
from peft_ladder.ladder.decision import ClimbRule
from peft_ladder.ladder.stats import examples_to_resolve


def _iv(interval: Any) -> str:
    return f"{interval.estimate:+.3f} [{interval.low:+.3f}, {interval.high:+.3f}]"


def decision_why(rule: ClimbRule, by_id: dict[str, Any], cfg: LadderConfig) -> str:
    """One paragraph: each climb step with its interval, then where and why the climb stopped."""
    state = rule.state
    best = state.best.id
    steps = []
    for c in state.comparisons:
        iv = c.interval
        verdict = (
            "a reliable gain" if iv.low > cfg.min_gain else ("reliably worse" if iv.high < 0 else "inside the noise")
        )
        steps.append(f"`{c.candidate}` vs `{c.reference}`: {cfg.metric} {_iv(c.interval)}, {verdict}")
    lines = [f"Climb steps: {'; '.join(steps)}." if steps else "Only one rung ran."]
    if state.stop_reason == "no_reliable_gain":
        lines.append(
            f"The climb stopped at `{state.stopped_at}`: it shows no reliable gain over the best simpler rung, so "
            "the extra depth is not earned."
        )
    elif state.stop_reason == "target_reached":
        lines.append(
            f"`{state.stopped_at}` reached the target {cfg.metric} of {cfg.target}; deeper rungs were not needed."
        )
    else:
        lines.append("Every rung was run (top of the ladder).")
    metric = by_id[best].metric
    lines.append(
        f"Recommended: `{best}`, the least adapted rung that no deeper rung beat reliably "
        f"({cfg.metric} {metric.estimate:.3f} [{metric.low:.3f}, {metric.high:.3f}])."
    )
    if cfg.run_all and state.stop_reason == "no_reliable_gain":
        lines.append(
            "All rungs were run anyway (run_all); deeper rungs after the stop were still compared with the best."
        )
    return " ".join(lines)


def unfreeze_more_evidence(note: Any, rule: ClimbRule, skipped: list[str], order: list[str]) -> list[str]:
    """What a deeper rung would have to show, with the sample sizes the current noise implies."""
    cfg_metric, best = note.metric, note.decision.recommended
    lines: list[str] = []
    deeper = order[order.index(best) + 1 :] if best in order else []
    if not deeper:
        lines.append(f"`{best}` is the deepest rung of this ladder: there is nothing left to unfreeze.")
    climb = [c for c in rule.state.comparisons if c.reference == best]
    for c in climb:
        iv = c.interval
        need = examples_to_resolve(iv, iv.estimate)
        if iv.estimate > 0 and need:
            lines.append(
                f"`{c.candidate}` gained {_iv(iv)} over `{best}`. Adapting deeper is justified once that gain's "
                f"interval clears {note.min_gain}: at this noise level a true gain of {iv.estimate:.3f} needs about "
                f"{need} validation examples (now {iv.n}), or more seeds (ladder.seeds) to narrow the interval."
            )
        else:
            lines.append(
                f"`{c.candidate}` did not gain over `{best}` ({_iv(iv)}): more depth is not supported by this data; "
                "more labelled data is the first thing to try before unfreezing more."
            )
    if skipped:
        lines.append(
            f"Not run: {', '.join(f'`{s}`' for s in skipped)}. Run with --all to measure them anyway; a reliable "
            f"gain over `{best}` there would change the recommendation."
        )
    for flag in note.flags:
        if flag.kind == "slice_fails":
            lines.append(
                f"{flag.message} A deeper rung that lifts this slice reliably without losing overall {cfg_metric} "
                "would justify more depth."
            )
        elif flag.kind in ("negative_transfer", "scratch_competitive"):
            lines.append(
                "Scratch is competitive with the pretrained rungs, so the backbone's pretraining is what is in "
                "question: check the domain match or try another backbone before unfreezing more."
            )
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

"""The note's sentences, built only from the numbers: why the climb ended where it did, what evidence would
decide an uncertain step, and what would justify adapting deeper. Nothing here contradicts the ladder's
position: the deepest rung gets no advice about going deeper, and every sentence about the depth curve is the
note's one depth statement (`depth_advice.py`)."""

from __future__ import annotations

from typing import Any

from peft_ladder.config import LadderConfig
from peft_ladder.ladder.decision import ClimbRule, Comparison, Deploy
from peft_ladder.ladder.stats import examples_to_resolve

_VERDICT = {
    "climb": "a reliable gain above the threshold",
    "stop": "reliably below the threshold",
    "uncertain": "undecided: the interval straddles the threshold",
}


def _iv(interval: Any) -> str:
    return f"{interval.estimate:+.3f} [{interval.low:+.3f}, {interval.high:+.3f}]"


# More decision rows than this multiple of the current ones is no realistic amount of labelling: the gain then sits
# (practically) on the threshold and the simpler rung is the answer.
_REALISTIC = 100


def realistic_rows(interval: Any, threshold: float) -> int | None:
    """Decision rows that would separate the interval from `threshold`, or None when no realistic amount would."""
    need = examples_to_resolve(interval, threshold)
    return need if need is not None and need <= _REALISTIC * interval.n else None


def decision_why(rule: ClimbRule, by_id: dict[str, Any], cfg: LadderConfig, deploy: Deploy | None = None) -> str:
    """One paragraph: each climb step with its interval and outcome, how the climb ended, and the recommended
    rung (named as the pretrained fallback when `deploy` names a model without pretraining)."""
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
        f"Recommended{' pretrained rung' if deploy is not None and deploy.kind != 'rung' else ''}: `{best}`, the "
        f"rung the climb reached step by step, no climb step past it gaining reliably more than {cfg.min_gain} "
        f"({cfg.metric} {metric.estimate:.3f} [{metric.low:.3f}, {metric.high:.3f}] on the decision rows)."
    )
    if deploy is not None and deploy.kind != "rung":
        lines.append(
            f"A model without pretraining is reliably better than every pretrained rung, so the model to deploy is "
            f"`{deploy.id}`; `{best}` is the rung to use if pretraining is required."
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
    need = realistic_rows(iv, min_gain)
    lines = []
    if need is not None:
        lines.append(
            f"`{comparison.candidate}` vs `{comparison.reference}` {_iv(iv)}: if its gain is really "
            f"{iv.estimate:+.3f}, about {need} decision rows (now {iv.n}; about {2 * need} validation rows with the "
            f"same split) would put the interval on one side of {min_gain}."
        )
    else:
        lines.append(
            f"`{comparison.candidate}` vs `{comparison.reference}` {_iv(iv)}: the gain sits (practically) on the "
            f"threshold; no realistic amount of data (over {_REALISTIC}x the {iv.n} decision rows) separates the two, "
            "so the simpler rung is the answer."
        )
    if seeds < max_seeds:
        lines.append(f"More seeds per rung (ladder.max_seeds, now {max_seeds}) would narrow the run-to-run part.")
    else:
        lines.append(
            f"It already has {seeds} seed(s) (ladder.max_seeds); more labelled validation rows are what narrows it now."
        )
    return lines


def unfreeze_more_evidence(note: Any, rule: ClimbRule, order: list[str], max_seeds: int) -> list[str]:
    """What a deeper rung would have to show, given where the climb ended (more seeds only while the candidate
    has fewer than `max_seeds`, as `evidence_needed` says)."""
    best = note.decision.recommended
    deeper = order[order.index(best) + 1 :] if best in order else []
    if not deeper:
        return [f"`{best}` is the deepest rung of this ladder: there is nothing left to unfreeze."]
    lines: list[str] = []
    for c in (c for c in rule.state.comparisons if c.reference == best):
        iv = c.interval
        if c.outcome == "uncertain":
            need = realistic_rows(iv, note.min_gain)
            lines.append(
                f"`{c.candidate}` gained {_iv(iv)} over `{best}`: adapting deeper is justified once the interval's low "
                f"end clears {note.min_gain}"
                + (f" (about {need} decision rows at this noise level, now {iv.n})" if need else "")
                + (", or with more seeds." if iv.seeds < max_seeds else f" (it already has {iv.seeds} seeds).")
            )
        elif c.outcome == "stop":
            lines.append(
                f"`{c.candidate}` did not gain over `{best}` ({_iv(iv)}, reliably below {note.min_gain}): this data "
                f"does not support the step to `{c.candidate}`; more labelled data is the first thing to try before "
                "adapting deeper."
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
    advice = curve.advice if curve is not None else None
    if advice is not None:
        lines.append(advice.statement)
    for flag in note.flags:
        if flag.kind == "slice_fails":
            lines.append(
                f"{flag.message} A deeper rung that lifts this slice reliably without losing overall {note.metric} "
                "would justify more depth."
            )
    pretraining = [
        f
        for f in note.flags
        if f.kind in ("negative_transfer", "scratch_competitive", "baseline_competitive", "beats_recommended")
    ]
    if pretraining:
        kinds = ", ".join(dict.fromkeys(f.kind for f in pretraining))
        line = (
            f"A model without pretraining matches or beats pretrained rungs here (flags: {kinds}), so this "
            "backbone's pretraining is what is in question: check the domain match or try another backbone before "
            "unfreezing more."
        )
        if advice is not None and curve.blocks_after_peak:
            line += (
                f" An earlier block's frozen features fit the task better than the last block's ({advice.evidence}): "
                "what fails may be the last blocks rather than the pretraining as a whole, which a rung that retrains "
                "them, or a probe on that block, would test."
            )
        lines.append(line)
    rec = next((r for r in note.rungs if r.id == best), None)
    if rec is not None and rec.drift is not None and rec.drift.warnings:
        lines.append(
            f"`{best}` already moves the backbone past the drift thresholds ({', '.join(rec.drift.warnings)}); "
            "unfreezing more risks forgetting what pretraining gave. Prefer more data or a lower LR."
        )
    t = note.transferability
    if (
        t is not None
        and None not in (t.pretrained["logme"], t.random_init["logme"])
        and (t.pretrained["logme"] <= t.random_init["logme"])
    ):
        lines.append(
            "LogME of the pretrained head input (the last block's frozen features) is not above that of a randomly "
            "initialised copy: by this measure those features carry little for this task."
        )
    return lines

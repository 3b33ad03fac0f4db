"""The note's one statement about depth: the depth curve's suggestion, reconciled with the climb.

The depth curve and the climb measure different things. The curve probes each block's frozen features on the
training rows (CV), so it only suggests where the features stop fitting the task; the climb measures, on the
decision rows, whether adapting a rung pays. The statement therefore gives the curve's evidence and says what
the climb did with its suggestion: confirmed it, overruled it, could not decide, or never tested it. A curve
that peaks at the last block suggests retraining nothing, and says so.
"""

from __future__ import annotations

from peft_ladder.ladder.note import ComparisonKey, DepthAdviceModel, DepthCurveModel, TransferNote
from peft_ladder.ladder.regime import adaptation_kind


def curve_evidence(curve: DepthCurveModel) -> str:
    """The curve's numbers in words: the peak, the best-scoring block when the 1-SE rule chose a deeper one, and
    the last block when it is not the peak."""
    points, n = curve.points, len(curve.points)
    peak, last = points[curve.peak], points[-1]
    key, se = curve.ranked_by, f"{curve.ranked_by}_se"
    sign = 1 if curve.higher_is_better else -1
    best = max(points, key=lambda p: sign * p.score(key))  # the first of equals, as the peak's rule reads them
    text = (
        f"frozen-feature probes, CV {key.replace('_', '-')} on the training rows: block {peak.block} of blocks "
        f"0-{n - 1} ({peak.name}) {peak.score(key):.3f} ± {peak.score(se):.3f}"
    )
    if sign * best.score(key) > sign * peak.score(key):
        text += f", within one SE of the best, block {best.block} {best.score(key):.3f} ± {best.score(se):.3f}"
    if curve.blocks_after_peak:
        text += f", the last block {last.score(key):.3f} ± {last.score(se):.3f}"
    return text


def _iv(c) -> str:
    return f"{c.estimate:+.3f} [{c.low:+.3f}, {c.high:+.3f}]"


def depth_advice(note: TransferNote) -> DepthAdviceModel | None:
    """The depth statement for a note whose decision and comparisons are set (None without a depth curve)."""
    curve = note.depth_curve
    if curve is None or not curve.points:
        return None
    evidence = curve_evidence(curve)
    decision = note.decision
    by_id = {r.id: r for r in note.rungs}
    recommended = by_id.get(decision.recommended)
    if curve.blocks_after_peak == 0:
        statement = (
            f"Depth curve ({evidence}): the last block's frozen features, block {curve.peak}, fit the task "
            "as well as any earlier block's within one standard error, so the curve gives no reason to retrain any "
            "block and supports reading the last block's features, as the probe does."
        )
        smallest = [rid for rid, k in curve.used.items() if k == curve.implied_last_k and rid in by_id]
        if smallest:
            statement += (
                f" `{smallest[0]}` ran with the smallest depth partial_unfreeze allows (last_k={curve.implied_last_k})."
            )
        probe_kept = recommended is not None and adaptation_kind(recommended.strategy) == "probe"
        if probe_kept:
            statement += f" The climb agrees: it recommends `{decision.recommended}`."
        else:
            statement += (
                f" The climb recommends `{decision.recommended}`: adapting the backbone, not only reading its "
                "features, paid on the decision rows, which frozen-feature probes cannot measure."
            )
        return DepthAdviceModel(
            status="nothing_to_retrain",
            evidence=evidence,
            tested_by=None,
            basis=None,
            agrees_with_climb=True if probe_kept else None,
            statement=statement,
        )

    k = curve.implied_last_k
    hint = (
        f"Depth-curve hint ({evidence}): block {curve.peak} is the deepest whose frozen features fit the task "
        f"within one standard error of the best, and the last block is not, which points at retraining the "
        f"{curve.blocks_after_peak} block(s) after block {curve.peak} "
        f"(partial_unfreeze last_k={k}). This is its own evidence, not a climb result."
    )
    tested_by = next((rid for rid in decision.rungs_run if curve.used.get(rid) == k), None)
    step = next(
        (c for c in note.comparisons if c.candidate == tested_by and c.kind in ("climb", "after_stop")),
        None,
    )
    if tested_by is None or step is None:
        statement = hint + " " + _untested(note, k)
        return DepthAdviceModel(
            status="not_tested",
            evidence=evidence,
            tested_by=tested_by,
            basis=None,
            agrees_with_climb=None,
            statement=statement,
        )
    when = " (run after the climb ended, --all: a comparison only)" if step.kind == "after_stop" else ""
    if step.outcome == "climb":
        status, agrees = "confirmed", True
        verdict = (
            f"The decision rows confirm it: `{tested_by}`{when} gained {_iv(step)} over `{step.reference}`, "
            f"reliably above {note.min_gain}."
        )
    elif step.outcome == "stop":
        status, agrees = "not_supported", False
        verdict = (
            f"The climb tested that depth and it did not pay: `{tested_by}`{when} gained {_iv(step)} over "
            f"`{step.reference}`, reliably below {note.min_gain}; the decision rows overrule the curve's hint."
        )
    else:
        status, agrees = "undecided", None
        verdict = (
            f"The climb tested that depth but could not decide it: `{tested_by}`{when} vs `{step.reference}` "
            f"{_iv(step)} straddles {note.min_gain}."
        )
    return DepthAdviceModel(
        status=status,
        evidence=evidence,
        tested_by=tested_by,
        basis=ComparisonKey(candidate=step.candidate, reference=step.reference, kind=step.kind),
        agrees_with_climb=agrees,
        statement=f"{hint} {verdict}",
    )


def _untested(note: TransferNote, k: int) -> str:
    """Why no climb step judged the curve's depth."""
    decision, curve = note.decision, note.depth_curve
    failed = [f.id for f in note.failed_rungs if f.strategy == "partial_unfreeze"]
    other = [rid for rid, used in curve.used.items() if used != k and rid in decision.rungs_run]
    skipped = [rid for rid in curve.partial_rungs if rid in decision.rungs_skipped]
    if failed:
        why = f"`{failed[0]}` failed in every trial."
    elif other:
        why = f"`{other[0]}` ran with last_k={curve.used[other[0]]} (set by the recipe), not the curve's depth."
    elif skipped:
        why = f"it ended at `{decision.stopped_at}`, before `{skipped[0]}`; `--all` would measure it."
    else:
        why = "this ladder has no partial_unfreeze rung at that depth."
    return f"The climb did not test that depth: {why}"

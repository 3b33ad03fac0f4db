"""The note never contradicts itself: every sentence of the Markdown read against the note's JSON.

Each situation fabricates what a climb leaves (predictions with known accuracies, rung entries, a depth curve)
and goes through the same assembly as `Ladder._finish` (`build_note`) and the same template (`render_markdown`).
No training: the checks are about what the note says, not about what trains.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace

import jsonschema
import numpy as np
import pytest

from peft_ladder.config import LadderConfig
from peft_ladder.ladder.assemble import ClimbRecord, build_note, chance_level
from peft_ladder.ladder.decision import RELATION, ClimbRule, RungPredictions, judge
from peft_ladder.ladder.note import SCHEMA_PATH, BaselineModel, BudgetModel, RungEntry, TransferNote, render_markdown
from peft_ladder.ladder.regime import FEW_BELOW, LARGE_FROM, TABLE, labels_regime
from peft_ladder.ladder.sessions import SessionClock, started_as_command
from peft_ladder.ladder.stats import bootstrap
from peft_ladder.results import Convergence

CFG = LadderConfig(bootstrap_samples=300)
N = 400
CLIMB_WORDS = re.compile(r"\b(climb|climbs|stop|stops|uncertain)\b", re.I)
PHRASES = re.compile("|".join(re.escape(p) for p in sorted(RELATION.values(), key=len, reverse=True)))
ADVICE_WORDS = re.compile(r"retrain|supports|points at|block\(s\) after", re.I)


@dataclass
class Rung:
    id: str
    accuracy: float
    test_accuracy: float | None = None
    strategy: str | None = None

    @property
    def name(self) -> str:
        return self.strategy or self.id


@dataclass
class Situation:
    rungs: list[Rung]
    classes: int = 4
    scratch: float | None = None
    scratch_cut_short: bool = False
    baseline: float | None = None
    depth: list[float] | None = None  # probe CV accuracy per block (se 0.01)
    logme: tuple[float, float] = (1.0, 0.5)  # pretrained, random init
    rows_per_class: int = 40
    run_all: bool = False
    seeds: dict[str, int] = field(default_factory=dict)


def _preds(labels: np.ndarray, accuracy: float, seed: int, classes: int) -> np.ndarray:
    """Right on exactly round(accuracy * n) rows, chosen at random; wrong rows predict the next class."""
    rng = np.random.default_rng(seed)
    preds = (labels + 1) % classes
    right = rng.choice(len(labels), int(round(accuracy * len(labels))), replace=False)
    preds[right] = labels[right]
    return preds


def _convergence(strategy: str, cut_short: bool = False) -> Convergence:
    if strategy == "linear_probe":
        return Convergence(method="lbfgs", converged=True, still_improving=False, stop_reason="solved")
    return Convergence(
        method="steps",
        converged=not cut_short,
        still_improving=cut_short,
        stop_reason="budget" if cut_short else "patience",
        cut_short=cut_short,
        max_steps=300,
        min_steps=40,
        warmup_steps=20,
        eval_every=10,
        steps_run=300 if cut_short else 120,
        best_step=300 if cut_short else 90,
        best_loss=0.5,
        restored_best=not cut_short,
        steps_per_epoch=10,
    )


def _entry(
    rid: str, strategy: str, preds: list[np.ndarray], labels: np.ndarray, role: str, test: float | None, cut: bool
) -> RungEntry:
    iv = bootstrap(preds, labels, "accuracy", samples=CFG.bootstrap_samples)
    head = {"part": "head", "trainable": 10, "total": 10, "pct": 100.0}
    return RungEntry(
        id=rid,
        strategy=strategy,
        options={},
        role=role,
        head_from=None,
        lr=None if strategy == "linear_probe" else 1e-3,
        head_lr=1e-2,
        lr_search=[],
        lr_edge=None,
        seeds=list(range(len(preds))),
        metric=iv.to_dict(),
        selection={"accuracy": iv.estimate, "loss": 1.0},
        decision={"accuracy": iv.estimate, "loss": 1.0},
        test={"accuracy": test} if test is not None else None,
        convergence=[_convergence(strategy, cut) for _ in preds],
        trainable={
            "trainable": 10,
            "total": 1000,
            "pct": 1.0,
            "parts": [head],
            "frozen_parts": [],
            "locked_batchnorm": 0,
        },
        drift=None,
        drift_per_epoch=[],
        learning_curve=[],
        slices={},
        train_seconds=1.0,
        search_seconds=1.0,
        peak_memory=None,
        artifact=None,
    )


def _depth_curve(accuracies: list[float], used_ids: list[str], partial: list[str]) -> dict:
    """The same 1-SE rule as `frozen.depth_curve`."""
    points = [
        {"block": i, "name": f"blocks.{i}", "accuracy": a, "accuracy_se": 0.01, "log_loss": 1.0}
        for i, a in enumerate(accuracies)
    ]
    best = max(points, key=lambda p: p["accuracy"])
    peak = max(p["block"] for p in points if p["accuracy"] >= best["accuracy"] - best["accuracy_se"])
    n = len(points)
    implied = min(max(n - 1 - peak, 1), max(n - 1, 1))
    return {
        "points": points,
        "peak": peak,
        "blocks_after_peak": n - 1 - peak,
        "implied_last_k": implied,
        "used": {rid: implied for rid in used_ids},
        "fixed_by_recipe": [],
        "partial_rungs": partial,
    }


def build(s: Situation) -> tuple[TransferNote, str]:
    """Climb the fabricated rungs with the real rule, then assemble and render the note."""
    cfg = CFG.model_copy(update={"run_all": s.run_all})
    rng = np.random.default_rng(0)
    labels = rng.integers(0, s.classes, N)
    test_labels = rng.integers(0, s.classes, N)
    rule = ClimbRule(cfg, labels)
    ran: list[tuple[Rung, RungPredictions]] = []
    skipped, ending = [], None
    for i, r in enumerate(s.rungs):
        if rule.state.stopped and not cfg.run_all:
            skipped.append(r.id)
            continue
        seeds = s.seeds.get(r.id, 1 if r.name == "linear_probe" else 3)
        p = RungPredictions(r.id, r.name, [_preds(labels, r.accuracy, 10 * i + k, s.classes) for k in range(seeds)])
        c = rule.observe(p)
        if c is not None and c.kind == "climb" and c.outcome != "climb":
            ending = c
        ran.append((r, p))
    rule.finish()
    entries = [_entry(r.id, r.name, p.predictions, labels, "rung", r.test_accuracy, False) for r, p in ran]
    test_preds = {
        r.id: [_preds(test_labels, r.test_accuracy, 100 + k, s.classes) for k in range(len(p.predictions))]
        for r, p in ran
        if r.test_accuracy is not None
    }
    scratch = scratch_entry = None
    if s.scratch is not None:
        scratch = RungPredictions(
            "scratch", "scratch", [_preds(labels, s.scratch, 900 + k, s.classes) for k in range(3)]
        )
        scratch_entry = _entry("scratch", "scratch", scratch.predictions, labels, "scratch", None, s.scratch_cut_short)
    baseline = baseline_record = None
    if s.baseline is not None:
        baseline = RungPredictions("pixels_logreg", "baseline", [_preds(labels, s.baseline, 999, s.classes)])
        iv = bootstrap(baseline.predictions, labels, "accuracy", samples=CFG.bootstrap_samples)
        baseline_record = BaselineModel(
            name="pixels_logreg",
            description="logistic regression on pixels.",
            metric=iv.to_dict(),
            test=None,
            params={},
            seconds=0.1,
        )
    train_labels = np.repeat(np.arange(s.classes), s.rows_per_class)
    record = ClimbRecord(
        rule=rule,
        rungs=[p for _, p in ran],
        entries=entries,
        order=[r.id for r in s.rungs],
        skipped=skipped,
        ending=ending,
        max_seeds=3,
        scratch=scratch,
        scratch_entry=scratch_entry,
        baseline=baseline,
        baseline_record=baseline_record,
        test_labels=test_labels if test_preds else None,
        test_preds=test_preds if len(test_preds) == len(ran) else {},
        class_counts=np.bincount(train_labels).tolist(),
    )
    partial = [r.id for r, _ in ran if r.name == "partial_unfreeze"]
    note = build_note(
        record,
        cfg,
        created="2025-01-01T00:00:00+00:00",
        backbone={"name": "tiny", "source": "local", "modality": "image", "num_blocks": len(s.depth or [0])},
        data={
            "dataset": "fabricated",
            "n_train": len(train_labels),
            "n_validation": 2 * N,
            "n_test": N if test_preds else 0,
            "label_names": [f"c{i}" for i in range(s.classes)],
            "preprocessing": "none",
            "notes": [],
            "slices": [],
        },
        budget=BudgetModel(
            max_epochs=30,
            early_stopping={"enabled": True, "patience": 3, "min_delta": 1e-3, "restore_best": True},
            scratch_budget=3.0,
            per_rung={},
        ),
        chance=chance_level(train_labels, labels, "accuracy"),
        seeds=[0, 1, 2],
        selection={"method": "held out", "selection_rows": N, "decision_rows": N, "seed": 0},
        pooling=None,
        depth_curve=_depth_curve(s.depth, partial, [r.id for r in s.rungs if r.name == "partial_unfreeze"])
        if s.depth
        else None,
        transferability={
            "pretrained": {"logme": s.logme[0], "h_score": 1.0},
            "random_init": {"logme": s.logme[1], "h_score": 0.5},
            "n": 100,
            "feature_dim": 8,
            "seconds": 0.1,
        },
        artifact="out/artifact",
        total_seconds=12.0,
        sessions=1,
    )
    return note, render_markdown(note)


# ---- reading the Markdown -------------------------------------------------------------------------------------


def sentences(md: str) -> list[str]:
    """Every sentence outside tables (a line may hold several)."""
    out = []
    for line in md.splitlines():
        if line.startswith("|") or not line.strip():
            continue
        out += [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z`*])", line) if s.strip()]
    return out


def table_rows(md: str, header: str) -> list[list[str]]:
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def comparison(note: TransferNote, candidate: str, reference: str, kinds: tuple[str, ...] | None = None):
    return next(
        c
        for c in note.comparisons
        if c.candidate == candidate and c.reference == reference and (kinds is None or c.kind in kinds)
    )


def named_ids(note: TransferNote) -> list[str]:
    ids = [r.id for r in note.rungs] + (["scratch"] if note.scratch else [])
    return ids + ([note.baseline.name] if note.baseline else [])


def check_relations(note: TransferNote, text: str, candidate: str) -> None:
    """Every "reliably better than / reliably worse than / not reliably different from" in `text` matches the
    direction of the comparison between `candidate` and the first id named after it."""
    ids = named_ids(note)
    for m in PHRASES.finditer(text):
        rest = text[m.end() :]
        named = min(
            ((found.start(), rid) for rid in ids if (found := re.search(rf"\b{re.escape(rid)}\b", rest))),
            default=None,
        )
        assert named is not None, f"{text!r}: no rung named after {m.group()!r}"
        c = comparison(note, candidate, named[1])
        said = next(d for d, words in RELATION.items() if words == m.group())
        assert c.direction == said, f"{text!r} says {m.group()!r} {named[1]}, its interval says {c.direction}"


# ---- the checks every note must pass --------------------------------------------------------------------------


def check_consistent(note: TransferNote, md: str) -> None:
    data = json.loads(json.dumps(note.model_dump(mode="json")))
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    TransferNote.model_validate(data)  # the model validators: direction vs interval, outcomes on climb rows only

    # Flags vs comparisons: each flag carries its basis's interval and words it by that interval's sign.
    for flag in note.flags:
        if flag.basis is None:
            continue
        c = comparison(note, flag.basis.candidate, flag.basis.reference, (flag.basis.kind,))
        assert (flag.interval.low, flag.interval.high) == (c.low, c.high), flag.kind
        assert flag.lower_bound == c.lower_bound
        check_relations(note, flag.message, flag.basis.candidate)
        if flag.kind == "negative_transfer":
            assert c.direction == "better"
        if flag.kind in ("scratch_competitive", "baseline_competitive"):
            assert c.direction == "inside_noise"
    assert "not reliably worse" not in md

    # Test rows: no climb outcome in the JSON or the Markdown; agreement recomputed from both intervals.
    steps = {(c.candidate, c.reference): c for c in note.comparisons if c.kind in ("climb", "after_stop")}
    for c in note.comparisons:
        if c.kind != "test":
            continue
        assert c.outcome is None
        step, on_test = steps[(c.candidate, c.reference)], judge(c, note.min_gain)
        expected = None if "uncertain" in (step.outcome, on_test) else step.outcome == on_test
        assert c.agrees is expected
    for row in table_rows(md, "| comparison |"):
        if "(test)" in row[0]:
            assert not CLIMB_WORDS.search(row[-1]), row

    # The headline is the decision: deploy first, the recommended rung as the pretrained fallback.
    deploy, recommended = note.decision.deploy, note.decision.recommended
    bold = [line for line in md.splitlines() if line.startswith("**")]
    assert f"`{deploy.id}`" in bold[0]
    if deploy.kind == "rung":
        assert deploy.id == recommended and bold[0].startswith("**Recommended rung")
    else:
        assert bold[0].startswith("**Deploy") and bold[1].startswith("**If pretraining is required")
        assert f"`{recommended}`" in bold[1]
    assert f"`{recommended}`" in note.decision.why
    # A control goes first exactly when it is reliably better than the best pretrained rung.
    best = max(note.rungs, key=lambda r: r.metric.estimate)
    winners = {
        c.candidate
        for c in note.comparisons
        if c.kind in ("vs_scratch", "vs_baseline") and c.reference == best.id and c.direction == "better"
    }
    assert (deploy.kind != "rung") == bool(winners)
    if deploy.basis is not None:
        check_relations(note, deploy.why, deploy.basis.candidate)

    # Scratch cut short: every comparison with it, and what rests on them, says "lower bound".
    short = note.scratch is not None and any(c.cut_short or c.still_improving for c in note.scratch.convergence)
    for c in note.comparisons:
        if c.kind == "vs_scratch":
            assert c.lower_bound == short
    for row in table_rows(md, "| comparison |"):
        if "(vs_scratch)" in row[0]:
            assert ("lower bound" in row[-1]) == short
    for flag in note.flags:
        if flag.basis is not None and flag.basis.kind == "vs_scratch":
            assert ("lower bound" in flag.message) == short

    # Depth: one statement, consistent with the climb, quoted wherever the curve's depth comes up.
    curve = note.depth_curve
    if curve is not None:
        advice = curve.advice
        assert advice.statement in md
        for s in sentences(md):
            if re.search(r"depth[ -]curve", s, re.I) and ADVICE_WORDS.search(s):
                assert s in advice.statement or advice.evidence in s, s
        assert not re.search(r"depth curve supports", md)
        # A peak the 1-SE rule moved deeper than the best-scoring block quotes that block's score beside its own.
        sign = 1 if curve.higher_is_better else -1
        best = max(curve.points, key=lambda p: sign * p.score(curve.ranked_by))
        if sign * best.score(curve.ranked_by) > sign * curve.points[curve.peak].score(curve.ranked_by):
            assert f"block {best.block} {best.score(curve.ranked_by):.3f}" in advice.evidence
        tested = next((rid for rid in note.decision.rungs_run if curve.used.get(rid) == curve.implied_last_k), None)
        step = next((c for c in note.comparisons if c.candidate == tested and c.kind in ("climb", "after_stop")), None)
        if curve.blocks_after_peak == 0:
            assert advice.status == "nothing_to_retrain"
            assert not re.search(r"blocks? after it|the blocks after", md), "a curve peaking at the last block"
        elif step is None:
            assert advice.status == "not_tested" and advice.agrees_with_climb is None
        else:
            expected = {
                "climb": ("confirmed", True),
                "stop": ("not_supported", False),
                "uncertain": ("undecided", None),
            }
            assert (advice.status, advice.agrees_with_climb) == expected[step.outcome]
            assert advice.basis.candidate == tested

    # The decision table: the run's cell, its move and warning, and whether the ladder agreed.
    regime = note.regime
    assert regime is not None and "## Where this task sits" in md
    assert regime.first_move in md and regime.warning in md
    assert regime.agreed == (regime.ladder_answer in regime.move_kinds)
    assert regime.labels == labels_regime(regime.rows_per_class)


# ---- the situations -------------------------------------------------------------------------------------------

STOP_AT_PROBE = Situation(
    rungs=[Rung("linear_probe", 0.90), Rung("lora", 0.80), Rung("partial_unfreeze", 0.95), Rung("full", 0.95)],
    scratch=0.50,
    baseline=0.60,
    depth=[0.60, 0.92, 0.80, 0.75, 0.70, 0.65],
)
NEGATIVE_TRANSFER = Situation(
    rungs=[Rung("linear_probe", 0.30), Rung("lora", 0.29), Rung("full", 0.50)],
    scratch=0.90,
    scratch_cut_short=True,
    depth=[1.00, 0.99, 0.40, 0.30],
    logme=(0.2, 0.4),
)
BASELINE_FAR_BETTER = Situation(  # the colour task: 6 classes, a near-chance probe, a perfect pixel baseline
    rungs=[Rung("linear_probe", 0.19), Rung("lora", 0.20), Rung("partial_unfreeze", 0.30), Rung("full", 0.30)],
    classes=6,
    scratch=0.45,
    baseline=1.00,
    depth=[1.00, 1.00, 0.60, 0.40, 0.30, 0.20, 0.19, 0.19],
    rows_per_class=8,
)
PEAK_AT_LAST = Situation(
    rungs=[Rung("linear_probe", 0.80), Rung("lora", 0.90), Rung("partial_unfreeze", 0.905), Rung("full", 0.95)],
    scratch=0.40,
    baseline=0.50,
    depth=[0.40, 0.60, 0.80, 0.85],
    rows_per_class=300,
)
CLIMB = Situation(
    rungs=[
        Rung("linear_probe", 0.50, test_accuracy=0.50),
        Rung("lora", 0.70, test_accuracy=0.55),
        Rung("partial_unfreeze", 0.90, test_accuracy=0.50),
        Rung("full", 0.85, test_accuracy=0.92),
    ],
    scratch=0.40,
    baseline=0.40,
    depth=[0.50, 0.70, 0.60, 0.50],
    rows_per_class=2000,
)
AFTER_STOP = Situation(  # --all: full, run after the climb stopped, beats the recommended probe and the baseline
    rungs=[Rung("linear_probe", 0.50), Rung("lora", 0.45), Rung("partial_unfreeze", 0.70), Rung("full", 0.90)],
    baseline=0.65,
    depth=[0.50, 0.70, 0.60, 0.50],
    run_all=True,
)
SITUATIONS = {
    "after_stop": AFTER_STOP,
    "stop_at_probe": STOP_AT_PROBE,
    "negative_transfer": NEGATIVE_TRANSFER,
    "baseline_far_better": BASELINE_FAR_BETTER,
    "peak_at_last_block": PEAK_AT_LAST,
    "climb": CLIMB,
}


@pytest.fixture(scope="module", params=list(SITUATIONS))
def built(request) -> tuple[str, TransferNote, str]:
    note, md = build(SITUATIONS[request.param])
    return request.param, note, md


def test_every_note_reads_the_same_as_its_json(built):
    _, note, md = built
    check_consistent(note, md)


def test_stop_at_the_probe_leaves_the_depth_curve_a_hint():
    note, md = build(STOP_AT_PROBE)
    decision = note.decision
    assert (decision.recommended, decision.outcome, decision.stopped_at) == ("linear_probe", "stop", "lora")
    assert decision.deploy.kind == "rung"
    advice = note.depth_curve.advice
    # The curve points deeper than the climb went; the climb never tested that depth, so it is a hint.
    assert note.depth_curve.blocks_after_peak == 4 and advice.status == "not_tested" and advice.tested_by is None
    assert "partial_unfreeze" in advice.statement
    assert advice.statement in note.unfreeze_more_evidence
    assert not any("more depth is not supported" in line for line in note.unfreeze_more_evidence)
    assert note.regime.labels == "few"


def test_negative_transfer_is_worded_by_what_was_measured():
    note, md = build(NEGATIVE_TRANSFER)
    negative = [f for f in note.flags if f.kind == "negative_transfer"]
    assert negative and all(f.basis.candidate == "scratch" and f.lower_bound for f in negative)
    assert "hurt" not in md  # never "the pretrained features hurt": the early blocks' features fit (depth curve)
    assert note.decision.deploy.kind == "scratch" and note.decision.deploy.id == "scratch"
    assert all(c.lower_bound for c in note.comparisons if c.kind == "vs_scratch")
    far = {e.source for e in note.regime.gap_evidence if e.says == "far"}
    assert {"depth_curve", "probe_vs_scratch", "transferability"} <= far and note.regime.gap == "far"
    # The early blocks' features carry the task: what would justify more depth says so, with the curve's numbers.
    assert any(note.depth_curve.advice.evidence in line for line in note.unfreeze_more_evidence)


def test_a_far_better_baseline_is_deployed_first_and_the_probe_is_not_a_near_chance_headline():
    note, md = build(BASELINE_FAR_BETTER)
    deploy = note.decision.deploy
    assert (deploy.kind, deploy.id) == ("baseline", "pixels_logreg") and note.decision.recommended == "linear_probe"
    first = next(line for line in md.splitlines() if line.startswith("**"))
    assert first.startswith("**Deploy: `pixels_logreg`**")
    fallback = next(line for line in md.splitlines() if line.startswith("**If pretraining is required"))
    assert "not reliably above chance" in fallback  # 0.19 on 6 classes
    # The baseline is far better than the recommended rung, and the flags say "reliably better".
    c = comparison(note, "pixels_logreg", "linear_probe", ("vs_baseline",))
    assert c.direction == "better" and c.estimate > 0.7
    words = [f.message for f in note.flags if f.basis and f.basis.candidate == "pixels_logreg"]
    assert words and all("reliably better than" in w for w in words)
    assert not note.regime.agreed and note.regime.ladder_answer == "baseline" and note.regime.labels == "few"


def test_a_curve_peaking_at_the_last_block_says_so():
    note, md = build(PEAK_AT_LAST)
    curve = note.depth_curve
    assert curve.peak == len(curve.points) - 1 and curve.blocks_after_peak == 0 and curve.implied_last_k == 1
    assert curve.advice.status == "nothing_to_retrain"
    assert "last block" in curve.advice.statement
    assert note.regime.labels == "moderate"


def test_a_last_block_peak_within_one_se_of_a_better_block_names_both():
    """The regression twin's curve: an earlier block scores better, the last is within one SE of it. The peak is
    the last block (nothing to retrain) and the statement quotes the better block's score, not "best at the last"."""
    note, md = build(replace(PEAK_AT_LAST, depth=[0.40, 0.60, 0.855, 0.85]))
    curve = note.depth_curve
    assert curve.peak == 3 and curve.advice.status == "nothing_to_retrain"
    assert "block 2 0.855" in curve.advice.evidence and curve.advice.evidence in curve.advice.statement
    check_consistent(note, md)


def test_a_climb_with_test_rows_that_agree_and_contradict():
    note, md = build(CLIMB)
    assert note.decision.recommended == "partial_unfreeze" and note.decision.outcome == "stop"
    tests = {(c.candidate, c.reference): c for c in note.comparisons if c.kind == "test"}
    assert tests[("lora", "linear_probe")].agrees is None or tests[("lora", "linear_probe")].agrees is True
    assert tests[("partial_unfreeze", "lora")].agrees is False  # a climb the test split reverses
    assert tests[("full", "partial_unfreeze")].agrees is False  # a stop the test split would have climbed
    contradicted = {f.rung for f in note.flags if f.kind == "test_contradicts"}
    assert {"partial_unfreeze", "full"} <= contradicted
    # The depth curve's depth (last_k=2) was what partial_unfreeze ran with, and it earned its step.
    assert note.depth_curve.advice.status == "confirmed" and note.depth_curve.advice.agrees_with_climb is True
    assert note.regime.labels == "large" and note.regime.agreed


def test_a_baseline_between_the_recommended_and_the_best_rung_is_worded_against_each():
    note, md = build(AFTER_STOP)
    assert note.decision.recommended == "linear_probe" and note.decision.deploy.kind == "rung"
    assert note.decision.compared_after_stop == ["partial_unfreeze", "full"]
    beats = next(f for f in note.flags if f.kind == "beats_recommended")
    assert beats.basis.reference == "linear_probe" and beats.interval.low > 0
    assert comparison(note, "pixels_logreg", "full", ("vs_baseline",)).direction == "worse"
    # partial_unfreeze ran at the curve's depth after the climb ended: measured, flagged as a comparison only.
    advice = note.depth_curve.advice
    assert advice.basis.kind == "after_stop" and "--all" in advice.statement


# ---- the table's data and the session clock --------------------------------------------------------------------


def test_label_thresholds_and_every_cell_of_the_table():
    assert labels_regime(FEW_BELOW - 1) == "few" and labels_regime(FEW_BELOW) == "moderate"
    assert labels_regime(LARGE_FROM - 1) == "moderate" and labels_regime(LARGE_FROM) == "large"
    assert {k for k in TABLE} == {(n, g) for n in ("few", "moderate", "large") for g in ("close", "far")}
    assert TABLE[("few", "close")].kinds == ("probe",) and "scratch" in TABLE[("large", "far")].kinds


def test_a_command_session_counts_from_the_process_start(tmp_path):
    assert started_as_command("/venv/bin/peft-ladder") and started_as_command("peft_ladder/train.py")
    assert not started_as_command("/usr/lib/python3/site-packages/pytest/__main__.py")
    assert started_as_command("/x/site-packages/peft_ladder/train.py")
    clock = SessionClock(tmp_path, resume=False, already=90.0)
    assert clock.total_seconds >= 90.0 and clock.started_at == "process_start"
    assert SessionClock(tmp_path / "api", resume=False).started_at == "ladder_run"  # pytest is not the command
    clock.tick()
    again = SessionClock(tmp_path, resume=True, already=5.0)
    assert again.sessions == 2 and again.total_seconds >= 95.0

"""The transfer note: what the ladder did and what the numbers say, as JSON (schema-checked) and Markdown.

The pydantic models below are the schema; `transfer_note.schema.json` next to this file is generated
from them (`python -m peft_ladder.ladder.note --write-schema`) and a test keeps the two in step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from peft_ladder.budget import describe_ending
from peft_ladder.io import write_text_atomic
from peft_ladder.ladder.regime import RegimeModel, table_rows
from peft_ladder.results import Convergence

FORMAT_VERSION = 4  # 4: `timing`, where the wall time went
SCHEMA_PATH = Path(__file__).with_name("transfer_note.schema.json")
TEMPLATE_PATH = Path(__file__).with_name("transfer_note.md.j2")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IntervalModel(_Model):
    estimate: float
    low: float
    high: float
    confidence: float
    n: int
    seeds: int
    reference_seeds: int = Field(0, description="for a difference: the reference's training seeds")


class PartModel(_Model):
    part: str = Field(description="stem, a block name, neck or head")
    trainable: int
    total: int
    pct: float


class TrainableModel(_Model):
    trainable: int
    total: int
    pct: float
    parts: list[PartModel]
    frozen_parts: list[str] = Field(description="parts with no trainable parameter")
    locked_batchnorm: int


class LRTrial(_Model):
    lr: float
    metric: float | None = Field(description="on the selection part of validation (None: the trial failed)")
    loss: float | None
    seconds: float | None
    chosen: bool
    extended: bool = Field(description="added past the grid's edge because the best LR sat on it alone")
    tied: bool = Field(
        False,
        description="within one standard error of the best LR's metric (paired, on the selection rows) and within "
        "early stopping's min_delta of the lowest selection loss among those (a smaller loss difference never breaks "
        "a tie, a larger one does). Among tied LRs the rule chooses: the lowest for pretrained rungs (the smallest "
        "move from the pretrained weights), the geometric middle for scratch (the lower of two middles)",
    )
    failed: str | None = Field(None, description="why the trial stopped (training diverged)")
    steps: int | None = Field(None, description="main-phase optimizer steps it trained (None: solved or failed)")
    pruned: str | None = Field(
        None,
        description="why the search stopped it early: behind an earlier LR at the same step and unable to catch up "
        "by its cap, on the selection rows (ladder/pruning.py); a pruned trial is never chosen while one ran to its "
        "end",
    )


class FailedTrialModel(_Model):
    lr: float | None
    seed: int
    reason: str


class FailedRung(_Model):
    """A rung none of whose trials finished: recorded, and the climb went on without it."""

    id: str
    strategy: str
    trials: list[FailedTrialModel]


class DriftModel(_Model):
    step: int | None = Field(None, description="main-phase optimizer step of the evaluation (0: before any update)")
    rel_weight_change: float = Field(description="||W-W0|| / ||W0|| over the backbone (head excluded)")
    max_block_rel_weight_change: float
    per_part: dict[str, float]
    feature_1mcos: float = Field(description="mean 1 - cosine of penultimate features vs the frozen backbone")
    feature_rel_l2: float
    cka: float = Field(description="linear CKA of penultimate features vs the frozen backbone")
    warnings: list[str]


class SliceResult(_Model):
    n: int
    metric: IntervalModel
    fails: bool = Field(description="the slice's interval lies wholly below the rung's overall metric")


class RungEntry(_Model):
    id: str
    strategy: str
    options: dict[str, Any]
    role: Literal["rung", "scratch"]
    head_from: str | None = Field(description="the rung whose trained head this one started from (LP-FT)")
    lr: float | None = Field(
        description="chosen LR: the head LR for head-only rungs, the backbone LR otherwise; None when solved"
    )
    head_lr: float
    lr_search: list[LRTrial] = Field(
        description="every LR tried with the first seed: pretrained rungs the rung's LR x ladder.lr_search."
        "multipliers, scratch ladder.scratch.lrs or its family's from-scratch grid; extensions last"
    )
    lr_edge: Literal["low", "high"] | None = Field(
        description="the best LR sits alone (no LR tied with it) at this edge of what was searched, even after the "
        "extension: its optimum may lie further out"
    )
    seeds: list[int]
    metric: IntervalModel = Field(description="on the decision part of validation, over its seeds and examples")
    selection: dict[str, float] = Field(description="metrics on the selection part (what chose LR and epoch)")
    decision: dict[str, float]
    test: dict[str, float] | None
    convergence: list[Convergence] = Field(description="per seed")
    trainable: TrainableModel
    drift: DriftModel | None = Field(description="at the kept epoch; None for scratch (no pretrained reference)")
    drift_per_epoch: list[DriftModel]
    learning_curve: list[dict[str, float]] = Field(description="selection-part metrics per epoch (first seed)")
    slices: dict[str, SliceResult]
    train_seconds: float = Field(description="the chosen LR's trials (all its seeds)")
    search_seconds: float = Field(description="all trials of this rung (LR search and seeds)")
    peak_memory: dict[str, Any] | None
    artifact: str | None


ComparisonKind = Literal["climb", "after_stop", "vs_probe", "vs_scratch", "vs_baseline", "test"]
Direction = Literal["better", "worse", "inside_noise"]


class ComparisonKey(_Model):
    """Names one row of `comparisons`."""

    candidate: str
    reference: str
    kind: ComparisonKind


class ComparisonModel(IntervalModel):
    """metric(candidate) - metric(reference), with the interval's fields inline."""

    candidate: str
    reference: str
    kind: ComparisonKind
    outcome: Literal["climb", "stop", "uncertain"] | None = Field(
        description="climb and after_stop rows only (the climb's steps): a reliable gain above min_gain, reliably "
        "below it, or undecided. None on every other row, test rows included: the test split never decides"
    )
    direction: Direction = Field(
        description="the interval of candidate - reference lies wholly above zero (better), wholly below (worse), "
        "or around it (inside_noise); every flag resting on this row uses these words"
    )
    lower_bound: bool = Field(
        False,
        description="the candidate is the scratch control and one of its runs was cut short or still improving: "
        "its metric, and so this difference, are lower bounds",
    )
    agrees: bool | None = Field(
        None,
        description="test rows only: the test split reaches the same verdict as the decision rows on this step "
        "(True), the opposite one (False), or one of them is undecided (None)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ComparisonModel:
        if self.outcome is not None and self.kind not in ("climb", "after_stop"):
            raise ValueError(f"a {self.kind} row carries no climb outcome (got {self.outcome!r})")
        if self.agrees is not None and self.kind != "test":
            raise ValueError(f"only test rows say whether they agree with the decision (a {self.kind} row did)")
        expected = "better" if self.low > 0 else "worse" if self.high < 0 else "inside_noise"
        if self.direction != expected:
            raise ValueError(f"direction {self.direction!r} contradicts the interval [{self.low}, {self.high}]")
        return self


FlagKind = Literal[
    "negative_transfer",
    "scratch_competitive",
    "baseline_competitive",
    "beats_recommended",
    "worse_than_probe",
    "drift",
    "slice_fails",
    "lr_at_edge",
    "underfit",
    "not_converged",
    "test_contradicts",
    "uncertain",
    "rung_failed",
    "trials_failed",
]


class FlagModel(_Model):
    kind: FlagKind
    rung: str
    message: str
    interval: IntervalModel | None
    basis: ComparisonKey | None = Field(None, description="the comparison whose interval this flag carries and words")
    lower_bound: bool = Field(False, description="it rests on a comparison with a scratch control that was cut short")


class DeployModel(_Model):
    """What to deploy: the recommended rung, unless a model without pretraining is reliably better than every
    pretrained rung that ran."""

    kind: Literal["rung", "scratch", "baseline"]
    id: str = Field(description="the rung, the scratch control's id, or the baseline's name")
    why: str
    basis: ComparisonKey | None = Field(
        description="for scratch or baseline: its comparison with the best pretrained rung (interval above zero)"
    )


class DecisionModel(_Model):
    recommended: str = Field(
        description="id of the pretrained rung the climb recommends (its artifact is the ladder's output); the one "
        "to use if pretraining is required when `deploy` names a model without pretraining"
    )
    deploy: DeployModel
    outcome: Literal["stop", "uncertain", "target_reached", "top_of_ladder"] = Field(
        description="how the climb ended: a step reliably below min_gain, a step the evidence could not decide, "
        "the target reached, or the deepest rung taken"
    )
    stopped_at: str | None = Field(description="the rung whose result ended the climb")
    rungs_run: list[str]
    rungs_skipped: list[str]
    compared_after_stop: list[str] = Field(description="rungs run after the climb ended (--all): comparisons only")
    run_all: bool
    why: str
    evidence_needed: list[str] = Field(description="for an uncertain outcome: what would decide it")


class TransferabilityModel(_Model):
    pretrained: dict[str, float | None] = Field(description="logme, h_score (None: not defined for the task)")
    random_init: dict[str, float | None] = Field(
        description="the same architecture, randomly initialised (seeded): the floor"
    )
    n: int
    feature_dim: int
    seconds: float
    task: str = "single_label"
    not_applicable: dict[str, str] = Field(default_factory=dict, description="score -> why the task has none")


class PoolingModel(_Model):
    mode: str
    normalize: bool
    source: str = Field(description="recipe, sentence-transformers (declared by the checkpoint), family, or probe")
    candidates: dict[str, dict[str, Any]] = Field(
        description="when compared: each candidate's converged-probe CV score on the training folds"
    )


class DepthPoint(_Model):
    """A converged probe on one block's pooled output, k-fold CV on training rows: accuracy and log-loss
    (single_label); micro-F1 and binary cross-entropy (multi_label); MSE on the standardised target and R2
    (regression). `DepthCurveModel.ranked_by` names the one the curve ranks by."""

    block: int
    name: str
    accuracy: float | None = None
    accuracy_se: float | None = None
    log_loss: float | None = None
    micro_f1: float | None = None
    micro_f1_se: float | None = None
    bce: float | None = None
    mse: float | None = None
    mse_se: float | None = None
    r2: float | None = None

    def score(self, key: str) -> float:
        value = getattr(self, key)
        assert value is not None, f"depth point {self.block} has no {key}"
        return value


class DepthAdviceModel(_Model):
    """The note's one statement about depth: what the depth curve suggests, reconciled with what the climb
    measured. Every sentence of the note about the curve's depth comes from here."""

    status: Literal["nothing_to_retrain", "confirmed", "not_supported", "undecided", "not_tested"] = Field(
        description="nothing_to_retrain: the curve peaks at the last block; otherwise what the climb said about a "
        "partial_unfreeze rung at the curve's depth: it earned its step, reliably did not, could not tell, or "
        "never decided it (not run, skipped, failed, or no such rung)"
    )
    evidence: str = Field(description="the curve's own evidence: frozen-feature probes, CV on the training rows")
    tested_by: str | None = Field(description="the partial_unfreeze rung that ran at the curve's depth")
    basis: ComparisonKey | None = Field(description="the climb step (or --all comparison) that judged it")
    agrees_with_climb: bool | None = Field(
        description="True: the decision rows measured a gain at the curve's depth, or (peak at the last block) the "
        "climb kept the probe; False: reliably no gain at the curve's depth; None: the climb did not decide it"
    )
    statement: str


class DepthCurveModel(_Model):
    points: list[DepthPoint]
    task: str = "single_label"
    ranked_by: str = Field("accuracy", description="the CV score the curve ranks blocks by")
    higher_is_better: bool = True
    peak: int = Field(description="the deepest block within one standard error of the best")
    blocks_after_peak: int = Field(description="blocks after the peak (0: the peak is the last block)")
    implied_last_k: int = Field(
        description="the last_k partial_unfreeze runs with: the blocks after the peak, at least 1 (so 1 when the "
        "peak is the last block) and at most all but one"
    )
    used: dict[str, int] = Field(description="partial_unfreeze rung id -> the last_k it ran with")
    fixed_by_recipe: list[str] = Field(description="partial_unfreeze rungs whose depth the recipe set")
    partial_rungs: list[str] = Field(
        default_factory=list, description="every partial_unfreeze rung of the ladder, run or not"
    )
    advice: DepthAdviceModel | None = Field(None, description="set once the climb has ended")


class BaselineModel(_Model):
    name: str
    description: str
    metric: IntervalModel = Field(description="on the decision part")
    test: float | None
    params: dict[str, Any]
    seconds: float


class TrialBudget(_Model):
    max_steps: int | None
    min_steps: int | None
    warmup_steps: int | None
    eval_every: int | None
    steps_per_epoch: int | None


class BudgetModel(_Model):
    max_epochs: int = Field(description="train.epochs: the main phase's cap in epochs, turned into optimizer steps")
    early_stopping: dict[str, Any] = Field(description="train.early_stopping as run (patience counts evaluations)")
    scratch_budget: float | None = Field(
        description="ladder.scratch.budget: the control's step cap and minimum as a multiple of the rungs'"
    )
    per_rung: dict[str, TrialBudget] = Field(
        description="per trained rung (and scratch): the step budget of its chosen trial (first seed)"
    )


class SelectionModel(_Model):
    method: str
    selection_rows: int
    decision_rows: int
    seed: int


PhaseKind = Literal["setup", "frozen", "lr_search", "seeds", "baseline", "statistics", "plot", "note"]


class PhaseTime(_Model):
    """One row of the time table: the wall seconds spent in one phase of this session, nested phases excluded."""

    phase: str = Field(description="what ran, in words")
    kind: PhaseKind = Field(
        description="setup: the process's start (when run as the command), splits, backbone, encoding; frozen: frozen-backbone evidence; lr_search, seeds: a rung's "
        "(or scratch's) LR search and its extra seeds; baseline: the cheap baseline; statistics: bootstrap intervals, "
        "comparisons, flags; plot: the figure; note: the artifact's copy, the artifacts `ladder.keep` drops removed"
    )
    rung: str | None = Field(None, description="the rung (or scratch) the phase belongs to")
    seconds: float
    trials: int = Field(0, description="trials trained in it (trials reused by --resume are not counted)")


class TimingModel(_Model):
    """Where the wall time went: `phases` + `earlier_sessions_seconds` + `other_seconds` = `total_seconds`."""

    phases: list[PhaseTime] = Field(description="this session's phases, in the order they first ran")
    earlier_sessions_seconds: float = Field(0.0, description="the sessions before this one (--resume)")
    other_seconds: float = Field(description="the rest of this session: the bookkeeping between the phases")
    beside: list[PhaseTime] = Field(
        default_factory=list,
        description="work a second process did while the phases ran (the scratch control beside the rungs): its "
        "seconds overlap the phases' and are not part of the total",
    )


class TransferNote(_Model):
    format_version: int = FORMAT_VERSION
    created: str
    backbone: dict[str, Any]
    data: dict[str, Any]
    metric: str
    task: str = Field("single_label", description="single_label | multi_label | regression | token_classification")
    lower_is_better: bool = Field(
        False, description="the metric is an error (rmse, mae): every difference is a reduction, positive = better"
    )
    confidence: float
    bootstrap_samples: int
    min_gain: float
    num_processes: int = Field(1, description="processes every trial trained on (Accelerate)")
    seeds: list[int] = Field(description="the seeds any rung trained with")
    max_seeds: int
    chance: float | None = Field(
        None,
        description="the metric of one constant prediction on every decision row: the training rows' most frequent "
        "class; each label's more frequent value (multi_label); their mean (regression)",
    )
    budget: BudgetModel
    lr_multipliers: list[float]
    drift_thresholds: dict[str, float]
    selection: SelectionModel
    pooling: PoolingModel | None
    depth_curve: DepthCurveModel | None
    transferability: TransferabilityModel | None
    rungs: list[RungEntry]
    failed_rungs: list[FailedRung] = Field(default_factory=list, description="rungs whose every trial failed")
    scratch: RungEntry | None
    baseline: BaselineModel | None
    comparisons: list[ComparisonModel]
    decision: DecisionModel
    flags: list[FlagModel]
    regime: RegimeModel | None = Field(None, description="where the task sits in the transfer decision table")
    unfreeze_more_evidence: list[str] = Field(description="what evidence would justify adapting deeper")
    artifact: str | None
    total_seconds: float = Field(
        description="wall time of the command, summed over its sessions (--resume): a session run as the command "
        "(`peft-ladder ladder`, `python -m peft_ladder.train`, `peft_ladder/train.py` under accelerate launch) counts "
        "from its process's start as the OS records it (interpreter start, imports, data and model loading "
        "included); one started from Python (a notebook, a test) from the start of Ladder.run. It ends when this "
        "note was written: the artifact's copy of the note, its card and a Hub push come after. A killed session "
        "counts up to its last finished trial"
    )
    sessions: int = Field(1, description="runs of the command that built this note (1 + each --resume)")
    clock_started: Literal["process_start", "ladder_run"] = Field(
        "ladder_run", description="where the last session's clock started (see total_seconds)"
    )
    timing: TimingModel | None = Field(None, description="where total_seconds went, phase by phase")


def note_schema() -> dict[str, Any]:
    return TransferNote.model_json_schema()


def render_markdown(note: TransferNote) -> str:
    from jinja2 import Environment, StrictUndefined

    env = Environment(undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["pct"] = lambda x: f"{100 * x:.1f}"
    env.filters["num"] = lambda x: f"{x:,}"
    env.filters["f3"] = lambda x: f"{x:.3f}"
    env.filters["lr"] = lambda x: f"{x:.1e}"
    env.filters["ending"] = describe_ending
    env.filters["share"] = lambda x, total: f"{100 * x / total:.1f}%" if total > 0 else "–"
    template = env.from_string(TEMPLATE_PATH.read_text())
    return template.render(
        note=note,
        by_id={r.id: r for r in [*note.rungs, *([note.scratch] if note.scratch else [])]},
        regime_table=table_rows(),
    )


def write_note(note: TransferNote, folder: Path) -> dict[str, Path]:
    """Write transfer_note.json and transfer_note.md, each to a temporary name first, then renamed."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "transfer_note.json", "md": folder / "transfer_note.md"}
    # allow_nan=False: a NaN or inf anywhere is a bug to surface, never invalid JSON to hand on.
    texts = {"json": json.dumps(note.model_dump(mode="json"), indent=2, allow_nan=False), "md": render_markdown(note)}
    for key, path in paths.items():
        write_text_atomic(path, texts[key])
    return paths


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--write-schema"]:
        SCHEMA_PATH.write_text(json.dumps(note_schema(), indent=2) + "\n")
        print(f"wrote {SCHEMA_PATH}")
    else:
        print(json.dumps(note_schema(), indent=2))

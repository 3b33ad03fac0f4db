"""The transfer note: what the ladder did and what the numbers say, as JSON (schema-checked) and Markdown.

The pydantic models below are the schema; `transfer_note.schema.json` next to this file is generated
from them (`python -m peft_ladder.ladder.note --write-schema`) and a test keeps the two in step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from peft_ladder.io import write_text_atomic
from peft_ladder.results import Convergence

FORMAT_VERSION = 2
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
    extended: bool = Field(description="added past the grid's edge because the best LR sat on it")
    failed: str | None = Field(None, description="why the trial stopped (training diverged)")


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
    lr_search: list[LRTrial]
    lr_edge: Literal["low", "high"] | None = Field(description="the chosen LR sits at this edge of what was searched")
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


class ComparisonModel(IntervalModel):
    """metric(candidate) - metric(reference), with the interval's fields inline."""

    candidate: str
    reference: str
    kind: Literal["climb", "after_stop", "vs_probe", "vs_scratch", "vs_baseline", "test"]
    outcome: Literal["climb", "stop", "uncertain"] | None = Field(
        description="for climb steps: reliable gain above min_gain, reliably below it, or undecided"
    )


FlagKind = Literal[
    "negative_transfer",
    "scratch_competitive",
    "baseline_competitive",
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


class DecisionModel(_Model):
    recommended: str = Field(description="id of the rung whose artifact is the ladder's output")
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
    pretrained: dict[str, float]
    random_init: dict[str, float] = Field(description="the same architecture, randomly initialised (seeded): the floor")
    n: int
    feature_dim: int
    seconds: float


class PoolingModel(_Model):
    mode: str
    normalize: bool
    source: str = Field(description="recipe, sentence-transformers (declared by the checkpoint), family, or probe")
    candidates: dict[str, dict[str, Any]] = Field(
        description="when compared: each candidate's converged-probe CV score on the training folds"
    )


class DepthPoint(_Model):
    block: int
    name: str
    accuracy: float = Field(description="converged probe on this block's pooled output, k-fold CV on training rows")
    accuracy_se: float
    log_loss: float


class DepthCurveModel(_Model):
    points: list[DepthPoint]
    peak: int = Field(description="the deepest block within one standard error of the best")
    implied_last_k: int = Field(description="blocks after the peak: what partial_unfreeze retrains")
    used: dict[str, int] = Field(description="partial_unfreeze rung id -> the last_k it ran with")
    fixed_by_recipe: list[str] = Field(description="partial_unfreeze rungs whose depth the recipe set")


class BaselineModel(_Model):
    name: str
    description: str
    metric: IntervalModel = Field(description="on the decision part")
    test: float | None
    params: dict[str, Any]
    seconds: float


class SelectionModel(_Model):
    method: str
    selection_rows: int
    decision_rows: int
    seed: int


class TransferNote(_Model):
    format_version: int = FORMAT_VERSION
    created: str
    backbone: dict[str, Any]
    data: dict[str, Any]
    metric: str
    confidence: float
    bootstrap_samples: int
    min_gain: float
    num_processes: int = Field(1, description="processes every trial trained on (Accelerate)")
    seeds: list[int] = Field(description="the seeds any rung trained with")
    max_seeds: int
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
    unfreeze_more_evidence: list[str] = Field(description="what evidence would justify adapting deeper")
    artifact: str | None
    total_seconds: float = Field(description="wall time of the whole ladder, summed over its sessions (--resume)")
    sessions: int = Field(1, description="runs of the command that built this note (1 + each --resume)")


def note_schema() -> dict[str, Any]:
    return TransferNote.model_json_schema()


def render_markdown(note: TransferNote) -> str:
    from jinja2 import Environment, StrictUndefined

    env = Environment(undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["pct"] = lambda x: f"{100 * x:.1f}"
    env.filters["num"] = lambda x: f"{x:,}"
    env.filters["f3"] = lambda x: f"{x:.3f}"
    env.filters["lr"] = lambda x: f"{x:.1e}"
    template = env.from_string(TEMPLATE_PATH.read_text())
    return template.render(note=note, by_id={r.id: r for r in [*note.rungs, *([note.scratch] if note.scratch else [])]})


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

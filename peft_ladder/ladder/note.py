"""The transfer note: what the ladder did and what the numbers say, as JSON (schema-checked) and Markdown.

The pydantic models below are the schema; `transfer_note.schema.json` next to this file is generated
from them (`python -m peft_ladder.ladder.note --write-schema`) and a test keeps the two in step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FORMAT_VERSION = 1
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
    metric: float
    loss: float
    seconds: float
    chosen: bool


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
    lr: float = Field(description="chosen LR: the head LR for head-only rungs, the backbone LR otherwise")
    head_lr: float
    lr_search: list[LRTrial]
    metric: IntervalModel = Field(description="validation metric at the chosen LR, with its bootstrap interval")
    validation: dict[str, float]
    test: dict[str, float] | None
    trainable: TrainableModel
    drift: DriftModel | None = Field(description="after the last epoch; None for scratch (no pretrained reference)")
    drift_per_epoch: list[DriftModel]
    learning_curve: list[dict[str, float]] = Field(description="validation metrics per epoch")
    slices: dict[str, SliceResult]
    train_seconds: float = Field(description="the chosen trial (all its seeds)")
    search_seconds: float = Field(description="all trials of this rung (LR search and seeds)")
    peak_memory: dict[str, Any] | None
    artifact: str | None


class ComparisonModel(IntervalModel):
    """metric(candidate) - metric(reference), with the interval's fields inline."""

    candidate: str
    reference: str
    kind: Literal["climb", "vs_probe", "vs_scratch"]


class FlagModel(_Model):
    kind: Literal["negative_transfer", "scratch_competitive", "worse_than_probe", "drift", "slice_fails"]
    rung: str
    message: str
    interval: IntervalModel | None


class DecisionModel(_Model):
    recommended: str = Field(description="id of the rung whose artifact is the ladder's output")
    stop_reason: Literal["no_reliable_gain", "target_reached", "top_of_ladder"]
    stopped_at: str | None = Field(description="the rung whose result stopped the climb")
    rungs_run: list[str]
    rungs_skipped: list[str]
    run_all: bool
    why: str


class TransferabilityModel(_Model):
    pretrained: dict[str, float]
    random_init: dict[str, float] = Field(description="the same architecture, randomly initialised: the floor")
    n: int
    feature_dim: int
    seconds: float


class TransferNote(_Model):
    format_version: int = FORMAT_VERSION
    created: str
    backbone: dict[str, Any]
    data: dict[str, Any]
    metric: str
    confidence: float
    bootstrap_samples: int
    min_gain: float
    seeds: list[int]
    lr_multipliers: list[float]
    drift_thresholds: dict[str, float]
    transferability: TransferabilityModel | None
    rungs: list[RungEntry]
    scratch: RungEntry | None
    comparisons: list[ComparisonModel]
    decision: DecisionModel
    flags: list[FlagModel]
    unfreeze_more_evidence: list[str] = Field(description="what evidence would justify adapting deeper")
    artifact: str | None
    total_seconds: float


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
    texts = {"json": json.dumps(note.model_dump(mode="json"), indent=2), "md": render_markdown(note)}
    for key, path in paths.items():
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(texts[key])
        tmp.replace(path)
    return paths


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--write-schema"]:
        SCHEMA_PATH.write_text(json.dumps(note_schema(), indent=2) + "\n")
        print(f"wrote {SCHEMA_PATH}")
    else:
        print(json.dumps(note_schema(), indent=2))

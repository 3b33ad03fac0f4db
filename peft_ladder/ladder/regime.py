"""Where a task sits in the classic transfer-learning decision table, and whether the ladder agreed.

The table (CS231n, "Transfer Learning": dataset size x similarity to the pretraining data) crossed here with
what the ladder measures: labels per class decide the row, the measured domain gap the column. Each cell names
a first move, its warning, and the kinds of model that carry the move out, so the ladder's answer can be
checked against it. The thresholds and their reasons are below; nothing else in the package places a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from peft_ladder.ladder.note import TransferNote

Labels = Literal["few", "moderate", "large"]
Gap = Literal["close", "far"]
# The kinds of model a move can name, shallowest first (scratch and the baseline carry no pretraining).
KINDS = ("probe", "light", "partial", "full", "scratch", "baseline")
PRETRAINED = KINDS[:4]

# Fewer than this many labelled training rows per class is "few": at tens of rows per class a network's
# millions of trainable weights fit the training rows long before they fit the task, which is the table's
# "small dataset" (VTAB-1k, a standard few-label transfer benchmark, has 1,000 rows over 2-397 classes).
FEW_BELOW = 100
# This many per class or more is "large": ImageNet-1k, the scale at which full fine-tuning is safe and training
# from scratch becomes an option, has about 1,300 per class.
LARGE_FROM = 1000

LABEL_REASONS: dict[Labels, str] = {
    "few": f"fewer than {FEW_BELOW} labelled training rows per class: too few for a network's weights to fit the "
    "task rather than the rows",
    "moderate": f"between {FEW_BELOW} and {LARGE_FROM} labelled training rows per class: enough to adapt part of a "
    "network, not enough to train one from scratch",
    "large": f"{LARGE_FROM} or more labelled training rows per class (ImageNet-1k has about 1,300): full fine-tuning "
    "is safe and training from scratch an option",
}


@dataclass(frozen=True)
class Move:
    """A cell of the table: the first thing to try, what to watch for, and the kinds of model it names."""

    first_move: str
    warning: str
    kinds: tuple[str, ...]


TABLE: dict[tuple[Labels, Gap], Move] = {
    ("few", "close"): Move(
        "a linear probe on the last block's features",
        "fine-tuning on this few labels overfits",
        ("probe",),
    ),
    ("few", "far"): Move(
        "a probe on an earlier block's features, or partial unfreezing of a few blocks",
        "the last blocks' features are specific to the source task",
        ("partial",),
    ),
    ("moderate", "close"): Move(
        "light adaptation: a parameter-efficient method (LoRA, BitFit) or the last few blocks",
        "full fine-tuning can still overfit at this size; keep its LR low",
        ("light", "partial"),
    ),
    ("moderate", "far"): Move(
        "partial unfreezing of more blocks, or full fine-tuning at a low LR",
        "the last blocks' features are specific to the source task, and there are too few labels to train from scratch",
        ("partial", "full"),
    ),
    ("large", "close"): Move(
        "fine-tuning, partial or full",
        "a frozen probe likely leaves accuracy on the table",
        ("light", "partial", "full"),
    ),
    ("large", "far"): Move(
        "full fine-tuning, or training from scratch",
        "the pretrained initialisation may still speed convergence even where its features do not transfer",
        ("full", "scratch"),
    ),
}


def table_rows() -> list[tuple[str, str, str]]:
    """The table for the note: per label regime, its range and the close and far cells' moves."""
    ranges = {
        "few": f"few (< {FEW_BELOW})",
        "moderate": f"moderate ({FEW_BELOW}-{LARGE_FROM - 1})",
        "large": f"large (>= {LARGE_FROM})",
    }
    return [(ranges[k], TABLE[(k, "close")].first_move, TABLE[(k, "far")].first_move) for k in ranges]


class GapEvidence(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: Literal["depth_curve", "probe_vs_baseline", "probe_vs_scratch", "transferability"]
    says: Literal["close", "far", "neutral"]
    detail: str


class RegimeModel(BaseModel):
    """Where the task sits in the classic transfer-learning decision table (labels per class x domain gap),
    the table's first move and warning there, and whether the ladder's own evidence agreed."""

    model_config = ConfigDict(extra="forbid")

    rows_per_class: float = Field(description="training rows per class (mean over the classes)")
    min_class_rows: int = Field(description="training rows of the smallest class")
    labels: Literal["few", "moderate", "large"]
    labels_why: str
    gap: Literal["close", "far", "unclear"] = Field(description="the majority of the non-neutral gap evidence")
    gap_evidence: list[GapEvidence]
    first_move: str
    warning: str
    move_kinds: list[str] = Field(description="the kinds of model that carry out the first move")
    ladder_answer: str = Field(description="the kind of model the ladder ended with (deploy, else recommended)")
    agreed: bool = Field(description="the ladder's answer is one the table's first move names")
    why: str


def labels_regime(rows_per_class: float) -> Labels:
    if rows_per_class < FEW_BELOW:
        return "few"
    return "large" if rows_per_class >= LARGE_FROM else "moderate"


def adaptation_kind(strategy: str) -> str:
    """probe (head only), light (parameter-efficient), partial, full or scratch, from a strategy's name."""
    if strategy in ("partial_unfreeze", "full", "scratch"):
        return {"partial_unfreeze": "partial"}.get(strategy, strategy)
    from peft_ladder.strategies import get_strategy

    try:
        return "light" if get_strategy(strategy).trains_backbone else "probe"
    except (KeyError, ValueError):
        return "light"


def _iv(estimate: float, low: float, high: float) -> str:
    return f"{estimate:+.3f} [{low:+.3f}, {high:+.3f}]"


def gap_evidence(note: TransferNote) -> list[GapEvidence]:
    """What the run measured about the domain gap: the depth curve (do the last blocks fit as well as earlier
    ones?), the frozen probe against the cheap baseline and scratch (do the frozen features beat models without
    pretraining?), and transferability (is LogME above the random-init floor?)."""
    found: list[GapEvidence] = []
    curve = note.depth_curve
    if curve is not None and curve.advice is not None:
        if curve.blocks_after_peak == 0:
            found.append(
                GapEvidence(
                    source="depth_curve",
                    says="close",
                    detail=f"the last block's frozen features fit the task as well as any earlier block's "
                    f"({curve.advice.evidence})",
                )
            )
        else:
            found.append(
                GapEvidence(
                    source="depth_curve",
                    says="far",
                    detail=f"an earlier block's frozen features fit the task better than the last block's "
                    f"({curve.advice.evidence}): the last blocks are specific to the source task",
                )
            )
    probe = next((r for r in note.rungs if adaptation_kind(r.strategy) == "probe"), None)
    for kind, source, name in (
        ("vs_baseline", "probe_vs_baseline", "the cheap baseline"),
        ("vs_scratch", "probe_vs_scratch", "scratch"),
    ):
        c = next((c for c in note.comparisons if probe and c.kind == kind and c.reference == probe.id), None)
        if c is None:
            continue
        iv = f"{name} minus the probe: {_iv(c.estimate, c.low, c.high)}"
        if c.direction == "better":
            says, detail = "far", f"{name} is reliably better than the frozen probe ({iv})"
        elif c.direction == "worse" and c.lower_bound:
            says = "neutral"
            detail = f"{name} is reliably worse than the frozen probe ({iv}), but it was cut short: the gap may close"
        elif c.direction == "worse":
            says, detail = "close", f"the frozen probe is reliably better than {name} ({iv})"
        else:
            says, detail = "neutral", f"{name} and the frozen probe are not reliably different ({iv})"
        found.append(GapEvidence(source=source, says=says, detail=detail))
    t = note.transferability
    if t is not None and t.pretrained["logme"] is not None and t.random_init["logme"] is not None:
        above = t.pretrained["logme"] > t.random_init["logme"]
        found.append(
            GapEvidence(
                source="transferability",
                says="close" if above else "far",
                detail=f"LogME of the pretrained features {t.pretrained['logme']:.3f} is "
                f"{'above' if above else 'not above'} that of a random-init copy ({t.random_init['logme']:.3f})",
            )
        )
    return found


# The table counts rows per class; a multi-label task counts the rows that carry each label, a regression all rows,
# a tagger the words that carry each tag.
_TASK_UNITS = {
    "multi_label": "labelled training rows per label",
    "regression": "training rows (one target)",
    "token_classification": "tagged training words per tag",
}


def _in_task_units(reason: str, task: str) -> str:
    return reason.replace("labelled training rows per class", _TASK_UNITS.get(task, "labelled training rows per class"))


def place(note: TransferNote, class_counts: list[int]) -> RegimeModel:
    """The run's cell in the table, the cell's move, and whether the ladder's answer is one it names.

    Args:
        note: a note whose decision, comparisons and depth advice are set.
        class_counts: training rows per class.
    """
    counts = list(class_counts) or [0]
    per_class = sum(counts) / len(counts)
    labels = labels_regime(per_class)
    evidence = gap_evidence(note)
    far = sum(e.says == "far" for e in evidence)
    close = sum(e.says == "close" for e in evidence)
    gap: Literal["close", "far", "unclear"] = "far" if far > close else "close" if close > far else "unclear"
    if gap == "unclear":
        near, distant = TABLE[(labels, "close")], TABLE[(labels, "far")]
        move = Move(
            f"with the gap unclear, the cheaper cell's move first: {near.first_move} (the far cell's: "
            f"{distant.first_move})",
            f"{near.warning}; if the domain is far, {distant.warning}",
            tuple(dict.fromkeys([*near.kinds, *distant.kinds])),
        )
    else:
        move = TABLE[(labels, gap)]
    deploy = note.decision.deploy
    by_id = {r.id: r for r in note.rungs}
    if deploy.kind != "rung":
        answer, answer_text = deploy.kind, f"`{deploy.id}` ({deploy.kind}, no pretraining)"
    else:
        rung = by_id[note.decision.recommended]
        answer, answer_text = adaptation_kind(rung.strategy), f"`{rung.id}` ({adaptation_kind(rung.strategy)})"
    agreed = answer in move.kinds
    if agreed:
        why = f"The ladder ended at {answer_text}, a kind of model the table's first move names: its evidence agreed."
    elif answer in ("scratch", "baseline"):
        why = (
            f"The ladder ended at {answer_text}: a model without pretraining beat every pretrained rung, which this "
            f"cell does not foresee ({', '.join(move.kinds)}); this backbone's pretraining does not fit the task."
        )
    else:
        ranks = [PRETRAINED.index(k) for k in move.kinds if k in PRETRAINED]
        deeper = bool(ranks) and PRETRAINED.index(answer) > max(ranks)
        why = (
            f"The ladder ended at {answer_text}, not a kind the table's first move names ({', '.join(move.kinds)}): "
            + (
                "adapting deeper than the table suggests earned its steps on the decision rows."
                if deeper
                else "the adaptation the table suggests did not earn its step on the decision rows, or the climb "
                "did not reach it."
            )
        )
    return RegimeModel(
        rows_per_class=per_class,
        min_class_rows=min(counts),
        labels=labels,
        labels_why=_in_task_units(LABEL_REASONS[labels], note.task),
        gap=gap,
        gap_evidence=evidence,
        first_move=move.first_move,
        warning=move.warning,
        move_kinds=list(move.kinds),
        ladder_answer=answer,
        agreed=agreed,
        why=why,
    )

"""What a run hands back: typed results, written as `metrics.json` and read back by the ladder and the tests."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Convergence(_Model):
    """How training ended (see `peft_ladder/budget.py` for the rules).

    `converged` and `cut_short` are never both true: a trial is converged when the selection loss flattened
    (no improvement by `min_delta` over `patience` evaluations after the minimum budget), and cut short when a
    rule ended it while it may still have been improving (the step cap, or a pruning rule).
    """

    method: Literal["lbfgs", "steps"]
    converged: bool = Field(description="lbfgs: the gradient vanished; steps: the selection loss flattened")
    still_improving: bool = Field(description="the step cap ended the trial while the selection loss still improved")
    stop_reason: Literal["solved", "patience", "budget", "pruned"] = Field(
        "budget",
        description="solved: a converged solver; patience: the loss flattened after the minimum budget; budget: "
        "the step cap; pruned: a search rule ended it early",
    )
    cut_short: bool = Field(False, description="ended by a rule that may have stopped it before convergence")
    max_steps: int | None = Field(None, description="the step cap of the main phase")
    min_steps: int | None = Field(None, description="no stop before this step: warmup plus the minimum at peak LR")
    warmup_steps: int | None = None
    eval_every: int | None = Field(None, description="optimizer steps between evaluations on the selection rows")
    steps_run: int | None = Field(None, description="main-phase optimizer steps trained")
    best_step: int | None = Field(None, description="main-phase step of the lowest selection loss (0: the start)")
    best_loss: float | None = None
    restored_best: bool | None = Field(None, description="the run ended with the weights of best_step")
    steps_per_epoch: int | None = None
    pruned_because: str | None = Field(None, description="stop_reason pruned: the rule's reason, with its numbers")


class SplitResult(_Model):
    """One evaluated split: loss, the recipe's metrics, rows, and the named slices' metrics."""

    loss: float
    n: int
    metrics: dict[str, float]
    slices: dict[str, dict[str, float]] = Field(default_factory=dict)

    def value(self, name: str) -> float:
        """`loss` or one of the metrics, by name."""
        return self.loss if name == "loss" else self.metrics[name]


class CacheRecord(_Model):
    """Whether the frozen part ran from cached activations, and why (or why not)."""

    used: bool
    reason: str
    cut: str | None = None
    splits: dict[str, int] = Field(default_factory=dict)
    hits: int = 0
    misses: int = 0
    seconds: float = 0.0
    dir: str | None = None


class FastPaths(_Model):
    optimizer: str
    channels_last: bool
    compile: bool
    eval_batch_size: int


class RunResult(_Model):
    """Everything one run measured. `splits` holds validation (and decision, test when present)."""

    strategy: str
    precision: str
    device: str
    num_processes: int
    train_seconds: float
    peak_memory: dict[str, Any] | None
    steps: int
    phase1_epochs_run: int
    lpft: bool
    stopping: Convergence
    resumes: list[dict[str, Any]] = Field(
        default_factory=list,
        description="each --resume that continued with a setting changed or added at its default (neither changes "
        "what is learned): the step, the checkpoint, and the changes",
    )
    solver: dict[str, Any] | None = Field(description="the solved head's record (probe, or LP-FT's first phase)")
    cache: CacheRecord
    fast_paths: FastPaths
    trainable: dict[str, Any]
    history: list[dict[str, Any]] = Field(
        description="per evaluation: epoch, step, main-phase step, phase, validation metrics, drift"
    )
    preprocessing: dict[str, Any]
    data_notes: list[str]
    task: dict[str, Any] = Field(
        default_factory=lambda: {"name": "single_label"},
        description="what the run predicts: name (single_label | multi_label | regression); for regression the "
        "training rows' target mean and std the model's output is scaled back by",
    )
    splits: dict[str, SplitResult]

    @property
    def validation(self) -> SplitResult:
        return self.splits["validation"]

"""What a run hands back: typed results, written as `metrics.json` and read back by the ladder and the tests."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Convergence(_Model):
    """How training ended."""

    method: Literal["lbfgs", "epochs"]
    converged: bool = Field(description="lbfgs: the gradient vanished; epochs: the validation loss stopped improving")
    still_improving: bool = Field(description="the epoch budget ran out while the validation loss was at its best")
    max_epochs: int | None = None
    epochs_run: int | None = None
    best_epoch: int | None = None
    best_loss: float | None = None
    stopped_early: bool | None = None
    restored_best: bool | None = None


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
    solver: dict[str, Any] | None = Field(description="the solved head's record (probe, or LP-FT's first phase)")
    cache: CacheRecord
    fast_paths: FastPaths
    trainable: dict[str, Any]
    history: list[dict[str, Any]] = Field(description="per epoch: epoch, step, phase, validation metrics, drift")
    preprocessing: dict[str, Any]
    data_notes: list[str]
    splits: dict[str, SplitResult]

    @property
    def validation(self) -> SplitResult:
        return self.splits["validation"]

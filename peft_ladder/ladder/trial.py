"""One trial of a rung: a strategy at one LR and one seed, trained by the `Engine` on the ladder's shared
splits, its results and predictions kept in its own folder (and reused by `--resume`)."""

from __future__ import annotations

import gc
import logging
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from peft_ladder.config import RunConfig, RungSpec, TrainConfig, dump_config
from peft_ladder.data import Encoded, Splits
from peft_ladder.distributed import process_state
from peft_ladder.engine import Engine
from peft_ladder.io import replace_atomic
from peft_ladder.ladder.pruning import Curve
from peft_ladder.metrics import reads_scores
from peft_ladder.results import RunResult
from peft_ladder.strategies import get_strategy

HEAD_FILE = "head.safetensors"
PREDICTIONS_FILE = "predictions.npz"
# Kept in the predictions file: main-phase evaluation steps and every selection row's loss at each, and the
# final model's (the pruning rules' evidence; a solved probe has only the final).
CURVE_STEPS, CURVE_LOSSES = "selection_curve_steps", "selection_curve_losses"
FINAL_LOSSES = "validation_row_losses"

logger = logging.getLogger(__name__)


@dataclass
class TrialResult:
    """A finished trial.

    Attributes:
        rung: the rung's id.
        lr: the LR searched (the head LR of head-only rungs, the backbone LR otherwise); None when solved.
        head_lr: the head's LR.
        seed: the training seed.
        folder: where its config, metrics, predictions and artifact are.
        results: the engine's results (`metrics.json`).
        predictions: `<split>_predictions` (what the ladder's metric reads: predictions, or a multi-label mAP's
            probabilities) and `<split>_labels` per evaluated split.
    """

    rung: str
    lr: float | None
    head_lr: float
    seed: int
    folder: Path
    results: RunResult
    predictions: dict[str, np.ndarray]

    def preds(self, split: str) -> np.ndarray:
        return self.predictions[f"{split}_predictions"]

    def labels(self, split: str) -> np.ndarray:
        return self.predictions[f"{split}_labels"]

    def head_state(self) -> dict[str, torch.Tensor]:
        return load_file(str(self.folder / HEAD_FILE))

    @property
    def pruned(self) -> bool:
        return self.results.stopping.stop_reason == "pruned"

    def curve(self) -> Curve:
        """Its selection losses at each main-phase evaluation (the pruning rules compare later trials to it)."""
        label = f"{self.rung} at lr {self.lr:.1e}" if self.lr is not None else self.rung
        if CURVE_STEPS in self.predictions:
            steps, losses = self.predictions[CURVE_STEPS], self.predictions[CURVE_LOSSES]
        else:  # solved: its final model is the whole curve
            steps, losses = np.zeros(1, dtype=np.int64), self.predictions[FINAL_LOSSES][None]
        return Curve(label, steps, losses, final=not self.pruned)


def _scaled(steps: int, factor: float) -> int:
    """`steps x factor` rounded up (after rounding away float noise: 20 x 1.1 is 22, not 23)."""
    return math.ceil(round(steps * factor, 9))


def control_budget(train: TrainConfig, budget: float) -> dict[str, Any]:
    """The `train` fields of the from-scratch control: `budget` times the rungs' step cap (`epochs`) and minimum at
    peak LR (`early_stopping.min_steps_at_peak`), both rounded up."""
    stopping = train.early_stopping
    return {
        "epochs": _scaled(train.epochs, budget),
        "early_stopping": stopping.model_copy(
            update={"min_steps_at_peak": _scaled(stopping.min_steps_at_peak, budget)}
        ),
    }


def trial_lrs(*, trains_backbone: bool, role: str, lr: float, head_lr: float) -> dict[str, float]:
    """The `train` LR fields of a trial at search LR `lr`: a frozen-backbone rung searches its head LR; the
    scratch control one LR for the whole network (random weights everywhere: the from-scratch recipe); any other
    rung its backbone LR, with the head at least as fast (`head_lr`, or `lr` when that is higher)."""
    if not trains_backbone:
        return {"head_lr": lr}
    if role == "scratch":
        return {"head_lr": lr, "backbone_lr": lr}
    return {"backbone_lr": lr, "head_lr": max(head_lr, lr)}


class TrialRunner:
    """Builds each trial's config from the ladder's, runs it, and keeps its files.

    Args:
        config: the ladder's run config (its `train`, `data`, `backbone` are every trial's).
        splits: the shared splits (with the decision part held out).
        encoded: the shared tokenized / transformed splits (`encode_splits` output), or None per trial.
        callbacks: engine callbacks for pretrained rungs (drift).
        keep_checkpoints: keep each trial's checkpoints (ladder.keep == "all").
        resume: reuse a finished trial whose resolved config is identical.
        on_trial_end: called after each trial that trained (the ladder's session clock).
    """

    def __init__(
        self,
        config: RunConfig,
        splits: Splits,
        encoded: Encoded | None,
        callbacks: list[Any],
        *,
        keep_checkpoints: bool,
        resume: bool,
        on_trial_end: Callable[[], None] | None = None,
    ):
        self.config = config
        self.splits = splits
        self.encoded = encoded
        self.callbacks = callbacks
        self.keep_checkpoints = keep_checkpoints
        self.resume = resume
        self.on_trial_end = on_trial_end
        self.state = process_state()

    def trial_config(
        self, rung: RungSpec, folder: Path, *, role: str, lr: float | None, seed: int, head_lr: float, warm_head: bool
    ) -> RunConfig:
        """The single-rung config of one trial, derived from the ladder's (no dict round trip).

        The scratch control trains under `ladder.scratch.budget` times the rungs' step cap (`train.epochs`) and
        minimum at peak LR (`train.early_stopping.min_steps_at_peak`), both rounded up: from random weights a
        network needs several times the steps fine-tuning does, and an undertrained control flatters every rung.
        """
        base = self.config.train
        strategy = get_strategy(rung.name)
        update: dict[str, Any] = {"seed": seed}
        if role == "scratch" and self.config.ladder is not None:
            update |= control_budget(base, self.config.ladder.scratch.budget)
        if lr is not None:
            update |= trial_lrs(trains_backbone=strategy.trains_backbone, role=role, lr=lr, head_lr=head_lr)
        if warm_head:
            # The probe already solved the head: LP-FT's first phase is not paid again.
            update["lpft"] = base.lpft.model_copy(update={"enabled": False})
        return self.config.model_copy(
            update={
                "strategy": rung.strategy_dict,
                "ladder": None,
                "train": base.model_copy(update=update),
                "output_dir": str(folder),
                "overwrite_output_dir": True,
            }
        )

    def run(
        self,
        rung: RungSpec,
        folder: Path,
        *,
        role: str,
        lr: float | None,
        seed: int,
        head_lr: float,
        head_state: dict[str, torch.Tensor] | None = None,
        pruner: Callable[[list[tuple[int, np.ndarray]], int], str | None] | None = None,
    ) -> TrialResult:
        """Train one trial (or reuse the finished one of an interrupted ladder); `pruner` may end it early
        (`Engine`'s argument)."""
        trial_cfg = self.trial_config(
            rung, folder, role=role, lr=lr, seed=seed, head_lr=head_lr, warm_head=head_state is not None
        )
        done = self._finished(folder, trial_cfg)
        if done is not None:
            if self.state.is_main_process:
                logger.info(f"ladder: reusing finished trial {folder}")
            return TrialResult(rung.id, lr, trial_cfg.train.head_lr, seed, folder, *done)
        callbacks = self.callbacks if role == "rung" else []
        engine = Engine(
            trial_cfg,
            splits=self.splits,
            head_state=head_state,
            callbacks=callbacks,
            encoded=self.encoded,
            pruner=pruner,
        )
        results = engine.run()
        predictions = {}
        # The ladder's statistics read what its metric reads: a multi-label mAP ranks probabilities.
        ranked = self.config.ladder is not None and reads_scores(self.config.ladder.metric or "")
        for split, (preds, labels) in engine.predictions.items():
            scores = engine.scores.get(split)
            predictions[f"{split}_predictions"] = np.asarray(scores if ranked and scores is not None else preds)
            predictions[f"{split}_labels"] = np.asarray(labels)
        predictions[FINAL_LOSSES] = engine.row_losses["validation"].astype(np.float32)
        if engine.selection_curve:
            predictions[CURVE_STEPS] = np.asarray([s for s, _ in engine.selection_curve], dtype=np.int64)
            predictions[CURVE_LOSSES] = np.stack([r for _, r in engine.selection_curve]).astype(np.float32)
        if self.state.is_main_process:
            if not get_strategy(rung.name).trains_backbone:
                head = {k: v.detach().cpu().contiguous() for k, v in engine.adapted.backbone.head_state_dict().items()}
                save_file(head, str(folder / HEAD_FILE))
            replace_atomic(folder / PREDICTIONS_FILE, lambda tmp: np.savez(tmp, **predictions), suffix=".npz")
            if not self.keep_checkpoints:
                shutil.rmtree(folder / "checkpoints", ignore_errors=True)
        self.state.wait_for_everyone()
        del engine
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if self.on_trial_end is not None:
            self.on_trial_end()
        return TrialResult(rung.id, lr, trial_cfg.train.head_lr, seed, folder, results, predictions)

    def _finished(self, folder: Path, trial_cfg: RunConfig) -> tuple[RunResult, dict[str, np.ndarray]] | None:
        """A trial of an earlier, interrupted ladder with the same resolved config, when resuming."""
        if not self.resume:
            return None
        files = [folder / "config.yaml", folder / "metrics.json", folder / PREDICTIONS_FILE]
        if not all(f.exists() for f in files) or files[0].read_text() != dump_config(trial_cfg):
            return None
        with np.load(folder / PREDICTIONS_FILE, allow_pickle=False) as data:
            predictions = {k: data[k] for k in data.files}
        return RunResult.model_validate_json((folder / "metrics.json").read_text()), predictions

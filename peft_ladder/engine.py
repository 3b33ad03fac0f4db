"""The one training loop, for every strategy, on Accelerate.

Lifecycle (torchtune-style): `setup()` builds data, model, optimizer, scheduler and trackers;
`train()` runs the LP-FT phases with checkpoints; `finish()` evaluates, saves the artifact and
writes metrics. `run()` does all three.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, TorchDynamoPlugin, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

import peft_ladder.logs  # noqa: F401 - importing it gives peft_ladder's messages their handler
from peft_ladder.artifacts import save_adapted
from peft_ladder.backbones.grad_checkpointing import enable_gradient_checkpointing
from peft_ladder.budget import StepBudget, StoppingState, convergence, observe
from peft_ladder.build import backbone_for, build_splits
from peft_ladder.cache import CachedData, TailUnsupported, build_cached_data, cached_logits, plan_cut
from peft_ladder.checkpoints import (
    CheckpointRefused,
    Payload,
    compare_configs,
    list_checkpoints,
    load_for_resume,
    save_checkpoint,
)
from peft_ladder.config import RunConfig, dump_config
from peft_ladder.data import Encoded, Splits, encode_splits
from peft_ladder.distributed import process_state
from peft_ladder.evaluation import collect, evaluate, score
from peft_ladder.features import penultimate_features
from peft_ladder.hub.push import push_run
from peft_ladder.io import write_text_atomic
from peft_ladder.memory import PeakMemory
from peft_ladder.precision import resolve_precision
from peft_ladder.probe import fit_linear_head
from peft_ladder.results import CacheRecord, Convergence, FastPaths, RunResult
from peft_ladder.run_folder import claim, settle
from peft_ladder.run_lock import release
from peft_ladder.schedule import build_scheduler, start_phase2
from peft_ladder.strategies import apply_strategy
from peft_ladder.tasks import IGNORE, choose_threshold

logger = logging.getLogger(__name__)


class LossWindow:
    """The training loss summed on the device since the last read-back: no host sync per step."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.count = 0

    def add(self, loss: torch.Tensor) -> None:
        loss = loss.detach().float()
        self.total = loss if self.total is None else self.total + loss
        self.count += 1

    def pop(self) -> float:
        """The mean since the last pop (one host sync)."""
        mean = float("nan") if self.total is None else self.total.item() / self.count
        self.total, self.count = None, 0
        return mean


@dataclass
class TrainState:
    """Where the run is; saved in every checkpoint (registered with Accelerate)."""

    epoch: int = 0
    step: int = 0
    batch_in_epoch: int = 0
    phase: int = 1
    phase1_best_loss: float = math.inf
    phase1_bad_epochs: int = 0
    phase1_epochs_run: int = 0
    solver: dict[str, Any] | None = None  # the solved head's record, once solved (probe, or LP-FT phase 1)
    main_step: int = 0  # optimizer steps of the main phase (phase 2 under LP-FT): what the budget counts
    started_main: bool = False  # the main phase's starting point was evaluated
    stopping: StoppingState = field(default_factory=StoppingState)  # early stopping (budget.py)
    history: list[dict[str, Any]] = field(default_factory=list)
    # Each resume: the step, the checkpoint and the settings that differed (none can change the result).
    resumes: list[dict[str, Any]] = field(default_factory=list)
    # The precision the run trains at, as resolved (`auto` becomes bf16 or no by the hardware): a resume must match.
    precision: str | None = None

    def state_dict(self) -> dict[str, Any]:
        state = asdict(self)
        state["stopping"] = self.stopping.to_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            if key == "phase1_best_loss" and value is None:
                value = math.inf  # strict JSON has no infinity; the checkpoint wrote null
            if key == "stopping":
                value = StoppingState.from_dict(value)
            setattr(self, key, value)


class BestWeights:
    """The trainable tensors of the best epoch so far (on CPU); checkpointed with the run, for resume."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}


class Diverged(ValueError):
    """The loss or a gradient stopped being finite: the run stops; the message says at which step, with which LRs,
    and which checkpoint (if any) is kept."""


class Engine:
    """Train one rung: a backbone, a strategy, a dataset, a budget.

    Args:
        config: the validated run config (with `strategy` set).
        resume: "latest" or a checkpoint folder to continue from.
        splits: already-made splits to train on (the ladder shares one set across rungs).
        head_state: trained head tensors to start from (the ladder's probe head, LP-FT); see
            `Backbone.head_state_dict`. Loaded before the strategy is applied.
        callbacks: called as `callback(engine, record)` after each epoch's validation; they may
            add entries to `record`, which goes into the run history (the ladder's drift figures).
        encoded: `encode_splits` output for these `splits` and this backbone's preprocessing (the ladder
            tokenizes once for every rung); default: encode here.
        pruner: called as `pruner(curve, max_steps)` after each main-phase evaluation past the minimum budget,
            with the (main step, every selection row's loss) of each evaluation so far and the cap; a reason
            (str) ends the trial there (`stop_reason` "pruned"). The ladder's LR search rules
            (`ladder/pruning.py`).
    """

    def __init__(
        self,
        config: RunConfig,
        resume: str | None = None,
        *,
        splits: Splits | None = None,
        head_state: dict[str, torch.Tensor] | None = None,
        callbacks: Sequence[Callable[[Engine, dict[str, Any]], None]] = (),
        encoded: Encoded | None = None,
        pruner: Callable[[list[tuple[int, np.ndarray]], int], str | None] | None = None,
    ):
        if config.strategy is None:
            raise ValueError(
                "this recipe has no `strategy`; a `ladder` recipe runs with `peft-ladder ladder` or `Ladder(config).run()`."
            )
        self.config = config
        self.resume = resume
        self.output_dir = Path(config.output_dir)
        self.state = TrainState()
        self.best = BestWeights()
        self.run_id = uuid.uuid4().hex  # checkpoints carry it: pruning only ever removes this run's
        self.resumed_changes: dict[str, Any] = {}
        self.splits = splits
        self.head_state = head_state
        self.callbacks = list(callbacks)
        self.encoded = encoded
        self.pruner = pruner
        # Main-phase evaluations: (main step, every selection row's loss); the trial runner keeps them.
        self.selection_curve: list[tuple[int, np.ndarray]] = []
        self.predictions: dict[str, tuple[Any, Any]] = {}
        self.scores: dict[str, Any] = {}  # multi-label: each split's probabilities (what mAP reads)
        self.row_losses: dict[str, np.ndarray] = {}  # per split, the final model's loss on every row
        # Since the last check, per micro-batch: (the optimizer step it belongs to, loss or gradient not finite),
        # kept on the device; and the LR range of each parameter role at each of those steps (host values).
        self._finite_flags: list[tuple[int, torch.Tensor]] = []
        self._step_lrs: dict[int, dict[str, tuple[float, float]]] = {}

    # ---- setup -------------------------------------------------------------------------------
    def setup(self) -> Engine:
        """Build everything a run needs, step by step (each step reads what the previous ones built)."""
        self._setup_accelerator()
        self._claim_output_dir()
        encoded, collate = self._setup_data_and_model()
        train_module, encoded, collate = self._setup_cache(encoded, collate)
        self._setup_loaders(encoded, collate)
        self._setup_optimizer(train_module)
        self._setup_phases()
        self._setup_resume_and_tracking()
        return self

    def _claim_output_dir(self) -> None:
        """An earlier run in output_dir is refused unless overwrite (which says what it removes) or resume."""
        acc = self.accelerator
        if acc.is_main_process:
            removed = claim(
                self.output_dir, "train", overwrite=self.config.overwrite_output_dir, resume=bool(self.resume)
            )
            if removed:
                logger.info(f"overwrite: removed the earlier run's {', '.join(removed)} from {self.output_dir}")
        if self.resume == "latest" and not list_checkpoints(self.output_dir / "checkpoints"):
            # Known now: say it before the data, the model and the cache are built.
            raise FileNotFoundError(
                f"--resume: no checkpoint under {self.output_dir / 'checkpoints'}; start without --resume."
            )
        acc.wait_for_everyone()

    def _setup_accelerator(self) -> None:
        tcfg = self.config.train
        fresh_accelerator_state()
        resolved = resolve_precision(tcfg.mixed_precision, process_state().device.type)  # `auto` by the hardware
        self.accelerator = Accelerator(
            mixed_precision=resolved,
            gradient_accumulation_steps=tcfg.gradient_accumulation_steps,
            log_with=self._trackers(),
            project_config=ProjectConfiguration(
                project_dir=str(self.output_dir), logging_dir=str(self.output_dir / "logs")
            ),
            # Epoch order is a function of (seed, epoch): resuming replays exactly the same batches.
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
            # torch.compile through Accelerate, which also unwraps the compiled module when saving; its shape
            # policy is set once the data is known (_setup_optimizer).
            dynamo_plugin=TorchDynamoPlugin(backend=tcfg.compile_backend) if tcfg.compile else None,
        )
        self.precision = self._check_precision(resolved)
        self.state.precision = self.precision
        set_seed(tcfg.seed)

    def _setup_data_and_model(self) -> tuple[dict[str, Any], Any]:
        """Splits, the backbone with the strategy applied, and the encoded splits (shared ones when given)."""
        cfg, acc = self.config, self.accelerator
        if self.splits is None:
            self.splits = build_splits(cfg, acc)
        self.task = self.splits.task
        self.metric_names = cfg.metric_names(self.task.name)
        logger.info(f"task: {self.task.describe()}; metrics {', '.join(self.metric_names)}")
        backbone = backbone_for(cfg, self.splits.label_names, task=self.task)
        if self.head_state is not None:
            backbone.load_head_state(self.head_state)
        self.adapted = apply_strategy(backbone, cfg.strategy_name(), cfg.strategy_options())
        if cfg.train.gradient_checkpointing:
            logger.info(f"gradient checkpointing: {enable_gradient_checkpointing(self.adapted.backbone)}")
        if self.encoded is None:
            with acc.main_process_first():
                self.encoded = encode_splits(self.splits, self.adapted.backbone, cfg.data)
        encoded, collate, self.preprocessing = self.encoded.datasets, self.encoded.collate, self.encoded.preprocessing
        self.adapted.model.to(acc.device)
        self._plain_train, self._plain_collate = encoded["train"], collate  # the solver's features come from these
        self.channels_last = self._use_channels_last()
        if self.channels_last:
            self.adapted.model.to(memory_format=torch.channels_last)
        return encoded, collate

    def _setup_cache(self, encoded: dict[str, Any], collate: Any) -> tuple[torch.nn.Module, dict[str, Any], Any]:
        """What trains: the cached tail on cached activations when there is a frozen part, else the model."""
        with self.accelerator.main_process_first():
            self.cached = self._cache(encoded, collate)
        if self.cached is not None:
            self.logits_fn = cached_logits
            return self.cached.tail, self.cached.datasets, self.cached.collate
        self.logits_fn = self._model_logits
        return self.adapted.model, encoded, collate

    def _setup_loaders(self, encoded: dict[str, Any], collate: Any) -> None:
        cfg, tcfg = self.config, self.config.train
        pin = self.accelerator.device.type == "cuda"
        eval_bs = tcfg.eval_batch_size or 2 * tcfg.batch_size
        workers = 0 if self.cached is not None else cfg.data.num_workers  # cached rows are in memory

        def loader(ds, bs: int, shuffle: bool) -> DataLoader:
            # A private generator: creating an iterator then draws no number from the global RNG, so a
            # resumed run (which starts its iterator mid-epoch) keeps the same dropout masks.
            return DataLoader(
                ds,
                batch_size=bs,
                shuffle=shuffle,
                collate_fn=collate,
                num_workers=workers,
                pin_memory=pin,
                persistent_workers=workers > 0,
                generator=torch.Generator().manual_seed(tcfg.seed),
            )

        self._train_loader = loader(encoded["train"], tcfg.batch_size, True)
        self._eval_loaders = {name: loader(ds, eval_bs, False) for name, ds in encoded.items() if name != "train"}

    def _setup_optimizer(self, train_module: torch.nn.Module) -> None:
        tcfg = self.config.train
        groups = self.adapted.param_groups(
            head_lr=tcfg.head_lr,
            backbone_lr=tcfg.backbone_lr,
            weight_decay=tcfg.weight_decay,
            layer_decay=tcfg.layer_decay,
        )
        optimizer = torch.optim.AdamW(groups, **self._optimizer_impl())
        if tcfg.compile:
            # Text batches vary in length (padded to a multiple of 8): one graph with a symbolic length instead
            # of one per length. Images keep static shapes (the last short batch compiles once more). Set here,
            # explicitly: `accelerate launch` otherwise passes dynamic=False, a recompile per new length.
            self.accelerator.state.dynamo_plugin.dynamic = self.splits.modality == "text"
        self.model, self.optimizer, self.train_loader, *loaders = self.accelerator.prepare(
            train_module, optimizer, self._train_loader, *self._eval_loaders.values()
        )
        self.eval_loaders = dict(zip(self._eval_loaders, loaders))

    def _setup_phases(self) -> None:
        """LP-FT or not, the head solved or trained, and one LR schedule across both phases."""
        cfg, tcfg = self.config, self.config.train
        strategy_cls = self.adapted.strategy_cls
        self.lpft = (
            strategy_cls.trains_backbone and strategy_cls.from_pretrained and cfg.backbone.pretrained
            if tcfg.lpft.enabled == "auto"
            else bool(tcfg.lpft.enabled) and strategy_cls.trains_backbone
        )
        # The probe itself (linear_probe with solver lbfgs), or LP-FT's head phase, solved to convergence.
        self.solve_probe = getattr(self.adapted.config, "solver", None) == "lbfgs"
        self.solve_lpft_head = self.lpft and tcfg.lpft.head == "solver"
        self.phase1_epochs = tcfg.lpft.head_epochs if self.lpft and not self.solve_lpft_head else 0
        self.state.phase = 1 if self.phase1_epochs else 2
        self.steps_per_epoch = math.ceil(len(self.train_loader) / tcfg.gradient_accumulation_steps)
        self.budget = StepBudget.plan(tcfg, self.steps_per_epoch)
        # The scheduler steps once per optimizer step; it is not prepared, so Accelerate does not
        # step it num_processes times per call.
        self.scheduler = build_scheduler(
            self.optimizer.optimizer,
            phase1_steps=self.phase1_epochs * self.steps_per_epoch,
            phase2_steps=self.budget.max_steps,
            warmup_ratio=tcfg.warmup_ratio,
            kind=tcfg.schedule,
        )

    def _setup_resume_and_tracking(self) -> None:
        cfg, acc = self.config, self.accelerator
        if self.resume:
            payload = load_for_resume(self.resume, self.output_dir / "checkpoints", acc)
            self._restore(payload)
            logger.info(f"resumed from {payload.folder} at epoch {self.state.epoch}, step {self.state.step}")
        if acc.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.output_dir / "config.yaml", dump_config(cfg))
        acc.init_trackers(cfg.project_name, config=_flat_hparams(cfg))
        for note in self.splits.notes:
            logger.info(f"data: {note}")
        logger.info(f"{self.adapted.backbone.describe()}\nstrategy {self.adapted.strategy}:\n{self.adapted.report}")
        logger.info(f"precision: {self.precision} on {acc.device}; LP-FT: {self._lpft_description()}")
        if not self.solve_probe:
            logger.info(self.budget.describe())
        logger.info(f"cache: {self.cache_record.reason}")

    def _checkpoint_payload(self) -> Payload:
        return Payload(
            trainable=self.adapted.trainable_state(),
            best=dict(self.best.tensors),
            optimizer=self.optimizer.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            train_state=self.state.state_dict(),
            config_yaml=dump_config(self.config),
            run_id=self.run_id,
        )

    def _epoch_checkpoint_due(self) -> bool:
        """At the end of an epoch, when `checkpoint.epoch_interval_seconds` have passed since the last save."""
        ckpt = self.config.checkpoint
        if not ckpt.each_epoch or self.state.batch_in_epoch:
            return False
        return time.perf_counter() - self._last_save >= ckpt.epoch_interval_seconds

    def _save_checkpoint(self) -> None:
        self._check_finite()  # a diverged model is never checkpointed: the last good one stays the newest
        save_checkpoint(
            self.accelerator,
            self.output_dir / "checkpoints",
            self.state.step,
            self.config.checkpoint.keep_last,
            self._checkpoint_payload,
        )
        self._last_save = time.perf_counter()

    def _restore(self, payload: Payload) -> None:
        """Continue a checkpointed run: the same config (except settings that cannot change the result: those of
        SAFE_TO_CHANGE_ON_RESUME, and keys a later version added, left at their defaults), then its weights,
        optimizer, schedule, position and best epoch."""
        changes = compare_configs(payload.config_yaml, dump_config(self.config))
        if changes.refused:
            changed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.refused.items())
            raise CheckpointRefused(
                f"the checkpoint was written with another config ({changed}); resuming would mix two runs. Resume "
                "with the same recipe (only logging, checkpointing, workers, the evaluation batch and output_dir "
                "may change), or start a new run (another output_dir, or --overwrite)."
            )
        saved = payload.train_state.get("precision")
        if saved is not None and saved != self.precision:  # `auto` resolved otherwise on this machine
            raise CheckpointRefused(
                f"the checkpoint trained at precision {saved}, and train.mixed_precision="
                f"{self.config.train.mixed_precision} gives {self.precision} on this machine; resuming would mix two "
                f"precisions in one run. Resume where it started, or start a new run (another output_dir, or "
                "--overwrite)."
            )
        missing = set(payload.trainable) - set(self.adapted.model.state_dict())
        if missing:
            raise CheckpointRefused(f"the checkpoint's tensors do not fit this model: {sorted(missing)[:5]}")
        self.adapted.model.load_state_dict(payload.trainable, strict=False)
        self.best.tensors = dict(payload.best)
        self.optimizer.optimizer.load_state_dict(payload.optimizer)
        self.scheduler.load_state_dict(payload.scheduler)
        self.state.load_state_dict(payload.train_state)
        self.run_id = payload.run_id
        self.resumed_changes = changes.accepted()
        if changes.allowed:
            described = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.allowed.items())
            logger.info(f"resumed with changed settings (none changes what is learned): {described}")
        if changes.new_defaults:
            described = ", ".join(f"{k}={v!r}" for k, v in changes.new_defaults.items())
            logger.info(f"resumed with settings the checkpoint's config lacks, at their defaults: {described}")
        if self.resumed_changes:
            self.state.resumes.append(
                {
                    "step": self.state.step,
                    "checkpoint": payload.folder.name if payload.folder else None,
                    "changed": {k: list(v) for k, v in changes.allowed.items()},
                    "added_at_default": changes.new_defaults,
                }
            )

    def _check_finite(self) -> None:
        """Stop with one message when training diverged (checked where the loss is read anyway: one read-back)."""
        flags, self._finite_flags = self._finite_flags, []
        step_lrs, self._step_lrs = self._step_lrs, {}
        if not flags or not bool(torch.stack([bad for _, bad in flags]).any()):
            return
        first = next(step for step, bad in flags if bool(bad))  # the failure path: more read-backs are fine
        lrs = ", ".join(
            f"{role} {low:.2e}" if low == high else f"{role} {low:.2e} to {high:.2e}"
            for role, (low, high) in step_lrs.get(first, self._lr_ranges()).items()
        )
        kept = list_checkpoints(self.output_dir / "checkpoints", self.run_id)  # all from before `first`
        saved = f"Checkpoint {kept[-1].name} is kept." if kept else "No checkpoint was written before it."
        raise Diverged(
            f"training diverged at step {first} (phase {self.state.phase}; LR used at that step: {lrs}): the loss or "
            "a gradient is no longer finite. Try a lower LR (train.backbone_lr / train.head_lr, or the rung's lr), "
            f"keep train.max_grad_norm set, or train.mixed_precision=no. {saved}"
        )

    def _cache(self, encoded: dict[str, Any], collate: Any) -> CachedData | None:
        """Cached activations of the frozen part, when the strategy leaves one and the family supports it."""
        cfg = self.config
        cut, reason = plan_cut(
            self.adapted, enabled=cfg.cache.enabled, prefix=cfg.cache.prefix, augment=cfg.data.augment
        )
        self.cache_record = CacheRecord(used=False, reason=f"off ({reason})")
        if cut is None:
            return None
        try:
            cached = build_cached_data(
                self.adapted,
                cut,
                encoded,
                collate,
                preprocessing=self.preprocessing,
                cache_dir=cfg.cache.dir,
                max_gib=cfg.cache.max_gib,
                batch_size=cfg.train.eval_batch_size or 2 * cfg.train.batch_size,
                device=self.accelerator.device,
                precision=self.precision,
            )
        except TailUnsupported as err:
            self.cache_record = CacheRecord(used=False, reason=f"off ({err}); the whole model runs every step")
            return None
        r = cached.record
        self.cache_record = CacheRecord(
            used=True,
            reason=f"{reason} ({r['hits']} splits reused, {r['misses']} extracted in {r['seconds']:.1f}s, {r['dir']})",
            **r,
        )
        return cached

    def _optimizer_choice(self) -> str:
        """AdamW's implementation: fused (one kernel per step) on CUDA, foreach elsewhere, or as asked."""
        choice = self.config.train.optimizer
        if choice == "auto":
            choice = "fused" if self.accelerator.device.type == "cuda" else "foreach"
        return choice

    def _optimizer_impl(self) -> dict[str, bool]:
        return {"fused": {"fused": True}, "foreach": {"foreach": True}, "for_loop": {"foreach": False}}[
            self._optimizer_choice()
        ]

    def _use_channels_last(self) -> bool:
        """NHWC helps convolutions (cuDNN, oneDNN); transformers gain nothing from it."""
        asked = self.config.train.channels_last
        backbone = self.adapted.backbone
        if asked == "auto":
            return backbone.family.convnet and self.accelerator.device.type == "cuda"
        return bool(asked) and backbone.modality == "image"

    def _model_logits(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.channels_last and "pixel_values" in batch:
            batch = {**batch, "pixel_values": batch["pixel_values"].contiguous(memory_format=torch.channels_last)}
        return self.adapted.backbone.logits(model, batch)

    def _trackers(self) -> list[str] | None:
        log_with = self.config.log_with
        if log_with == "none":
            return None
        if log_with == "auto":
            try:
                import tensorboard  # noqa: F401
            except ImportError:
                return None
            return ["tensorboard"]
        return list(log_with)

    def _check_precision(self, resolved: str) -> str:
        acc = self.accelerator
        if resolved == "fp16" and acc.device.type == "cpu":
            raise ValueError("train.mixed_precision=fp16 needs a GPU; on CPU use bf16 or no.")
        return resolved if resolved == "no" or acc.native_amp else "no"

    # ---- training ----------------------------------------------------------------------------
    def _set_phase(self, phase: int) -> None:
        """Phase 1 trains only the head. With one process the backbone's `requires_grad` is turned off
        (no backward through it); under DDP every process keeps the same flags and drops the grads instead."""
        self.state.phase = phase
        if self.accelerator.num_processes == 1:
            for group in self.optimizer.param_groups:
                if group["role"] == "backbone":
                    for p in group["params"]:
                        p.requires_grad_(phase == 2)

    def _done(self) -> bool:
        """The main phase ran its step cap, or early stopping ended it."""
        return self.state.stopping.stopped or self.state.main_step >= self.budget.max_steps

    def _lpft_description(self) -> str:
        if self.head_state is not None:
            return "on (the head starts from the one given, the probe's in a ladder; its phase is not repeated)"
        if not self.lpft:
            return "off"
        return (
            "on (head solved first)" if self.solve_lpft_head else f"on (head trained up to {self.phase1_epochs} epochs)"
        )

    def _solve_head(self) -> dict[str, Any]:
        """Fit the head as a converged logistic regression on the features the model gives now: the cached
        ones for a frozen probe, else one pass over the training rows (every process sees all rows, so
        every process solves the same problem)."""
        backbone, options = self.adapted.backbone, self.adapted.config
        if self.cached is not None and self.cached.cut.block is None:
            rows = self.cached.datasets["train"].tensors
            features, labels = rows["activations"], rows["labels"]
            if self.task.per_token:  # a tagger: one row per tagged token, rows in order, positions in order
                tagged = labels != IGNORE
                features, labels = features[tagged], labels[tagged]
            # Solved on the run's device: on a GPU the float64 L-BFGS matmuls are what the probe costs.
            features = features.to(self.accelerator.device)
        else:
            bs = self.config.train.eval_batch_size or 2 * self.config.train.batch_size
            loader = DataLoader(self._plain_train, batch_size=bs, shuffle=False, collate_fn=self._plain_collate)
            # Under the run's autocast, as its evaluations run: the solved head starts where training sees it.
            with self.accelerator.autocast():
                features, labels = penultimate_features(backbone, self.adapted.model, loader, self.accelerator.device)
        fit = fit_linear_head(
            backbone,
            features,
            self.task.standardize(labels),  # regression: the head predicts the standardised target
            task="single_label" if self.task.per_token else self.task.name,  # a tagger: one row per tagged token
            groups=self._token_sentences() if self.task.per_token else None,
            folds=getattr(options, "folds", 5),
            l2_grid=getattr(options, "l2_grid", None),
            seed=self.config.train.seed,
        )
        best = next(r for r in fit.cv if r["l2"] == fit.l2)
        scores = ", ".join(f"{k} {v:.4f}" for k, v in best.items() if k != "l2" and not k.endswith("_se"))
        what = {
            "single_label": "logistic regression",
            "multi_label": "multi-label logistic regression",
            "token_classification": "logistic regression per tagged token",
        }
        logger.info(
            f"head solved: {what.get(self.task.name, 'ridge regression')} on {len(labels)} rows, l2 {fit.l2:.1e} by "
            f"{fit.folds}-fold CV (CV {scores}), {'converged' if fit.converged else 'NOT converged'} in "
            f"{fit.iterations} iterations ({fit.seconds:.1f}s)"
        )
        return {"method": "lbfgs", **fit.to_dict()}

    def _token_sentences(self) -> torch.Tensor:
        """A tagger's training sentence of each tagged token, in the order the solver's features come (the training
        rows in order, their tagged positions in order): its CV keeps a sentence's tokens in one fold."""
        tagged = [sum(1 for t in row if t != IGNORE) for row in self._plain_train["labels"]]
        return torch.repeat_interleave(torch.arange(len(tagged)), torch.tensor(tagged))

    def train(self) -> Engine:
        acc, tcfg, state = self.accelerator, self.config.train, self.state
        start, seen = time.perf_counter(), 0
        self._last_save = start
        self._finite_flags, self._step_lrs = [], {}
        if (self.solve_probe or self.solve_lpft_head) and state.solver is None:
            with PeakMemory(acc.device) as self.peak_memory:
                state.solver = self._solve_head()
                if self.solve_probe:  # nothing else trains: one evaluation, and done
                    state.epoch = 1
                    self._evaluate()
        if self.solve_probe:
            self.train_seconds = time.perf_counter() - start
            return self
        every = self.config.checkpoint.every_n_steps
        total = self.phase1_epochs * self.steps_per_epoch + self.budget.max_steps
        bar = tqdm(total=total, initial=state.step, disable=not acc.is_local_main_process)
        window = LossWindow()
        self._set_phase(state.phase)
        self.model.train()
        # closing(bar): a run that stops with an error (divergence, a full disk) ends the bar's line first
        with PeakMemory(acc.device) as self.peak_memory, closing(bar):
            self._evaluate_start()
            while not self._done():
                self.train_loader.set_epoch(state.epoch)
                loader = self.train_loader
                if state.batch_in_epoch:
                    loader = acc.skip_first_batches(self.train_loader, state.batch_in_epoch)
                    loader.set_epoch(state.epoch)  # the new loader counts epochs from 0; keep this epoch's order
                for batch in loader:
                    with acc.accumulate(self.model):
                        loss = self.task.loss(self.logits_fn(self.model, batch), batch["labels"])
                        acc.backward(loss)
                        bad = ~torch.isfinite(loss.detach())
                        if acc.sync_gradients:
                            if state.phase == 1 and acc.num_processes > 1:
                                self._drop_backbone_grads()
                            if tcfg.max_grad_norm:
                                norm = acc.clip_grad_norm_(self.model.parameters(), tcfg.max_grad_norm)
                                bad = bad | ~torch.isfinite(torch.as_tensor(norm))
                        # Kept on the device: read back (one host sync) only every log_every_n_steps.
                        self._finite_flags.append((state.step + 1, bad))
                        window.add(loss)
                        self.optimizer.step()
                        self.optimizer.zero_grad(set_to_none=True)
                    state.batch_in_epoch += 1
                    seen += len(batch["labels"]) * acc.num_processes
                    if acc.sync_gradients:
                        lrs = self._lrs()  # the LRs this step used (host values: no sync)
                        self._step_lrs[state.step + 1] = self._lr_ranges()
                        self.scheduler.step()
                        state.step += 1
                        bar.update(1)
                        if state.step % tcfg.log_every_n_steps == 0:
                            self._log_steps(window, lrs, bar, seen / (time.perf_counter() - start))
                        if state.phase == 2:
                            state.main_step += 1
                            if self.budget.evaluates_at(state.main_step):
                                self._evaluate()
                        if every and state.step % every == 0:
                            self._save_checkpoint()
                        if self._done():
                            break
                if state.batch_in_epoch >= len(self.train_loader):  # a whole epoch (not one cut by a stop)
                    state.epoch += 1
                    state.batch_in_epoch = 0
                    if state.phase == 1:
                        self._end_of_head_epoch()
                        self._evaluate_start()
                if self._epoch_checkpoint_due():
                    self._save_checkpoint()
        self._restore_best()
        self.train_seconds = time.perf_counter() - start
        return self

    def _evaluate_start(self) -> None:
        """Evaluate the main phase's starting point once, before its first update: under LP-FT that is the
        probe, so a rung that never beats its start ends with it (restore_best), never below it."""
        if self.state.phase == 2 and not self.state.started_main:
            self.state.started_main = True
            self._evaluate()

    def _track_best(self, loss: float) -> None:
        """Early stopping on the main phase's selection loss, by the rules of `budget.py`."""
        es, state = self.config.train.early_stopping, self.state
        if observe(state.stopping, self.budget, loss, state.main_step, enabled=es.enabled) and es.restore_best:
            self.best.tensors = self.adapted.trainable_state()
        stop = state.stopping
        if stop.stopped:
            logger.info(
                # Worded so that "best at this very step" (a loss still inching down) reads as no contradiction.
                f"early stop at step {state.main_step}: the selection loss flattened, {stop.bad_evals} evaluations "
                f"without an improvement of {es.min_delta} or more on {stop.patience_loss:.4f} (best "
                f"{stop.best_loss:.4f} at step {stop.best_step}; no stop before step {self.budget.min_steps})"
            )

    def _restore_best(self) -> None:
        state = self.state
        if not self._restores_best():
            return
        missing = set(self.best.tensors) - set(self.adapted.model.state_dict())
        if missing:
            raise RuntimeError(f"best-evaluation weights do not fit the model: {sorted(missing)[:5]}")
        self.adapted.model.load_state_dict(self.best.tensors, strict=False)
        logger.info(
            f"restored the weights of step {state.stopping.best_step} (selection loss {state.stopping.best_loss:.4f})"
        )

    def _restores_best(self) -> bool:
        return bool(self.best.tensors) and self.state.stopping.best_step != self.state.main_step

    def stopping_record(self) -> Convergence:
        """How training ended: the solver's convergence for a solved probe; otherwise by `budget.py`'s rules."""
        if self.solve_probe:
            record = self.state.solver or {}
            converged = bool(record.get("converged"))
            return Convergence(
                method="lbfgs", converged=converged, still_improving=False, stop_reason="solved", cut_short=False
            )
        return convergence(self.state.stopping, self.budget, self.state.main_step, restored=self._restores_best())

    def _evaluate(self) -> None:
        """One evaluation on the selection rows: the history record, the callbacks, early stopping (main phase)."""
        self._check_finite()
        acc, state = self.accelerator, self.state
        out = evaluate(
            acc, self.model, self.logits_fn, self.eval_loaders["validation"], self.metric_names, task=self.task
        )
        val = out.result
        record = {
            "epoch": state.epoch,
            "step": state.step,
            "main_step": state.main_step if state.phase == 2 else None,
            "phase": state.phase,
            "loss": val.loss,
            **val.metrics,
        }
        if self.callbacks:
            # Callbacks measure the run (drift copies the model); their memory is not the rung's.
            with self.peak_memory.paused():
                for callback in self.callbacks:
                    callback(self, record)
        state.history.append(record)
        acc.log({f"val/{k}": v for k, v in record.items() if isinstance(v, float)}, step=state.step)
        where = f"step {state.main_step}" if state.phase == 2 and not self.solve_probe else f"epoch {state.epoch}"
        logger.info(
            f"{where} (phase {state.phase}): "
            + ", ".join(f"{k}={v:.4f}" for k, v in record.items() if isinstance(v, float))
        )
        if state.phase == 2 and not self.solve_probe:
            self.selection_curve.append((state.main_step, out.row_losses))
            self._track_best(val.loss)
            self._prune()
        self._last_eval = val

    def _prune(self) -> None:
        """Ask the pruner, past the minimum budget (never inside warmup), whether this trial goes on."""
        stop = self.state.stopping
        if self.pruner is None or stop.stopped or self.state.main_step < self.budget.min_steps:
            return
        if self.state.main_step >= self.budget.max_steps:
            return  # the cap ends it anyway
        reason = self.pruner(self.selection_curve, self.budget.max_steps)
        if reason:
            stop.stopped, stop.pruned = True, reason
            logger.info(f"pruned at step {self.state.main_step}: {reason}")

    def _end_of_head_epoch(self) -> None:
        """LP-FT with a trained head (lpft.head=epochs): evaluate each head epoch; phase 2 once it plateaus."""
        self._evaluate()
        state, lpft = self.state, self.config.train.lpft
        loss = self._last_eval.loss
        state.phase1_epochs_run += 1
        if loss < state.phase1_best_loss - lpft.min_delta:
            state.phase1_best_loss, state.phase1_bad_epochs = loss, 0
        else:
            state.phase1_bad_epochs += 1
        plateau = lpft.plateau_patience is not None and state.phase1_bad_epochs >= lpft.plateau_patience
        if plateau or state.phase1_epochs_run >= self.phase1_epochs:
            start_phase2(self.scheduler, state.step)
            self._set_phase(2)
            logger.info(f"phase 2 from step {state.step}: {'head plateaued' if plateau else 'head budget spent'}")

    def _drop_backbone_grads(self) -> None:
        for group in self.optimizer.param_groups:
            if group["role"] == "backbone":
                for p in group["params"]:
                    p.grad = None

    def _log_steps(self, window: LossWindow, lrs: dict[str, float], bar: Any, samples_s: float) -> None:
        """Every log_every_n_steps: the divergence flag and the mean loss read back (the only host syncs of the
        step loop), then the bar and the tracker."""
        self._check_finite()
        loss = window.pop()
        bar.set_postfix(
            loss=f"{loss:.4f}", lr_head=f"{lrs['head']:.2e}", phase=self.state.phase, samples_s=f"{samples_s:.1f}"
        )
        self.accelerator.log({"train/loss": loss, **{f"lr/{k}": v for k, v in lrs.items()}}, step=self.state.step)

    def _lrs(self) -> dict[str, float]:
        lrs: dict[str, float] = {}
        for group in self.optimizer.param_groups:
            lrs.setdefault(group["role"], group["lr"])
        return lrs

    def _lr_ranges(self) -> dict[str, tuple[float, float]]:
        """Per parameter role, the lowest and highest LR of its groups (they differ under layer-wise decay)."""
        ranges: dict[str, tuple[float, float]] = {}
        for group in self.optimizer.param_groups:
            low, high = ranges.get(group["role"], (group["lr"], group["lr"]))
            ranges[group["role"]] = (min(low, group["lr"]), max(high, group["lr"]))
        return ranges

    # ---- finish ------------------------------------------------------------------------------
    def _choose_threshold(self, selection: Any) -> None:
        """Multi-label: the threshold with the best micro-F1 on the selection rows (the validation split; in a
        ladder never the decision rows), used for every split's predictions and saved with the task."""
        if self.task.name != "multi_label":
            return
        probabilities = self.task.scores(selection.logits)
        threshold, f1 = choose_threshold(probabilities, self.task.references(selection.labels))
        self.task = replace(self.task, threshold=threshold)
        logger.info(f"multi-label threshold {threshold:g}: the best micro-F1 ({f1:.4f}) on the selection rows")

    def finish(self) -> RunResult:
        """Final evaluation, the artifact (Hub layout) and `metrics.json`; returns the results."""
        acc, tcfg = self.accelerator, self.config.train
        outputs = {
            split: collect(acc, self.model, self.logits_fn, loader) for split, loader in self.eval_loaders.items()
        }
        self._choose_threshold(outputs["validation"])
        splits = {}
        for split, out in outputs.items():
            out = score(out, self.metric_names, self.splits.slices_for(split), self.task)
            self.predictions[split] = (out.predictions, out.labels)
            self.scores[split] = out.scores
            self.row_losses[split] = out.row_losses
            splits[split] = out.result
        results = RunResult(
            strategy=self.adapted.strategy,
            precision=self.precision,
            device=str(acc.device),
            num_processes=acc.num_processes,
            train_seconds=getattr(self, "train_seconds", 0.0),
            peak_memory=self.peak_memory.result() if hasattr(self, "peak_memory") else None,
            steps=self.state.step,
            phase1_epochs_run=self.state.phase1_epochs_run,
            lpft=self.lpft or self.head_state is not None,
            stopping=self.stopping_record(),
            resumes=self.state.resumes,
            solver=self.state.solver,
            cache=self.cache_record,
            fast_paths=FastPaths(
                optimizer=self._optimizer_choice(),
                channels_last=self.channels_last,
                compile=tcfg.compile,
                eval_batch_size=tcfg.eval_batch_size or 2 * tcfg.batch_size,
            ),
            trainable=self.adapted.report.to_dict(),
            history=self.state.history,
            preprocessing=self.preprocessing,
            data_notes=self.splits.notes,
            task=self.task.to_dict(),
            splits=splits,
        )
        acc.wait_for_everyone()
        if acc.is_main_process:
            save_adapted(
                self.adapted,
                self.output_dir / "artifact",
                overwrite=True,
                extra={
                    "run_config": self.config.model_dump(mode="json"),
                    "metrics": results.model_dump(mode="json"),
                    "task": self.task.to_dict(),
                },
            )
            write_text_atomic(self.output_dir / "metrics.json", results.model_dump_json(indent=2))
        acc.wait_for_everyone()
        val = results.validation
        logger.info(
            f"done: {self.adapted.strategy} on {self.adapted.backbone.spec.name} | val "
            + " ".join(f"{m}={val.metrics[m]:.4f}" for m in self.metric_names)
            + f" | {self.adapted.report.trainable:,} trainable ({self.adapted.report.pct:.2f}%)"
            + f" | {results.train_seconds:.1f}s | {self.output_dir / 'artifact'}"
        )
        self._end_tracking()
        if self.config.push_to_hub and acc.is_main_process:  # last: the artifact and every log are written
            logger.info(push_run(self.output_dir, self.config).summary())
        return results

    def _end_tracking(self) -> None:
        """Close the trackers. `Accelerator.end_training` would also destroy the process group, which the
        ladder's next trial still needs: the group ends with the process (or `destroy_process_group`)."""
        for tracker in self.accelerator.trackers:
            tracker.finish()

    def run(self) -> RunResult:
        try:
            return self.setup().train().finish()
        finally:
            if getattr(self, "accelerator", None) is not None and self.accelerator.is_main_process:
                settle(self.output_dir)  # the run's list keeps what it wrote
            release(self.output_dir)  # claimed (locked) by `setup`; a process's end releases it too


def train(config: RunConfig, resume: str | None = None) -> RunResult:
    """Train one rung from a config (the Python API behind `peft_ladder/train.py`)."""
    return Engine(config, resume=resume).run()


def fresh_accelerator_state() -> None:
    """Precision and torch.compile live in Accelerate's process-wide state, set by the first Accelerator; a
    second engine in the same process (the ladder's trials, the Python API, the tests) may ask for others.
    Accelerate offers no public reset, so this uses the one its own test utilities use, keeping the
    distributed setup (PartialState) as it is."""
    if AcceleratorState._shared_state:
        AcceleratorState._reset_state(reset_partial_state=False)


def _flat_hparams(cfg: RunConfig) -> dict[str, Any]:
    """Trackers (tensorboard hparams) take flat scalars only."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            flat[prefix] = value if isinstance(value, (int, float, str, bool)) else str(value)

    walk("", cfg.model_dump(mode="json"))
    return flat

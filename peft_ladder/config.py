"""Recipes: YAML -> typed, validated config. Unknown keys and wrong types fail before any work,
with the dotted key and the file named. Dotted `key=value` overrides come from the command line."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from peft_ladder.errors import ConfigError  # defined with the other user errors; imported from here too
from peft_ladder.metrics.catalog import TASK_METRICS, check_metrics_for_task, higher_is_better
from peft_ladder.recipe_files import find_recipe, recipe_names
from peft_ladder.recipe_keys import model_in
from peft_ladder.strategies.registry import get_strategy, make_strategy_config

# A Hub licence id as the Hub's licence list spells them (apache-2.0, cc-by-nc-4.0, llama3.1, other): the model
# card's `license`, from the recipe (`hub_license`) or a base checkpoint's card.
LICENSE_ID = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
# numpy's seed range (np.random.seed, which Accelerate's set_seed calls): a seed outside it fails after the data and
# the model have loaded.
MAX_SEED = 2**32 - 1
# A recipe with every key written out has under 1,000 YAML nodes; aliases that expand it beyond this are a bomb
# (billion laughs), refused before OmegaConf builds them (its own limit, 10,000, fails with a traceback).
MAX_YAML_NODES = 5000


def _seed_range(value: int) -> int:
    if not 0 <= value <= MAX_SEED:
        raise ValueError(f"a seed is between 0 and 2**32 - 1 = {MAX_SEED} (numpy's range); pick one in it")
    return value


Seed = Annotated[int, AfterValidator(_seed_range)]


# What `ladder.metric` may name: the builtin metrics (`metrics/catalog.py`), each of which the ladder's bootstrap
# re-weights (`ladder/stats.py`); the task's first reported metric is its default.
LadderMetric = Literal[
    "accuracy",
    "f1_macro",
    "f1_micro",
    "subset_accuracy",
    "map",
    "rmse",
    "mae",
    "r2",
    "spearman",
    "entity_f1",
    "entity_precision",
    "entity_recall",
    "token_accuracy",
]
DEFAULT_MIN_GAIN = 0.01


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageDataConfig(_Strict):
    """What image inputs must look like for this checkpoint; each key set here wins over the checkpoint's own
    (timm `pretrained_cfg` / a transformers image processor) and the architecture's defaults."""

    input_size: int | tuple[int, int] | tuple[int, int, int] | None = Field(
        None, description="side, (height, width) or (channels, height, width)"
    )
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    interpolation: Literal["bilinear", "bicubic", "nearest"] | None = None
    crop_pct: float | None = Field(None, gt=0, le=1, description="eval resize to size / crop_pct, then center crop")
    crop_mode: Literal["center", "squash", "border"] | None = None

    def overrides(self) -> dict[str, Any]:
        out = {k: v for k, v in self.model_dump().items() if v is not None}
        size = out.get("input_size")
        if isinstance(size, int):
            out["input_size"] = (3, size, size)
        elif size is not None and len(size) == 2:
            out["input_size"] = (3, *size)
        return out


class PoolingChoice(_Strict):
    """A pooling fixed elsewhere (the ladder's probe comparison), with where it came from."""

    mode: Literal["cls", "mean", "max", "pooler", "last"] = Field(description="how token states are pooled")
    normalize: bool = Field(False, description="L2-normalise the pooled features")
    source: str = Field("probe", description="where the choice came from (recorded in the note)")


class BackboneConfig(_Strict):
    name: str = Field(description="`timm:<name>`, `hf:<id or folder>`, or a local folder (see load_backbone)")
    pretrained: bool = Field(True, description="load the pretrained weights; false: random init (the scratch control)")
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="timm create_model kwargs / HF config overrides"
    )
    revision: str | None = Field(None, description="Hub branch, tag or commit of the backbone")
    checkpoint: str | None = Field(None, description="local .safetensors weights for a timm architecture")
    head: list[str] | None = Field(None, description="module names of the classifier head; default: the family's")
    block_pattern: str | None = Field(
        None, description="regex naming the blocks (partial_unfreeze, drift); default: the family's"
    )
    tokenizer: str | None = Field(None, description="tokenizer id or folder; default: the backbone's own")
    pooling: Literal["auto", "cls", "mean", "max", "pooler", "last"] | PoolingChoice = Field(
        "auto",
        description="text backbones: how token states become the head's input; auto: what a sentence-transformers "
        "checkpoint declares (modules.json), else the family's convention, and a ladder's probe compares the "
        "family's candidates on the training folds",
    )
    pooling_normalize: bool | None = Field(None, description="L2-normalise pooled features; None: as declared")
    data_config: ImageDataConfig | None = Field(
        None, description="image backbones: input size, mean/std, interpolation, crop (over the checkpoint's own)"
    )
    keep_head: bool = Field(
        False,
        description="image classifiers: keep a checkpoint's classifier when it has as many classes as the task "
        "(default: a fresh head, as every rung expects)",
    )
    trust_remote_code: bool = Field(False, description="run modelling code from the repo; off unless you trust it")
    allow_pickle: bool = Field(
        False, description="accept .bin/.pt weights (weights_only=True); default safetensors only"
    )

    @field_validator("model_kwargs")
    @classmethod
    def _no_own_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        # The loaders pass these themselves: given again here they end as "got multiple values" TypeErrors.
        for key, instead in _LOADER_KWARGS.items():
            if key in value:
                raise ValueError(f"`{key}` is not a model kwarg here: {instead}")
        return value


_LOADER_KWARGS = {
    "trust_remote_code": "set backbone.trust_remote_code instead",
    "revision": "set backbone.revision instead",
    "pretrained": "set backbone.pretrained instead",
    "token": "the Hub token comes from HF_TOKEN or `hf auth login`, never from a recipe",
    **{
        key: "the head's classes come from the data (data.label_column); remove it"
        for key in ("num_labels", "num_classes", "id2label", "label2id")
    },
}


class SliceConfig(_Strict):
    name: str = Field(description="the slice's name in the note")
    column: str = Field(description="the data column that defines the slice")
    values: list[Any] = Field(description="rows whose `column` is one of these values form the slice")


class DataConfig(_Strict):
    dataset: str = Field(
        description="`stdlib_docstrings` (built in), a Hub id, an image folder, or a csv/json/parquet file"
    )
    config_name: str | None = Field(None, description="Hub dataset configuration (datasets' `name`)")
    revision: str | None = Field(None, description="Hub dataset branch, tag or commit")
    data_files: dict[str, str] | None = Field(None, description="split -> file, for csv/json/parquet")
    text_column: str | None = Field(None, description="default: guessed (text, sentence, content, ...)")
    image_column: str | None = Field(None, description="default: guessed (image, img)")
    label_column: str | None = Field(None, description="default: guessed (label, labels, class, target)")
    train_split: str = Field("train", description="the split trained on")
    validation_split: str | None = Field(None, description="default: validation/valid/val/dev, else carved from train")
    test_split: str | None = Field(None, description="default: `test` when it exists")
    validation_fraction: float = Field(
        0.1, gt=0, lt=1, description="share of train carved off when no validation split"
    )
    max_samples: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict, description="split -> cap (at least 1), for quick runs"
    )
    encoding: str = Field("utf-8", description="text encoding of csv files (e.g. latin-1, cp1252)")
    skip_corrupt_images: bool = Field(
        False, description="drop image rows that do not decode (counted in the run's notes); default: a clear error"
    )
    max_length: int | None = Field(
        None,
        ge=8,
        description="tokenizer max length, at most what the model's position embeddings cover; default: the "
        "model's, at most 512",
    )
    task: Literal["auto", "single_label", "multi_label", "regression", "token_classification"] = Field(
        "auto",
        description="auto: read the task from the label column (a list of tags per row beside an input column of "
        "word lists: token_classification; a list of labels per row: multi_label; numbers that are not class ids: "
        "regression; else single_label) and say so in the log; set it to fix a wrong guess (single_label takes every "
        "value as a class name)",
    )
    drop_empty: bool = Field(
        False,
        description="drop rows with no text / image or no label (missing, blank, NaN) and log how many per split; "
        "default: an error naming the column and the rows",
    )
    augment: bool = Field(False, description="train-time augmentation (timm's train transform) for images")
    slices: list[SliceConfig] = Field(default_factory=list)
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")


class LPFTConfig(_Strict):
    """Two-phase LP-FT (Kumar et al., 2022): head first, then the strategy's backbone part."""

    enabled: bool | Literal["auto"] = Field("auto", description="auto: on for pretrained rungs that train the backbone")
    head: Literal["solver", "epochs"] = Field(
        "solver",
        description="phase 1: solver = the converged logistic-regression probe on the starting features (as in "
        "Kumar et al.); epochs = the head trained by AdamW for up to head_epochs",
    )
    head_epochs: int = Field(2, ge=1, description="phase 1 epoch budget (head: epochs)")
    plateau_patience: int | None = Field(
        1, ge=1, description="end phase 1 early once validation loss stops improving for this many epochs"
    )
    min_delta: float = Field(1e-3, ge=0, description="a validation-loss decrease smaller than this is no improvement")


class EarlyStoppingConfig(_Strict):
    """End the main phase once the selection loss stops improving, and keep the best evaluation's weights.

    Budgets are counted in optimizer steps, not epochs (an epoch of 48 images is 2-3 steps): no trial stops
    before its warmup has ended and it has trained `min_steps_at_peak` steps at its peak LR (at least one
    epoch); after that minimum, `patience` counts evaluations without an improvement of `min_delta`. The
    rules live in `peft_ladder/budget.py`. `train.epochs` is the cap, raised to the minimum when smaller.
    """

    enabled: bool = Field(True, description="stop a trial once its selection loss stops improving")
    patience: int = Field(
        3, ge=1, description="evaluations (after the minimum budget) without a better selection loss before stopping"
    )
    min_delta: float = Field(1e-3, ge=0, description="a loss decrease smaller than this does not count as better")
    restore_best: bool = Field(True, description="end with the weights of the evaluation with the best selection loss")
    min_steps_at_peak: int = Field(
        20,
        ge=1,
        description="optimizer steps after warmup before any stop (at least one epoch): a trial is never judged "
        "inside its warmup. 20 steps of AdamW at peak LR move a pretrained model measurably on every task we ran",
    )
    eval_every_steps: int | Literal["auto"] = Field(
        "auto",
        description="optimizer steps between evaluations; auto: every epoch, but no more often than every 10 steps "
        "(a 2-step epoch would otherwise spend patience in 4 steps) and at least every 200",
    )

    @field_validator("eval_every_steps")
    @classmethod
    def _positive_interval(cls, value: Any) -> Any:
        if value != "auto" and value < 1:
            raise ValueError("must be a positive number of steps, or auto")
        return value


class TrainConfig(_Strict):
    epochs: int = Field(
        3,
        ge=1,
        description="the cap of the main phase (phase 2 under LP-FT) in epochs, turned into optimizer steps; raised "
        "to the minimum budget when smaller; early stopping may end it sooner",
    )
    batch_size: int = Field(32, ge=1, description="per process")
    eval_batch_size: int | None = Field(None, ge=1, description="default: 2 x batch_size (no activations kept)")
    head_lr: float = Field(1e-3, gt=0, description="AdamW LR of the new head (and of a probe trained by AdamW)")
    backbone_lr: float = Field(1e-5, gt=0, description="10-100x below head_lr (LP-FT); LoRA adapters use ~1e-4..1e-3")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (not on biases and norms)")
    layer_decay: float | None = Field(
        None, gt=0, le=1, description="layer-wise LR decay: each earlier block's LR x this"
    )
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="of each phase's steps (6% as in RoBERTa fine-tuning)")
    schedule: Literal["cosine", "linear", "constant"] = Field("cosine", description="LR schedule after warmup")
    gradient_accumulation_steps: int = Field(1, ge=1, description="batches per optimizer step")
    max_grad_norm: float | None = Field(1.0, gt=0, description="gradient clipping; null: none")
    mixed_precision: Literal["no", "fp16", "bf16", "auto"] = Field(
        "no",
        description="Accelerate's mixed precision (autocast; weights and optimizer stay float32); fp16 needs a GPU. "
        "auto: bf16 where the hardware computes it natively (CUDA from Ampere; CPUs with AVX512-BF16 or AMX, "
        "where a MiniLM step takes about half its float32 time), no elsewhere",
    )
    optimizer: Literal["auto", "fused", "foreach", "for_loop"] = Field(
        "auto", description="AdamW implementation; auto: fused on CUDA, foreach elsewhere (PyTorch's default)"
    )
    channels_last: bool | Literal["auto"] = Field(
        "auto", description="NHWC memory format for convolutional image backbones; auto: on CUDA only"
    )
    compile: bool = Field(False, description="torch.compile what trains (the model, or the cached tail)")
    compile_backend: str = Field("inductor", description="torch.compile backend (torch._dynamo.list_backends())")
    gradient_checkpointing: bool = Field(
        False,
        description="recompute block activations in the backward pass (less memory, about a third more compute); "
        "transformers and timm models that support it",
    )
    log_every_n_steps: int = Field(
        10,
        ge=1,
        description="read the loss back (one host sync), update the progress bar and the tracker every N optimizer "
        "steps; 1: every step",
    )
    seed: Seed = Field(
        42, description="weight init of the head, data order, dropout (0 to 2**32 - 1); the ladder adds seeds"
    )
    lpft: LPFTConfig = Field(default_factory=LPFTConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _yaml_no(cls, value: Any) -> Any:
        # YAML reads a bare `no` (`train.mixed_precision=no`, `mixed_precision: no`) as the boolean false.
        return "no" if value is False else value


class CacheConfig(_Strict):
    """Activations of frozen parts, computed once and reused across epochs, trials and runs.

    `linear_probe` trains its head on cached penultimate features; `partial_unfreeze` trains its tail on
    the cached input of its first trainable block. The key covers the frozen weights, revision, cut (for the
    head input, the pooling too), preprocessing, split, rows and precision. In a ladder the frozen evidence fills
    the probe's entries in the same pass. Image augmentation turns the cache off.
    """

    enabled: bool = Field(True, description="cache the frozen part's activations once and train only what trains")
    prefix: bool = Field(True, description="also cache the frozen prefix of partial_unfreeze")
    dir: str | None = Field(None, description="default: $PEFT_LADDER_CACHE, else <HF datasets cache>/peft_ladder")
    max_gib: float = Field(4.0, gt=0, description="train the whole model instead when a split's cache would be larger")


class CheckpointConfig(_Strict):
    every_n_steps: int | None = Field(None, ge=1, description="also checkpoint every N optimizer steps")
    each_epoch: bool = Field(True, description="checkpoint at the end of each epoch")
    # With few labels an epoch is a handful of steps, and writing a checkpoint (weights, optimizer, digests,
    # fsync) took longer than training one: on a 2-layer MiniLM scratch control, 107 epoch checkpoints were 41 s of
    # a 95 s run. Resume is exact from any checkpoint, so skipping some only changes how much work a crash costs.
    epoch_interval_seconds: float = Field(
        60.0,
        ge=0,
        description="an end-of-epoch checkpoint is written only when this many seconds have passed since the "
        "run's last one (or its start); 0: every epoch. every_n_steps checkpoints are always written",
    )
    keep_last: int = Field(2, ge=1, description="checkpoints of this run kept (older ones removed)")


class LRSearchConfig(_Strict):
    """The same small LR grid for every rung, so no rung wins by a better-tuned learning rate."""

    multipliers: list[float] = Field(
        default_factory=lambda: [0.3, 1.0, 3.0],
        min_length=1,
        description="LRs tried per rung = the rung's default LR x each multiplier (half a decade each side)",
    )
    extend: int = Field(
        1,
        ge=0,
        description="steps the search goes past the grid's edge when the best LR sits on it (each a grid ratio "
        "further out); an LR still on the edge afterwards is flagged",
    )
    max_lr: float = Field(
        1e-2, gt=0, description="no extension goes above this (AdamW on pretrained weights diverges beyond)"
    )
    prune: bool = Field(
        True,
        description="stop a later LR early when, on the selection rows, it is behind an earlier one at the same step "
        "and cannot catch up by its cap even at its recent rate (peft_ladder/ladder/pruning.py); false: every LR "
        "runs its whole budget (the exhaustive search)",
    )
    prune_z: float = Field(
        2.0, gt=0, description="a pruning gap must exceed this many standard errors of the paired per-row loss gap"
    )
    prune_after: float = Field(
        0.5,
        ge=0,
        le=1,
        description="share of its step cap a trial trains before it may be pruned (and never before its minimum "
        "budget): successive halving's first rung. Earlier looks pruned the LR that ended best on the default job "
        "(LoRA 1.5e-3 sat at the probe's loss for 30 of 120 steps, then went lowest)",
    )

    @field_validator("multipliers")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        if any(m <= 0 for m in value):
            raise ValueError("every multiplier must be > 0")
        return sorted(set(value))


class ScratchConfig(_Strict):
    """The from-scratch control, trained as well as the rungs it judges.

    Random weights want higher LRs and more steps than fine-tuning: the control searches its own grid (the
    family's decades, e.g. up to 3e-2 for convnets; `backbones/families.py`) with the same edge rule, under a
    larger step cap. A control cut by its cap, or still improving, is a lower bound wherever it is compared.
    """

    enabled: bool = Field(True, description="train the from-scratch control (same architecture, random init)")
    lrs: list[float] | None = Field(
        None, min_length=1, description="LRs tried; default: the backbone family's from-scratch grid"
    )
    max_lr: float | None = Field(
        None, gt=0, description="the edge rule's ceiling for scratch; default: the family's (0.1 convnets, 1e-2 others)"
    )
    budget: float = Field(
        3.0,
        ge=1,
        description="its step cap and minimum at peak LR as a multiple of the rungs' (from random weights a "
        "network needs several times the steps fine-tuning does)",
    )
    futility: bool = Field(
        False,
        description="stop a control trial once, even at its recent rate of improvement, its selection loss cannot "
        "come level with the best pretrained rung's by its cap (its value is then a lower bound). Off by default: "
        "from random weights a loss can sit on a plateau and then fall (a tiny BERT went from 0.69 to 0.99 "
        "selection accuracy after such a look), so no bound from its past says it cannot; the control's own LRs "
        "are still pruned against each other (ladder.lr_search.prune)",
    )
    parallel: Literal["auto"] | bool = Field(
        "auto",
        description="train the control in a second process beside the rungs (peft_ladder/ladder/control.py): its "
        "search needs nothing from the climb, and on a CPU each process uses one core. auto: on a CPU, in a single "
        "process, when the machine has a core to spare and the control is estimated to take over a minute; the "
        "result is the one a sequential run gives",
    )

    @model_validator(mode="before")
    @classmethod
    def _bool(cls, value: Any) -> Any:
        # `ladder.scratch: false` (the short form) turns the control off.
        return {"enabled": value} if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _parallel_needs_no_futility(self) -> ScratchConfig:
        if self.parallel is True and self.futility:
            raise ValueError(
                "parallel: true and futility: true exclude each other: a futility stop needs the best pretrained "
                "rung, which the climb has not trained while the control runs beside it; set one of them to false"
            )
        return self

    @field_validator("lrs")
    @classmethod
    def _positive_lrs(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and any(lr <= 0 for lr in value):
            raise ValueError("every LR must be > 0")
        return sorted(set(value)) if value is not None else None


class DriftConfig(_Strict):
    """How far the backbone may move before the note warns. Measured on a fixed validation batch.

    Kumar et al. (LP-FT, 2022) report mean 1-cos of the penultimate features against the frozen
    backbone of 0.06-0.11 for LP-FT and 0.46-0.86 for plain fine-tuning (ResNet-50); 0.25 sits
    between the two ranges (about their geometric middle). A block whose weights moved by more than
    10% of their pretrained norm has been rewritten rather than adjusted. Linear CKA below 0.5 means
    the representation no longer resembles the pretrained one.
    """

    probe_batch_size: int = Field(64, ge=2, description="validation examples in the fixed probe batch")
    max_feature_1mcos: float = Field(0.25, gt=0, description="warn above this mean 1-cos of penultimate features")
    max_rel_weight_change: float = Field(0.10, gt=0, description="warn above this ||W-W0||/||W0|| in any block")
    min_cka: float = Field(0.5, ge=0, le=1, description="warn below this linear CKA against the frozen features")


class ProbeEvidenceConfig(_Strict):
    """What the frozen features are asked before any rung trains (all on the training rows' folds)."""

    compare_pooling: bool = Field(
        True,
        description="text backbones whose checkpoint declares no pooling: compare the family's candidates (e.g. "
        "pooler, cls, mean) with the converged probe on the training folds and keep the best for every rung",
    )
    depth_curve: bool = Field(
        True,
        description="a converged probe on each block's pooled output: where the frozen features stop fitting "
        "the task, and the last_k it implies for partial_unfreeze (unless the rung fixes last_k or blocks)",
    )
    max_rows: int = Field(4000, ge=50, description="training rows used for these comparisons (a seeded subsample)")


class RungSpec(_Strict):
    """One rung of a ladder: a registered strategy, its validated options, an id and its default LR.

    Written flat in a recipe (`{name: lora, r: 8, lr: 5e-4}`); `fixed` records which options the recipe
    set, so the ladder knows what it may still choose from evidence (partial_unfreeze's depth).
    """

    id: str
    name: str
    lr: float | None = Field(None, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)
    fixed: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _flat(cls, value: Any) -> Any:
        if not isinstance(value, dict) or "options" in value:
            return value
        if "name" not in value:
            raise ValueError("needs `name`, one of the registered strategies")
        options = {k: v for k, v in value.items() if k not in ("name", "lr", "id")}
        return {
            "id": str(value.get("id") or value["name"]),
            "name": value["name"],
            "lr": value.get("lr"),
            "options": options,
            "fixed": sorted(options),
        }

    @model_validator(mode="after")
    def _valid(self) -> RungSpec:
        if not _SAFE_ID.fullmatch(self.id):
            raise ValueError(f"id {self.id!r} must be a plain name (letters, digits, _ . -), it names a folder")
        try:
            get_strategy(self.name)
        except KeyError as err:
            raise ValueError(err.args[0]) from None
        self.options = make_strategy_config(self.name, self.options, where="").model_dump()
        return self

    @property
    def strategy_dict(self) -> dict[str, Any]:
        """The `strategy:` section of a single-rung config."""
        return {"name": self.name, **self.options}


_SAFE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


class LadderConfig(_Strict):
    """Climb the ladder: rungs in order, each against the best simpler one and the scratch control."""

    rungs: list[RungSpec] = Field(
        default_factory=lambda: [
            RungSpec(name="linear_probe"),
            RungSpec(name="lora"),
            RungSpec(name="partial_unfreeze"),
            RungSpec(name="full"),
        ],
        min_length=1,
        description="strategies in climbing order: `name`, its options, and optionally `lr` (the rung's default LR) "
        "and `id` (to tell two rungs of one strategy apart)",
    )
    scratch: ScratchConfig = Field(default_factory=ScratchConfig)
    baseline: bool = Field(
        True,
        description="a cheap non-pretrained baseline beside scratch: TF-IDF logistic regression for text, logistic "
        "regression on downsampled pixels and colour histograms for images",
    )
    run_all: bool = Field(
        False, description="run every rung even after the climb stops; those after the stop are comparisons only"
    )
    metric: LadderMetric | None = Field(
        None,
        description="the metric the climb rule compares; default the task's: accuracy (single_label), map "
        "(multi_label: macro average precision, threshold-free), rmse (regression: lower is better, and the rule "
        "reads its gains as reductions), entity_f1 (token_classification: seqeval's micro F1 over entities)",
    )
    confidence: float = Field(0.95, gt=0.5, lt=1, description="of the paired bootstrap intervals")
    bootstrap_samples: int = Field(2000, ge=200, description="resamples of the paired bootstrap")
    min_gain: float | None = Field(
        None,
        ge=0,
        description="the smallest gain worth a deeper rung, in the metric's units: climb when the interval's low end "
        "is above it, stop when its high end is below it, else uncertain. Default 0.01 (one point of accuracy or F1: "
        "below that a deeper rung's cost, memory, a bigger artifact, more drift, buys nothing a user would notice); "
        "for rmse and mae a hundredth of the target's standard deviation over the training rows",
    )
    target: float | None = Field(None, description="stop climbing once the best rung reaches this metric value")
    seeds: list[Seed] | None = Field(
        None,
        min_length=1,
        description="train every rung with all these seeds; default: start with train.seed and add seeds while a "
        "comparison is uncertain, up to max_seeds",
    )
    max_seeds: int = Field(
        3, ge=1, description="adaptive seeds: most training runs per rung at its chosen LR when a decision is close"
    )
    confirm_climb: bool = Field(
        True,
        description="a climb is taken only once the deeper rung has trained with max_seeds seeds (and still "
        "gains reliably): one lucky run must not push the ladder deeper",
    )
    decision_fraction: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="share of validation held out to decide on; the rest chooses each rung's LR and epoch",
    )
    lr_search: LRSearchConfig = Field(default_factory=LRSearchConfig)
    probe: ProbeEvidenceConfig = Field(default_factory=ProbeEvidenceConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    transferability: bool = Field(True, description="LogME and H-score of the frozen features before any training")
    keep: Literal["all", "rungs", "recommended"] = Field(
        "rungs",
        description="all: every trial's artifact; rungs: each rung's chosen-LR artifact; recommended: only its",
    )

    @field_validator("rungs")
    @classmethod
    def _ladder_rungs(cls, value: list[RungSpec]) -> list[RungSpec]:
        ids = set()
        for i, rung in enumerate(value):
            if not get_strategy(rung.name).from_pretrained:
                raise ValueError(f"rung {i}: {rung.name!r} is the control; set ladder.scratch instead")
            if rung.id in ids or rung.id == "scratch":
                raise ValueError(f"rung {i}: id {rung.id!r} is used twice; give one of them an `id`")
            ids.add(rung.id)
        return value

    def for_task(self, task: str, target_std: float = 1.0) -> LadderConfig:
        """This config with `metric` and `min_gain` resolved for the run's task (`data.task` as the splits read it),
        refusing a metric that does not score that task."""
        metric = self.metric or TASK_METRICS[task][0]
        try:
            check_metrics_for_task([metric], task)
        except ValueError as err:
            raise ValueError(f"ladder.metric={metric!r}: {err} (or leave it unset: {TASK_METRICS[task][0]}).") from None
        min_gain = self.min_gain
        if min_gain is None:
            # An error in the target's units: a hundredth of its spread; scores in [0, 1] (or [-1, 1]): 0.01.
            # Three significant digits: the threshold is a judgement, not a measurement, and the note quotes it.
            min_gain = float(f"{DEFAULT_MIN_GAIN * (1.0 if higher_is_better(metric) else target_std):.3g}")
        return self.model_copy(update={"metric": metric, "min_gain": min_gain})

    def resolved(self) -> LadderConfig:
        """This config as the climb reads it: already resolved by the ladder for its task, or (a config used on its
        own, as with `ClimbRule`) resolved for single-label classification."""
        return self if self.metric is not None and self.min_gain is not None else self.for_task("single_label")


# pip names of Accelerate's trackers where they differ from the tracker's.
_TRACKER_PACKAGES = {"comet_ml": "comet-ml"}


def _tracker_problem(names: list[str]) -> str | None:
    """A tracker the recipe names is a requirement: Accelerate raises on an unknown name only once the data and the
    model have loaded, and merely warns about one that is not installed, then trains untracked. Checked here, not as
    a type: a checkpoint's config read on another machine is still valid."""
    from accelerate.tracking import get_available_trackers
    from accelerate.utils import LoggerType

    known = [t.value for t in LoggerType]
    unknown = [name for name in names if name not in known]
    if unknown:
        return (
            f"unknown tracker(s) {unknown}: Accelerate knows {', '.join(known)}; or write log_with: auto (tensorboard "
            "when installed) or none"
        )
    available = {str(t.value if isinstance(t, LoggerType) else t) for t in get_available_trackers()}
    missing = [name for name in names if name != "all" and name not in available]
    if missing:
        packages = " ".join(_TRACKER_PACKAGES.get(name, name) for name in missing)
        return f"tracker(s) {missing} named but not installed: pip install {packages}, or remove them from log_with"
    return None


class RunConfig(_Strict):
    backbone: BackboneConfig
    strategy: dict[str, Any] | None = Field(
        None, description="`name` (a registered strategy) plus its options; omit in a ladder recipe"
    )
    ladder: LadderConfig | None = Field(None, description="climb the ladder instead of training one strategy")
    data: DataConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    metrics: list[str] | None = Field(
        None,
        description="reported on every split; default: the task's (single_label: accuracy, f1_macro; multi_label: "
        "map, f1_micro, f1_macro, subset_accuracy, the F1s at the threshold chosen on the validation rows; "
        "regression: rmse, mae, r2, spearman)",
    )
    output_dir: str = Field("outputs/run", description="the run's folder; nothing is written outside it")
    overwrite_output_dir: bool = Field(False, description="replace an earlier run in output_dir (--overwrite)")
    log_with: list[str] | Literal["auto", "none"] = Field(
        "auto",
        description="Accelerate trackers (tensorboard, wandb, ...), each installed; auto: tensorboard when installed",
    )
    project_name: str = Field("peft_ladder", description="tracker project name")
    # The token is never a recipe key: recipes get shared and dumped next to outputs. It comes from HF_TOKEN or
    # the saved login (`hf auth login`).
    push_to_hub: bool = Field(
        False, description="push the published artifact to `hub_model_id` once the run or ladder has finished"
    )
    hub_model_id: str | None = Field(None, description="the Hub model repo to push to: user/name or org/name")
    hub_private: bool = Field(False, description="create the repo private (an existing repo keeps its visibility)")
    hub_revision: str | None = Field(None, description="branch to push to, created from main when missing; None: main")
    hub_license: str | None = Field(
        None,
        description="the model card's `license` (a Hub licence id: apache-2.0, mit, cc-by-4.0, other, ...); None: the "
        "base checkpoint's, read from its card or config on this machine, else `other` and a line asking for one",
    )

    @field_validator("hub_model_id")
    @classmethod
    def _hub_repo_id(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        try:
            validate_repo_id(value)
        except HFValidationError:
            value = ""
        if value.count("/") != 1:
            raise ValueError("not a Hub repo id: use user/name or org/name (letters, digits, '-', '_', '.')")
        return value

    @field_validator("hub_license")
    @classmethod
    def _licence_id(cls, value: str | None) -> str | None:
        if value is not None and not LICENSE_ID.match(value):
            raise ValueError(
                "not a licence id: lowercase letters, digits, '.' and '-' as the Hub spells them (apache-2.0, mit, "
                "cc-by-4.0, other; https://huggingface.co/docs/hub/repositories-licenses)"
            )
        return value

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        if "name" not in value:
            raise ValueError("needs `name`, one of the registered strategies")
        options = {k: v for k, v in value.items() if k != "name"}
        try:
            get_strategy(value["name"])
        except KeyError as err:
            raise ValueError(err.args[0]) from None
        return {"name": value["name"], **make_strategy_config(value["name"], options).model_dump()}

    @model_validator(mode="after")
    def _strategy_or_ladder(self) -> RunConfig:
        if self.strategy is None and self.ladder is None:
            raise ValueError("set `strategy` (train one rung) or `ladder` (climb the rungs)")
        return self

    def problems(self) -> dict[str, str]:
        """Rules across sections, by dotted key (checked by `validate_config` after the types)."""
        found, tcfg = {}, self.train
        if self.push_to_hub and self.hub_model_id is None:
            found["hub_model_id"] = "push_to_hub is true but names no repo: set hub_model_id: user/name"
        if self.strategy is not None and get_strategy(self.strategy["name"]).trains_backbone:
            # Only where the backbone trains: a head-only rung has no backbone LR to compare.
            if tcfg.backbone_lr > tcfg.head_lr:
                found["train.backbone_lr"] = (
                    f"{tcfg.backbone_lr} is above train.head_lr ({tcfg.head_lr}); the backbone should move slower "
                    "than the new head (LP-FT: 10-100x lower)"
                )
        if isinstance(self.log_with, list) and (trackers := _tracker_problem(self.log_with)):
            found["log_with"] = trackers
        if self.ladder is not None and self.ladder.seeds is None and tcfg.seed + self.ladder.max_seeds - 1 > MAX_SEED:
            found["train.seed"] = (
                f"{tcfg.seed}: the ladder adds seeds train.seed + 1 ... + {self.ladder.max_seeds - 1} "
                f"(ladder.max_seeds), past numpy's largest seed {MAX_SEED}; pick a smaller train.seed"
            )
        return found

    def metric_names(self, task: str) -> list[str]:
        """The metrics reported: `metrics`, or the task's defaults; a builtin metric that does not apply to the task
        is refused naming it."""
        if self.metrics is None:
            return list(TASK_METRICS[task])
        try:
            check_metrics_for_task(self.metrics, task)
        except ValueError as err:
            raise ValueError(f"metrics: {err}") from None
        return list(self.metrics)

    def strategy_name(self) -> str:
        if self.strategy is None:
            raise ValueError("this is a ladder recipe: its strategies are in `ladder.rungs`")
        return self.strategy["name"]

    def strategy_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.strategy.items() if k != "name"}


def load_config(recipe: str | Path | None, overrides: list[str] | None = None, **values: Any) -> RunConfig:
    """Read a YAML recipe, apply dotted `key=value` overrides, validate.

    The recipe is plain YAML: a mapping at the top, each key once, no tags beyond YAML's own types (a
    `!!python/...` tag is refused, never run), one document.

    Args:
        recipe: path to a YAML recipe, or the name of a packaged one (`tiny/minilm_ladder`, `minilm_ladder`;
            `peft-ladder recipe list`); None: build from `values` and overrides alone.
        overrides: e.g. `["train.epochs=2", "strategy.r=4"]`.
        **values: a base mapping merged under the recipe (used by the Python API).

    Raises:
        ConfigError: naming the file (and line) or the dotted key of every problem.
    """
    where = str(recipe) if recipe else "<config>"
    try:
        merged = OmegaConf.create(values)
        if recipe is not None:
            merged = OmegaConf.merge(merged, _read_recipe(Path(recipe)))
        if overrides:
            merged = OmegaConf.merge(merged, _parse_overrides(list(overrides)))
        data = OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as err:
        key = f" {err.full_key}:" if getattr(err, "full_key", None) else ""
        message = " ".join(str(getattr(err, "msg", None) or err).split("\n")[0].split())
        raise ConfigError(f"{where}:{key} {message}") from None
    given = {o.split("=", 1)[0].strip().lstrip("+~") for o in overrides or () if "=" in o}
    return validate_config(data, where, given)


# YAML's own types; any other tag (`!!python/object/apply:...`, `!!binary`, `!custom`) is refused before anything
# is constructed. `timestamp`, `merge`, `value` and `yaml` are tags the safe loader gives plain scalars itself.
_PLAIN_TAGS = {
    f"tag:yaml.org,2002:{name}"
    for name in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp", "merge", "value", "yaml")
}


def _read_recipe(path: Path) -> Any:
    """The recipe file (or packaged recipe) as an OmegaConf mapping, after checking that it is one (see
    `load_config`)."""
    if not path.exists():
        try:
            packaged = find_recipe(str(path))
        except LookupError as err:
            raise ConfigError(str(err)) from None
        if packaged is None:
            raise ConfigError(
                f"recipe {path} does not exist (looked from {Path.cwd()}) and is not the name of a packaged recipe; "
                f"pass the path of a YAML recipe or one of: {', '.join(recipe_names())}."
            )
        path = packaged
    if path.is_dir():
        inside = sorted(str(p) for p in path.glob("*.y*ml"))[:3]
        hint = f" one of its recipes, e.g. {', '.join(inside)}" if inside else " a YAML file"
        raise ConfigError(f"recipe {path} is a folder, not a YAML file; pass{hint}.")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise ConfigError(f"recipe {path} cannot be read ({err.strerror or err}); check its permissions.") from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"recipe {path} is not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); save it "
            "as UTF-8."
        ) from None
    _check_plain_yaml(text, str(path), top_level_mapping=True)
    return OmegaConf.create(text)  # OmegaConf's own safe loader: YAML 1.2 floats (1e-3), no timestamps


def _parse_overrides(overrides: list[str]) -> Any:
    bad = [o for o in overrides if "=" not in o or not o.split("=", 1)[0].strip()]
    if bad:
        raise ConfigError(
            f"overrides are dotted key=value (e.g. train.epochs=2 strategy.r=4), got {bad}; a flag such as "
            "--resume takes no value, and a checkpoint folder goes to --resume-from."
        )
    for override in overrides:
        key, value = override.split("=", 1)
        _check_plain_yaml(value, f"override {override!r}", top_level_mapping=False, key=key)
    return OmegaConf.from_dotlist(overrides)


def _check_plain_yaml(text: str, where: str, *, top_level_mapping: bool, key: str = "") -> None:
    """Refuse what would otherwise fail deep inside (or worse): YAML that does not parse, more than one document,
    a top level that is not a mapping, a key given twice, a tag that is not one of YAML's own types."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)  # nodes only: no object is constructed
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        at = f", line {mark.line + 1}, column {mark.column + 1}" if mark and top_level_mapping else ""
        problem = " ".join(f"{err.context or ''} {err.problem or ''}".split())
        raise ConfigError(f"{where}{at}: not valid YAML ({problem}); fix the syntax.") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: not valid YAML ({' '.join(str(err).split())}); fix the syntax.") from None
    if root is None:
        return
    if top_level_mapping and not isinstance(root, yaml.MappingNode):
        found = "a list (`- ...`)" if isinstance(root, yaml.SequenceNode) else f"the single value {root.value!r}"
        raise ConfigError(
            f"{where}, line {root.start_mark.line + 1}: a recipe is a mapping of keys (backbone:, data:, strategy: "
            f"or ladder:, ...) but this file holds {found}; write `key: value` lines at the top level."
        )
    _check_aliases(root, where)
    _walk_yaml(root, where, key, set(), top_level_mapping)


def _check_aliases(root: Any, where: str) -> None:
    """Refuse aliases (`*name`) that refer to a node containing them, or that expand the document beyond
    MAX_YAML_NODES (a billion-laughs bomb): composing shares an aliased node, building the config copies it."""
    sizes: dict[int, int] = {}
    building: set[int] = set()

    def size(node: Any) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in building:
            raise ConfigError(
                f"{where}, line {node.start_mark.line + 1}: an alias refers to the node that contains it (a "
                "recursive alias); recipes are plain trees: write the value out."
            )
        building.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        sizes[id(node)] = 1 + sum(size(child) for child in children)
        building.discard(id(node))
        return sizes[id(node)]

    expanded = size(root)
    if expanded > MAX_YAML_NODES and expanded > len(sizes):
        raise ConfigError(
            f"{where}: its YAML aliases (*name) expand it to {expanded:,} values, above the {MAX_YAML_NODES:,} a "
            f"recipe may hold ({len(sizes):,} written); write the values out or use fewer aliases."
        )


def _walk_yaml(node: Any, where: str, key: str, seen: set[int], lines: bool) -> None:
    if id(node) in seen:  # an alias to a node already checked
        return
    seen.add(id(node))
    line = f", line {node.start_mark.line + 1}" if lines else ""
    if node.tag not in _PLAIN_TAGS:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        named = f" `{key}`" if key else ""
        raise ConfigError(
            f"{where}{line}:{named} carries the YAML tag {tag}, which recipes do not take (it was not run): "
            "recipes hold plain values (strings, numbers, booleans, lists, mappings); remove the tag."
        )
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk_yaml(item, where, f"{key}.{i}" if key else str(i), seen, lines)
    elif isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            _walk_yaml(key_node, where, key, seen, lines)
            name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else None
            dotted = f"{key}.{name}" if key else str(name)
            if name is not None and key_node.tag != "tag:yaml.org,2002:merge":
                if name in first:
                    raise ConfigError(
                        f"{where}, line {key_node.start_mark.line + 1}: key `{dotted}` is given twice (first on line "
                        f"{first[name]}); keep one."
                    )
                first[name] = key_node.start_mark.line + 1
            _walk_yaml(value_node, where, dotted, seen, lines)


def _from_command_line(key: str, overridden: set[str] | None) -> str:
    """ " (set on the command line)" when an override set `key` or a mapping holding it."""
    parts = key.split(".")
    hit = any(".".join(parts[:i]) in (overridden or ()) for i in range(1, len(parts) + 1))
    return " (set on the command line)" if hit else ""


def validate_config(data: dict[str, Any], where: str = "<config>", overridden: set[str] | None = None) -> RunConfig:
    """Validate a recipe's mapping; every problem is named by its dotted key, with what was found and the fix, and
    said to come from the command line where an override (`overridden`: dotted keys) set it.

    Raises:
        ConfigError: naming `where` and each dotted key.
    """
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            loc = tuple(e["loc"])
            key = ".".join(str(p) for p in loc) or "(top level)"
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "missing":
                msg = "missing: add it to the recipe"
            elif e["type"] == "extra_forbidden":
                msg = _unknown_key(loc)
            shown = repr(e.get("input"))
            quiet = e["type"] in ("missing", "extra_forbidden") or not loc or key == "strategy" or len(shown) > 120
            got = "" if quiet else f" (got {shown})"
            lines.append(f"  {key}: {msg}{got}{_from_command_line(key, overridden)}")
        raise ConfigError(f"{where}: invalid recipe\n" + "\n".join(lines)) from None
    problems = config.problems()
    if problems:
        raise ConfigError(
            f"{where}: invalid recipe\n"
            + "\n".join(f"  {k}: {v}{_from_command_line(k, overridden)}" for k, v in problems.items())
        )
    return config


def _unknown_key(loc: tuple[Any, ...]) -> str:
    """`unknown key`, with the closest valid key and the valid ones at that level."""
    model: Any = RunConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        model = model_in(field.annotation) if field else None
        if model is None:
            return "unknown key"
    valid = list(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
    hint = f"did you mean `{close[0]}`? " if close else ""
    return f"unknown key; {hint}valid keys here: {', '.join(valid)}"


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML, written next to the outputs."""
    return OmegaConf.to_yaml(OmegaConf.create(config.model_dump(mode="json")))

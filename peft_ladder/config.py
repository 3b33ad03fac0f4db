"""Recipes: YAML -> typed, validated config. Unknown keys and wrong types fail before any work,
with the dotted key and the file named. Dotted `key=value` overrides come from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from peft_ladder.strategies.registry import get_strategy, make_strategy_config


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BackboneConfig(_Strict):
    name: str = Field(description="`timm:<name>`, `hf:<id or folder>`, or a local folder (see load_backbone)")
    pretrained: bool = True
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="timm create_model kwargs / HF config overrides"
    )
    revision: str | None = None
    checkpoint: str | None = Field(None, description="local .safetensors weights for a timm architecture")
    head: list[str] | None = None
    block_pattern: str | None = None
    tokenizer: str | None = None
    pooling: Literal["auto", "cls", "mean", "max", "pooler", "last"] = Field(
        "auto",
        description="text backbones: how token states become the head's input; auto: what a sentence-transformers "
        "checkpoint declares (modules.json), else the family's convention, and a ladder's probe compares the "
        "family's candidates on the training folds",
    )
    pooling_normalize: bool | None = Field(None, description="L2-normalise pooled features; None: as declared")
    trust_remote_code: bool = Field(False, description="run modelling code from the repo; off unless you trust it")
    allow_pickle: bool = Field(
        False, description="accept .bin/.pt weights (weights_only=True); default safetensors only"
    )


class SliceConfig(_Strict):
    name: str
    column: str
    values: list[Any] = Field(description="rows whose `column` is one of these values form the slice")


class DataConfig(_Strict):
    dataset: str = Field(
        description="`stdlib_docstrings` (built in), a Hub id, an image folder, or a csv/json/parquet file"
    )
    config_name: str | None = None
    revision: str | None = None
    data_files: dict[str, str] | None = Field(None, description="split -> file, for csv/json/parquet")
    text_column: str | None = Field(None, description="default: guessed (text, sentence, content, ...)")
    image_column: str | None = Field(None, description="default: guessed (image, img)")
    label_column: str | None = Field(None, description="default: guessed (label, labels, class, target)")
    train_split: str = "train"
    validation_split: str | None = Field(None, description="default: validation/valid/val/dev, else carved from train")
    test_split: str | None = Field(None, description="default: `test` when it exists")
    validation_fraction: float = Field(
        0.1, gt=0, lt=1, description="share of train carved off when no validation split"
    )
    max_samples: dict[str, int] = Field(default_factory=dict, description="split -> cap, for quick runs")
    max_length: int | None = Field(None, ge=8, description="tokenizer max length; default: the model's, at most 512")
    augment: bool = Field(False, description="train-time augmentation (timm's train transform) for images")
    slices: list[SliceConfig] = Field(default_factory=list)
    num_workers: int = Field(0, ge=0)


class LPFTConfig(_Strict):
    """Two-phase LP-FT (Kumar et al., 2022): head first, then the strategy's backbone part."""

    enabled: bool | Literal["auto"] = Field("auto", description="auto: on for pretrained rungs that train the backbone")
    head_epochs: int = Field(2, ge=1, description="phase 1 epoch budget")
    plateau_patience: int | None = Field(
        1, ge=1, description="end phase 1 early once validation loss stops improving for this many epochs"
    )
    min_delta: float = Field(1e-3, ge=0)


class TrainConfig(_Strict):
    epochs: int = Field(3, ge=1, description="epochs of the main phase (phase 2 under LP-FT)")
    batch_size: int = Field(32, ge=1, description="per process")
    eval_batch_size: int | None = Field(None, ge=1, description="default: 2 x batch_size (no activations kept)")
    head_lr: float = Field(1e-3, gt=0)
    backbone_lr: float = Field(1e-5, gt=0, description="10-100x below head_lr (LP-FT); LoRA adapters use ~1e-4..1e-3")
    weight_decay: float = Field(0.01, ge=0)
    layer_decay: float | None = Field(None, gt=0, le=1)
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="of each phase's steps (6% as in RoBERTa fine-tuning)")
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_grad_norm: float | None = Field(1.0, gt=0)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    optimizer: Literal["auto", "fused", "foreach", "for_loop"] = Field(
        "auto", description="AdamW implementation; auto: fused on CUDA, foreach elsewhere (PyTorch's default)"
    )
    channels_last: bool | Literal["auto"] = Field(
        "auto", description="NHWC memory format for convolutional image backbones; auto: on CUDA only"
    )
    compile: bool = Field(False, description="torch.compile what trains (the model, or the cached tail)")
    seed: int = 42
    lpft: LPFTConfig = Field(default_factory=LPFTConfig)

    @model_validator(mode="after")
    def _backbone_below_head(self) -> TrainConfig:
        if self.backbone_lr > self.head_lr:
            raise ValueError(
                f"train.backbone_lr ({self.backbone_lr}) is above train.head_lr ({self.head_lr}); "
                "the backbone should move slower than the new head"
            )
        return self


class CacheConfig(_Strict):
    """Activations of frozen parts, computed once and reused across epochs, trials and runs.

    `linear_probe` trains its head on cached penultimate features; `partial_unfreeze` trains its tail on
    the cached input of its first trainable block. The key covers the frozen weights, revision, cut,
    preprocessing, split, rows and precision. Image augmentation turns the cache off.
    """

    enabled: bool = True
    prefix: bool = Field(True, description="also cache the frozen prefix of partial_unfreeze")
    dir: str | None = Field(None, description="default: $PEFT_LADDER_CACHE, else <HF datasets cache>/peft_ladder")
    max_gib: float = Field(4.0, gt=0, description="train the whole model instead when a split's cache would be larger")


class CheckpointConfig(_Strict):
    every_n_steps: int | None = Field(None, ge=1)
    each_epoch: bool = True
    keep_last: int = Field(2, ge=1)


class LRSearchConfig(_Strict):
    """The same small LR grid for every rung, so no rung wins by a better-tuned learning rate."""

    multipliers: list[float] = Field(
        default_factory=lambda: [0.3, 1.0, 3.0],
        min_length=1,
        description="LRs tried per rung = the rung's default LR x each multiplier (half a decade each side)",
    )

    @field_validator("multipliers")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        if any(m <= 0 for m in value):
            raise ValueError("every multiplier must be > 0")
        return sorted(set(value))


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


class LadderConfig(_Strict):
    """Climb the ladder: rungs in order, each against the best simpler one and the scratch control."""

    rungs: list[dict[str, Any]] = Field(
        default_factory=lambda: [
            {"name": "linear_probe"},
            {"name": "lora"},
            {"name": "partial_unfreeze"},
            {"name": "full"},
        ],
        min_length=1,
        validate_default=True,
        description="strategies in climbing order: `name`, its options, and optionally `lr` (the rung's default LR) "
        "and `id` (to tell two rungs of one strategy apart)",
    )
    scratch: bool = Field(True, description="train the from-scratch control (same architecture, same budget)")
    run_all: bool = Field(False, description="run every rung even after the climb rule stops (full comparison)")
    metric: Literal["accuracy", "f1_macro"] = Field("accuracy", description="the metric the climb rule compares")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="of the paired bootstrap intervals")
    bootstrap_samples: int = Field(2000, ge=200)
    min_gain: float = Field(
        0.0,
        ge=0,
        description="a deeper rung must beat the best simpler one by more than this at the interval's low end",
    )
    target: float | None = Field(None, description="stop climbing once the best rung reaches this metric value")
    seeds: list[int] | None = Field(
        None,
        min_length=1,
        description="train each rung with these seeds (default: [train.seed]); the interval "
        "then resamples seeds and examples",
    )
    lr_search: LRSearchConfig = Field(default_factory=LRSearchConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    transferability: bool = Field(True, description="LogME and H-score of the frozen features before any training")
    keep: Literal["all", "rungs", "recommended"] = Field(
        "rungs",
        description="all: every trial's artifact; rungs: each rung's chosen-LR artifact; recommended: only its",
    )

    @field_validator("rungs")
    @classmethod
    def _known_rungs(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out, ids = [], set()
        for i, rung in enumerate(value):
            if not isinstance(rung, dict) or "name" not in rung:
                raise ValueError(f"rung {i} needs `name`, one of the registered strategies")
            options = {k: v for k, v in rung.items() if k not in ("name", "lr", "id")}
            try:
                strategy = get_strategy(rung["name"])
            except KeyError as err:
                raise ValueError(f"rung {i}: {err.args[0]}") from None
            if not strategy.from_pretrained:
                raise ValueError(f"rung {i}: {rung['name']!r} is the control; set ladder.scratch instead")
            lr = rung.get("lr")
            if lr is not None and (not isinstance(lr, (int, float)) or lr <= 0):
                raise ValueError(f"rung {i}: lr must be a positive number, got {lr!r}")
            rung_id = str(rung.get("id") or rung["name"])
            if rung_id in ids:
                raise ValueError(f"rung {i}: id {rung_id!r} is used twice; give one of them an `id`")
            ids.add(rung_id)
            cfg = make_strategy_config(rung["name"], options, where=f"ladder.rungs.{i}")
            out.append({"id": rung_id, "name": rung["name"], "lr": lr, **cfg.model_dump()})
        return out


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
    metrics: list[str] = Field(default_factory=lambda: ["accuracy", "f1_macro"])
    output_dir: str = "outputs/run"
    overwrite_output_dir: bool = False
    log_with: list[str] | Literal["auto", "none"] = Field("auto", description="auto: tensorboard when installed")
    project_name: str = "peft_ladder"

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

    def strategy_name(self) -> str:
        if self.strategy is None:
            raise ValueError("this is a ladder recipe: its strategies are in `ladder.rungs`")
        return self.strategy["name"]

    def strategy_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.strategy.items() if k != "name"}


class ConfigError(ValueError):
    """A recipe or override is wrong; the message names the file and the dotted key."""


def load_config(recipe: str | Path | None, overrides: list[str] | None = None, **values: Any) -> RunConfig:
    """Read a YAML recipe, apply dotted `key=value` overrides, validate.

    Args:
        recipe: path to a YAML recipe (None: build from `values` and overrides alone).
        overrides: e.g. `["train.epochs=2", "strategy.r=4"]`.
        **values: a base mapping merged under the recipe (used by the Python API).

    Raises:
        ConfigError: naming the file and dotted key of every problem.
    """
    where = str(recipe) if recipe else "<config>"
    try:
        merged = OmegaConf.create(values)
        if recipe is not None:
            path = Path(recipe)
            if not path.is_file():
                raise ConfigError(f"recipe {path} does not exist.")
            merged = OmegaConf.merge(merged, OmegaConf.load(path))
        if overrides:
            bad = [o for o in overrides if "=" not in o]
            if bad:
                raise ConfigError(f"overrides must be dotted key=value, got {bad}.")
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
        data = OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as err:
        raise ConfigError(f"{where}: {err}") from None
    return validate_config(data, where)


def validate_config(data: dict[str, Any], where: str = "<config>") -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            key = ".".join(str(p) for p in e["loc"]) or "<root>"
            msg = e["msg"].removeprefix("Value error, ")
            got = "" if e["type"] == "missing" or key == "strategy" else f" (got {e.get('input')!r})"
            lines.append(f"  {key}: {msg}{got}")
        raise ConfigError(f"{where}: invalid recipe\n" + "\n".join(lines)) from None


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML, written next to the outputs."""
    return OmegaConf.to_yaml(OmegaConf.create(config.model_dump(mode="json")))

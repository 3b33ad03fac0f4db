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


class CheckpointConfig(_Strict):
    every_n_steps: int | None = Field(None, ge=1)
    each_epoch: bool = True
    keep_last: int = Field(2, ge=1)


class RunConfig(_Strict):
    backbone: BackboneConfig
    strategy: dict[str, Any] = Field(description="`name` (a registered strategy) plus its options")
    data: DataConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    metrics: list[str] = Field(default_factory=lambda: ["accuracy", "f1_macro"])
    output_dir: str = "outputs/run"
    overwrite_output_dir: bool = False
    log_with: list[str] | Literal["auto", "none"] = Field("auto", description="auto: tensorboard when installed")
    project_name: str = "peft_ladder"

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: dict[str, Any]) -> dict[str, Any]:
        if "name" not in value:
            raise ValueError("needs `name`, one of the registered strategies")
        options = {k: v for k, v in value.items() if k != "name"}
        try:
            get_strategy(value["name"])
        except KeyError as err:
            raise ValueError(err.args[0]) from None
        return {"name": value["name"], **make_strategy_config(value["name"], options).model_dump()}

    def strategy_name(self) -> str:
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

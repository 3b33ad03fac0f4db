"""Adapters: a peft method becomes a strategy with one `register_adapter` call (the table: `adapter_table.py`).

Each method is its own strategy name. Its options are its peft config class's own dataclass fields, typed as
peft types them, plus our shared `bn_policy` and `target_modules`; unknown keys and bad values fail with the
dotted key. The head rides along as `modules_to_save`, so the saved folder loads with stock
`PeftModel.from_pretrained`.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import peft
import torch.nn as nn
from peft.tuners.tuners_utils import check_target_module_exists
from pydantic import AliasChoices, Field, ValidationError, create_model, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails, PydanticCustomError
from torch.nn.modules.batchnorm import _BatchNorm

from peft_ladder.backbones.backbone import Backbone
from peft_ladder.hub.portable import base_reference
from peft_ladder.logs import library_quiet
from peft_ladder.strategies.base import Strategy, StrategyConfig
from peft_ladder.strategies.registry import get_strategy, list_strategies, register_strategy

# A method's own limits on a backbone and the modules it would wrap (by name): None when it fits, else why not
# (FourierFT's n_frequency against each target's size, OFT's trouble with channels-last inputs).
FitCheck = Callable[[Backbone, Mapping[str, nn.Module], "AdapterConfig"], "str | None"]

_IMMUTABLE = (bool, int, float, str, tuple, type(None))
# PeftConfig's own fields (peft_type, revision, inference_mode, ...) describe an artifact, not a method.
_PEFT_BOOKKEEPING = frozenset(f.name for f in dataclasses.fields(peft.PeftConfig))
# Fields we always set: a user value would break training or reloading, so they are refused by name.
_SET_BY_US = {
    "modules_to_save": "it is the head (plus the BatchNorms that update under bn_policy=update), so that it "
    "trains and is saved with the adapter",
    "task_type": "it stays unset, so peft wraps our backbone as it is; a task type adds peft's own task "
    "wrapper and head names, which our backbones do not have",
}


@dataclass(frozen=True)
class AdapterMethod:
    """One row of the adapter table: a peft config class and what peft_ladder knows about it.

    Attributes:
        name: the strategy name.
        peft_config_cls: the peft config dataclass (its fields are the options).
        peft_type: what peft registered that class under (its parameters carry that type's prefix).
        defaults: our defaults where they differ from peft's.
        aliases: other names accepted for a field (recipe shorthand), alias -> field.
        linear_only: wraps only `nn.Linear`: default targets skip convolutions, other layers are refused.
        fits: the method's own limits on a backbone and its targets.
        description: one line for listings.
    """

    name: str
    peft_config_cls: type[peft.PeftConfig]
    peft_type: peft.PeftType
    defaults: Mapping[str, Any]
    aliases: Mapping[str, str]
    linear_only: bool
    fits: FitCheck | None
    description: str


class AdapterConfig(StrategyConfig):
    """Options every adapter shares; `register_adapter` adds the method's peft config fields."""

    adapter_method: ClassVar[AdapterMethod]

    target_modules: list[str] | str | None = Field(
        None,
        description="modules to adapt (peft syntax: names/suffixes or a regex); default: the backbone's default "
        "targets (its attention projections, else the Linear and ungrouped Conv2d layers in its blocks; Linear "
        "only for methods that wrap only Linear layers)",
    )

    @model_validator(mode="before")
    @classmethod
    def _refuse_ours_and_double_names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        errors = [
            InitErrorDetails(
                type=PydanticCustomError(
                    "set_by_peft_ladder", "set by peft_ladder, not an option: {why}", {"why": why}
                ),
                loc=(key,),
                input=data[key],
            )
            for key, why in _SET_BY_US.items()
            if key in data
        ]
        for name, info in cls.model_fields.items():
            given = [n for n in _accepted_names(name, info) if n in data]
            if len(given) > 1:
                errors.append(
                    InitErrorDetails(
                        type=PydanticCustomError(
                            "same_field_twice",
                            "{names} are one option, peft's {field}; keep one",
                            {"names": " and ".join(given), "field": name},
                        ),
                        loc=(given[-1],),
                        input=data[given[-1]],
                    )
                )
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return data

    @model_validator(mode="after")
    def _peft_accepts(self) -> AdapterConfig:
        # peft's own cross-field checks (OFT takes r or oft_block_size, not both) when the recipe is read,
        # not when a rung starts; targets stay as given (None = the backbone's, resolved when applied).
        method = type(self).adapter_method
        try:
            method.peft_config_cls(**self.peft_fields(), target_modules=self.target_modules)
        except (ValueError, TypeError) as err:
            raise ValueError(f"peft's {method.peft_config_cls.__name__} refuses these options: {err}") from None
        return self

    def peft_fields(self) -> dict[str, Any]:
        """The options that are the peft config's own fields, as validated (nested peft configs stay objects)."""
        return {name: getattr(self, name) for name in type(self).model_fields if name not in AdapterConfig.model_fields}


class Adapter(Strategy):
    """A peft method as a strategy; `register_adapter` makes one subclass per method."""

    config_cls: ClassVar[type[AdapterConfig]] = AdapterConfig
    artifact_kind = "adapter"

    def supports(self, backbone: Backbone, config: AdapterConfig) -> str | None:
        if config.target_modules is not None:
            return None  # the user named the modules: peft (and `configure`) say whether they fit
        try:
            peft_config = build_peft_config(backbone, config)
        except ValueError as err:  # no default targets of the layer kinds this method wraps
            return str(err)
        return _misfit(backbone, peft_config, config)

    def configure(self, backbone: Backbone, config: AdapterConfig) -> nn.Module:
        peft_config = build_peft_config(backbone, config)
        where = f"strategy.target_modules={peft_config.target_modules!r}"
        misfit = _misfit(backbone, peft_config, config)
        if misfit:
            raise ValueError(f"{where} does not fit {backbone.spec.name}: {misfit}")
        # peft takes the base's name from the model (and warns when it differs from the config's): name it.
        backbone.model.name_or_path = peft_config.base_model_name_or_path
        try:
            with library_quiet():  # peft's notes about its own CUDA kernels and defaults
                return peft.get_peft_model(backbone.model, peft_config)
        except (ValueError, TypeError) as err:
            raise ValueError(
                f"{where} does not fit {backbone.spec.name}: {err} Its default targets are "
                f"{_describe_targets(backbone, config)}."
            ) from None


def register_adapter(
    name: str,
    peft_config_cls: type[peft.PeftConfig],
    *,
    default_lr: float,
    description: str,
    order: int = 20,
    defaults: Mapping[str, Any] | None = None,
    aliases: Mapping[str, str] | None = None,
    bounds: Mapping[str, FieldInfo] | None = None,
    linear_only: bool = False,
    fits: FitCheck | None = None,
) -> type[Adapter]:
    """Register the peft method `peft_config_cls` as the strategy `name`, its fields as the options.

    Args:
        name: strategy name (a duplicate raises, as for any strategy).
        peft_config_cls: a peft config dataclass whose `peft_type` peft has registered.
        default_lr: the ladder's starting LR for the adapter (cite where it comes from).
        description: one line for listings and the strategy's docstring.
        order: position on the ladder (bitfit is 25, partial_unfreeze 30).
        defaults: our defaults where they differ from peft's, by field name.
        aliases: recipe shorthand accepted for a field, alias -> field (e.g. `alpha` -> `lora_alpha`).
        bounds: extra constraints on a field, e.g. `{"r": Field(ge=1)}`.
        linear_only: the method wraps only `nn.Linear` (VeRA, FourierFT).
        fits: the method's own limits on a backbone and the modules it would wrap; None when it fits, else why
            not. Asked before anything is wrapped, for default targets by `supports` (the pair is unsupported)
            and for given ones by `configure` (a ValueError).

    Returns:
        The registered strategy class.

    Raises:
        ValueError: a default, alias or bound names no option of `peft_config_cls`, or peft refuses the defaults.
    """
    defaults, aliases, bounds = dict(defaults or {}), dict(aliases or {}), dict(bounds or {})
    options = _option_fields(peft_config_cls)
    for what, keys in (("defaults", defaults), ("aliases", aliases.values()), ("bounds", bounds)):
        unknown = sorted(set(keys) - set(options))
        if unknown:
            raise ValueError(
                f"register_adapter({name!r}): {what} name {unknown}, not options of {peft_config_cls.__name__}; "
                f"its options: {sorted(options)}."
            )
    try:
        peft_type = peft_config_cls(**defaults).peft_type
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"register_adapter({name!r}): {peft_config_cls.__name__} refuses the defaults: {err}"
        ) from None
    method = AdapterMethod(
        name=name,
        peft_config_cls=peft_config_cls,
        peft_type=peft_type,
        defaults=defaults,
        aliases=aliases,
        linear_only=linear_only,
        fits=fits,
        description=description,
    )
    title = name.title().replace("_", "")
    hints = typing.get_type_hints(peft_config_cls)
    config_cls = create_model(
        f"{title}Config",
        __base__=AdapterConfig,
        __module__=__name__,
        __doc__=f"Options of `{name}`: {peft_config_cls.__name__}'s fields plus the shared ones.",
        **{field: _option(field, f, hints[field], method, bounds.get(field)) for field, f in options.items()},
    )
    config_cls.adapter_method = method
    strategy = type(
        f"{title}Adapter",
        (Adapter,),
        {
            "__doc__": description,
            "__module__": __name__,
            "name": name,
            "config_cls": config_cls,
            "order": order,
            "default_lr": default_lr,
        },
    )
    return register_strategy(strategy)


def list_adapters() -> list[str]:
    """Names of the registered adapter strategies, in ladder order."""
    return [n for n in list_strategies() if issubclass(get_strategy(n), Adapter)]


def adapter_method(name: str) -> AdapterMethod:
    """The table row behind the adapter strategy `name`; a KeyError names the adapters."""
    cls = get_strategy(name)
    if not issubclass(cls, Adapter):
        raise KeyError(f"strategy {name!r} is not an adapter; adapters: {list_adapters()}.")
    return cls.config_cls.adapter_method


def build_peft_config(backbone: Backbone, config: AdapterConfig) -> peft.PeftConfig:
    """The peft config for an adapter strategy's validated `config` on `backbone`: its peft fields, the
    targets (the backbone's default ones unless given) and the head (and updating BatchNorms) to save.

    Raises:
        ValueError: no targets given and the backbone has no default ones of the kinds this method wraps.
    """
    method = type(config).adapter_method
    targets = config.target_modules
    if targets is None:
        targets = backbone.default_targets(linear_only=method.linear_only)
    modules_to_save = list(backbone.layout.head_modules)
    if config.bn_policy == "update":
        # Running statistics that move must be saved with the adapter; peft saves modules_to_save
        # (and trains their affine parameters too).
        modules_to_save += [n for n, m in backbone.model.named_modules() if isinstance(m, _BatchNorm)]
    return method.peft_config_cls(
        **config.peft_fields(),
        target_modules=targets,
        modules_to_save=modules_to_save,
        # Stock peft then loads a text adapter with AutoPeftModelForSequenceClassification (a tagger's with
        # AutoPeftModelForTokenClassification); it names no image task.
        task_type=_peft_task_type(backbone),
        base_model_name_or_path=base_reference(backbone.spec.name, backbone.spec.hub_id),
    )


def _peft_task_type(backbone: Backbone) -> str | None:
    if backbone.modality != "text":
        return None
    return "TOKEN_CLS" if backbone.pooling is not None and backbone.pooling.mode == "token" else "SEQ_CLS"


def _misfit(backbone: Backbone, peft_config: peft.PeftConfig, config: AdapterConfig) -> str | None:
    """Why the modules `peft_config` targets do not suit the method (None: they do), asked before peft
    wraps anything, so a refusal leaves the model untouched."""
    method = type(config).adapter_method
    targets = {
        name: module
        for name, module in backbone.model.named_modules()
        if name and check_target_module_exists(peft_config, name)
    }
    if method.linear_only:
        for name, module in targets.items():
            if not isinstance(module, nn.Linear):
                return f"{method.name} wraps only Linear layers, and {name} is a {type(module).__name__}."
    return method.fits(backbone, targets, config) if method.fits else None


def _option_fields(peft_config_cls: type[peft.PeftConfig]) -> dict[str, dataclasses.Field]:
    """The peft config's own fields that a user may set (bookkeeping, ours and the shared ones left out)."""
    left_out = _PEFT_BOOKKEEPING | set(_SET_BY_US) | set(AdapterConfig.model_fields)
    return {f.name: f for f in dataclasses.fields(peft_config_cls) if f.name not in left_out and f.init}


def _option(
    name: str, f: dataclasses.Field, annotation: Any, method: AdapterMethod, bound: FieldInfo | None
) -> tuple[Any, FieldInfo]:
    """A pydantic field for a peft dataclass field: peft's type (plus our bound), our default or peft's,
    peft's help text, and the aliases the table gives it."""
    if bound is not None:
        annotation = Annotated[annotation, bound]
    aliases = sorted(a for a, target in method.aliases.items() if target == name)
    extra: dict[str, Any] = {"description": f.metadata.get("help")}
    if aliases:
        extra["validation_alias"] = AliasChoices(name, *aliases)
    if name in method.defaults:
        value = method.defaults[name]
        if isinstance(value, _IMMUTABLE):
            return annotation, Field(value, **extra)
        return annotation, Field(default_factory=lambda: copy.deepcopy(value), **extra)
    if f.default_factory is not dataclasses.MISSING:
        return annotation, Field(default_factory=f.default_factory, **extra)
    if f.default is not dataclasses.MISSING:
        return annotation, Field(f.default, **extra)
    return annotation, Field(..., **extra)


def _accepted_names(name: str, info: FieldInfo) -> list[str]:
    if isinstance(info.validation_alias, AliasChoices):
        return [c for c in info.validation_alias.choices if isinstance(c, str)]
    return [name]


def _describe_targets(backbone: Backbone, config: AdapterConfig) -> str:
    try:
        return str(backbone.default_targets(linear_only=type(config).adapter_method.linear_only))
    except ValueError as err:
        return f"none ({err})"

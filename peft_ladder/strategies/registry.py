"""The one strategy registry: a strategy registers itself in the file that defines it."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from peft_ladder.strategies.base import Strategy, StrategyConfig

_REGISTRY: dict[str, type[Strategy]] = {}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: add a `Strategy` subclass under its `name`. A duplicate name raises."""
    name = getattr(cls, "name", None)
    if not name:
        raise TypeError(f"{cls.__name__} needs a class attribute `name` to be registered.")
    if name in _REGISTRY:
        raise ValueError(f"strategy {name!r} is already registered by {_REGISTRY[name].__module__}.")
    _REGISTRY[name] = cls
    return cls


def list_strategies() -> list[str]:
    """Names of every registered strategy, in registration (ladder) order."""
    return sorted(_REGISTRY, key=lambda n: _REGISTRY[n].order)


def get_strategy(name: str) -> type[Strategy]:
    """The strategy class registered under `name`; the error lists the registered names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown strategy {name!r}; registered strategies: {list_strategies()}.") from None


def make_strategy_config(
    name: str, options: dict[str, Any] | None = None, *, where: str = "strategy"
) -> StrategyConfig:
    """Validate `options` against the named strategy's config class.

    Args:
        name: registered strategy name.
        options: config fields (unknown keys are errors).
        where: dotted prefix for error messages, e.g. `strategy` or `ladder.rungs.1`.

    Raises:
        ValueError: naming the dotted key that is wrong and what it expected.
    """
    cls = get_strategy(name)
    try:
        return cls.config_cls(**(options or {}))
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join([where, *map(str, e['loc'])] if where else map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})"
            for e in err.errors()
        )
        fields = ", ".join(cls.config_cls.model_fields)
        raise ValueError(f"invalid options for strategy {name!r}: {problems}. Valid fields: {fields}.") from None

"""The strategy registry. Every module in this package registers its strategy on import,
so adding a strategy is one new file here."""

import importlib
import pkgutil

from peft_ladder.strategies.apply import apply_strategy, finish_adaptation
from peft_ladder.strategies.base import AdaptedModel, Strategy, StrategyConfig
from peft_ladder.strategies.registry import get_strategy, list_strategies, make_strategy_config, register_strategy

_INFRASTRUCTURE = {"apply", "base", "registry", "batchnorm", "report", "param_groups"}
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _INFRASTRUCTURE:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "AdaptedModel",
    "Strategy",
    "StrategyConfig",
    "apply_strategy",
    "finish_adaptation",
    "get_strategy",
    "list_strategies",
    "make_strategy_config",
    "register_strategy",
]

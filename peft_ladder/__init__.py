"""peft_ladder: climb the adaptation ladder (probe, adapters, partial unfreeze, full) with evidence."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Every name loads on first use: `import peft_ladder` (and `peft-ladder --help`) never waits on torch,
# transformers, peft or Accelerate.
_LAZY = {
    "AdaptedModel": "peft_ladder.strategies",
    "apply_strategy": "peft_ladder.strategies",
    "get_strategy": "peft_ladder.strategies",
    "list_strategies": "peft_ladder.strategies",
    "register_strategy": "peft_ladder.strategies",
    "Backbone": "peft_ladder.backbones",
    "BackboneSpec": "peft_ladder.backbones",
    "load_backbone": "peft_ladder.backbones",
    "load_adapted": "peft_ladder.artifacts",
    "save_adapted": "peft_ladder.artifacts",
    "RunConfig": "peft_ladder.config",
    "load_config": "peft_ladder.config",
    "RunResult": "peft_ladder.results",
    # `peft_ladder.train` is the CLI module (`accelerate launch peft_ladder/train.py`), so the function is
    # `train_rung`: one rung from a recipe (engine.train).
    "train_rung": "peft_ladder.engine:train",
    "Ladder": "peft_ladder.ladder",
    "TransferNote": "peft_ladder.ladder",
    "run_ladder": "peft_ladder.ladder",
    "PushError": "peft_ladder.hub.push",
    "push_to_hub": "peft_ladder.hub.push",
    "export": "peft_ladder.hub.export",
    "predict": "peft_ladder.inference.loop",
    "evaluate": "peft_ladder.inference.loop",
}

if TYPE_CHECKING:
    from peft_ladder.artifacts import load_adapted, save_adapted
    from peft_ladder.backbones import Backbone, BackboneSpec, load_backbone
    from peft_ladder.config import RunConfig, load_config
    from peft_ladder.engine import train as train_rung
    from peft_ladder.hub.export import export
    from peft_ladder.hub.push import PushError, push_to_hub
    from peft_ladder.inference.loop import evaluate, predict
    from peft_ladder.ladder import Ladder, TransferNote, run_ladder
    from peft_ladder.results import RunResult
    from peft_ladder.strategies import (
        AdaptedModel,
        apply_strategy,
        get_strategy,
        list_strategies,
        register_strategy,
    )


def __getattr__(name: str):
    if name in _LAZY:
        module, _, attr = _LAZY[name].partition(":")
        value = getattr(import_module(module), attr or name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'peft_ladder' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


# Spelled out (not sorted(_LAZY)) so linters and IDEs see the public names; a test checks they agree.
__all__ = [
    "AdaptedModel",
    "Backbone",
    "BackboneSpec",
    "Ladder",
    "PushError",
    "RunConfig",
    "RunResult",
    "TransferNote",
    "apply_strategy",
    "evaluate",
    "export",
    "get_strategy",
    "list_strategies",
    "load_adapted",
    "load_backbone",
    "load_config",
    "predict",
    "push_to_hub",
    "register_strategy",
    "run_ladder",
    "save_adapted",
    "train_rung",
]

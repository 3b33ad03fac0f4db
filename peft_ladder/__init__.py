"""peft_ladder: climb the adaptation ladder (probe, adapters, partial unfreeze, full) with evidence."""

from peft_ladder.artifacts import load_adapted, save_adapted
from peft_ladder.backbones import Backbone, BackboneSpec, load_backbone
from peft_ladder.strategies import AdaptedModel, apply_strategy, get_strategy, list_strategies, register_strategy

__version__ = "0.1.0"

# The ladder pulls in the engine (Accelerate, datasets); load it on first use. Push and export too, so that
# `import peft_ladder` never waits on huggingface_hub's upload machinery.
_LAZY = {
    "Ladder": "peft_ladder.ladder",
    "TransferNote": "peft_ladder.ladder",
    "run_ladder": "peft_ladder.ladder",
    "PushError": "peft_ladder.hub.push",
    "push_to_hub": "peft_ladder.hub.push",
    "export": "peft_ladder.hub.export",
}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'peft_ladder' has no attribute {name!r}")


__all__ = [
    "AdaptedModel",
    "Ladder",
    "TransferNote",
    "Backbone",
    "BackboneSpec",
    "PushError",
    "apply_strategy",
    "export",
    "get_strategy",
    "list_strategies",
    "load_adapted",
    "load_backbone",
    "push_to_hub",
    "register_strategy",
    "run_ladder",
    "save_adapted",
]

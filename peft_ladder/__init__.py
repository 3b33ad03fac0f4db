"""peft_ladder: climb the adaptation ladder (probe, adapters, partial unfreeze, full) with evidence."""

from peft_ladder.artifacts import load_adapted, save_adapted
from peft_ladder.backbones import Backbone, BackboneSpec, load_backbone
from peft_ladder.strategies import AdaptedModel, apply_strategy, get_strategy, list_strategies, register_strategy

__version__ = "0.1.0"

__all__ = [
    "AdaptedModel",
    "Backbone",
    "BackboneSpec",
    "apply_strategy",
    "get_strategy",
    "list_strategies",
    "load_adapted",
    "load_backbone",
    "register_strategy",
    "save_adapted",
]

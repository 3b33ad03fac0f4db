"""Backbones from timm and transformers, with one uniform description."""

from peft_ladder.backbones.backbone import Backbone, BackboneSpec
from peft_ladder.backbones.layout import BackboneLayout, Block
from peft_ladder.backbones.loader import load_backbone, load_backbone_from_spec

__all__ = ["Backbone", "BackboneLayout", "BackboneSpec", "Block", "load_backbone", "load_backbone_from_spec"]

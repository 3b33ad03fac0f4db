"""Datasets bundled with peft_ladder."""

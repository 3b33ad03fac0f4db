"""Data: `datasets` loading, splits and columns, tokenization and image transforms; built-in datasets."""

from peft_ladder.data.pipeline import Encoded, encode_splits
from peft_ladder.data.splits import Splits, hold_out_decision, load_raw, make_splits

__all__ = ["Encoded", "Splits", "encode_splits", "hold_out_decision", "load_raw", "make_splits"]

"""The adaptation ladder: the climb, its statistics, drift, transferability scores and the transfer note."""

from peft_ladder.ladder.climb import Ladder, run_ladder
from peft_ladder.ladder.note import TransferNote

__all__ = ["Ladder", "TransferNote", "run_ladder"]

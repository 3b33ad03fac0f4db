"""Per-group LR multipliers for the two-phase (LP-FT) schedule.

One `LambdaLR` drives every param group, built after all groups exist. Head groups warm up in
phase 1 and hold; backbone groups sit at 0 in phase 1. In phase 2 every group follows the same
warmup + decay, so the head LR stays the configured multiple of the backbone LR. The callables
are objects, so `LambdaLR.state_dict()` saves their state (when phase 2 began) for resume.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


class PhaseSchedule:
    """LR multiplier for one param group.

    Args:
        role: "head" or "backbone".
        phase2_start: optimizer step where phase 2 begins (0 when there is one phase).
        phase2_steps: steps in phase 2 (the whole run when there is one phase).
        warmup_ratio: warmup share of each phase.
        kind: "cosine", "linear" or "constant" after warmup.
        phase1_steps: planned phase 1 steps (head warmup length).
    """

    def __init__(
        self, role: str, phase2_start: int, phase2_steps: int, warmup_ratio: float, kind: str, phase1_steps: int
    ):
        self.role = role
        self.phase2_start = phase2_start
        self.phase2_steps = max(1, phase2_steps)
        self.warmup_ratio = warmup_ratio
        self.kind = kind
        self.phase1_steps = phase1_steps

    def __call__(self, step: int) -> float:
        if step < self.phase2_start:
            if self.role != "head":
                return 0.0
            warmup = int(self.warmup_ratio * self.phase1_steps)
            return min(1.0, (step + 1) / warmup) if warmup else 1.0
        return _warmup_then_decay(step - self.phase2_start, self.phase2_steps, self.warmup_ratio, self.kind)


def _warmup_then_decay(step: int, total: int, warmup_ratio: float, kind: str) -> float:
    warmup = int(warmup_ratio * total)
    if step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, *, phase1_steps: int, phase2_steps: int, warmup_ratio: float, kind: str
) -> LambdaLR:
    """A LambdaLR with one `PhaseSchedule` per param group (roles read from the groups)."""
    lambdas = [
        PhaseSchedule(group.get("role", "backbone"), phase1_steps, phase2_steps, warmup_ratio, kind, phase1_steps)
        for group in optimizer.param_groups
    ]
    return LambdaLR(optimizer, lambdas)


def start_phase2(scheduler: LambdaLR, step: int) -> None:
    """Begin phase 2 at `step` (phase 1 ended early on a plateau); every group follows from here."""
    for fn in scheduler.lr_lambdas:
        fn.phase2_start = step
    # Apply the new multipliers now, so the next optimizer step already uses them.
    for group, base_lr, fn in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base_lr * fn(step)

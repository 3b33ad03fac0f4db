"""The converged frozen baseline: a cross-validated logistic regression head on frozen features."""

from peft_ladder.probe.head import fit_linear_head, linear_head
from peft_ladder.probe.logistic import DEFAULT_L2_GRID, LogisticFit, cv_score, fit_logistic

__all__ = ["DEFAULT_L2_GRID", "LogisticFit", "cv_score", "fit_linear_head", "fit_logistic", "linear_head"]

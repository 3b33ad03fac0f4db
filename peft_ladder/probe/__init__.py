"""The converged frozen baseline: a cross-validated linear head on frozen features (logistic, multi-label logistic
or ridge regression, by task)."""

from peft_ladder.probe.head import ProbeFit, ProbeTask, fit_linear_head, linear_head
from peft_ladder.probe.logistic import DEFAULT_L2_GRID, LogisticFit, cv_score, fit_logistic
from peft_ladder.probe.multilabel import MultiLabelLogisticFit, fit_multilabel_logistic
from peft_ladder.probe.ridge import RidgeFit, fit_ridge

__all__ = [
    "DEFAULT_L2_GRID",
    "LogisticFit",
    "MultiLabelLogisticFit",
    "ProbeFit",
    "ProbeTask",
    "RidgeFit",
    "cv_score",
    "fit_linear_head",
    "fit_logistic",
    "fit_multilabel_logistic",
    "fit_ridge",
    "linear_head",
]

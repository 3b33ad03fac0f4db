"""The converged frozen baseline: a cross-validated linear head on frozen features (logistic, multi-label logistic
or ridge regression, by task)."""

from peft_ladder.probe.head import ProbeFit, ProbeTask, fit_linear_head, linear_head
from peft_ladder.probe.logistic import DEFAULT_L2_GRID, LogisticFit, cv_score, fit_logistic
from peft_ladder.probe.multilabel import MultiLabelLogisticFit, cv_score_multilabel, fit_multilabel_logistic
from peft_ladder.probe.ridge import RidgeFit, cv_score_ridge, fit_ridge
from peft_ladder.probe.task_cv import CV_READINGS, CvReading, cv_reading, cv_score_for_task

__all__ = [
    "CV_READINGS",
    "DEFAULT_L2_GRID",
    "CvReading",
    "LogisticFit",
    "MultiLabelLogisticFit",
    "ProbeFit",
    "ProbeTask",
    "RidgeFit",
    "cv_reading",
    "cv_score",
    "cv_score_for_task",
    "cv_score_multilabel",
    "cv_score_ridge",
    "fit_linear_head",
    "fit_logistic",
    "fit_multilabel_logistic",
    "fit_ridge",
    "linear_head",
]

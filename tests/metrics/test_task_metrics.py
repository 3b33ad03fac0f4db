"""Multi-label and regression metrics against sklearn, input checks per task, and the task catalog."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
)

from peft_ladder.metrics import (
    BUILTIN_METRICS,
    TASK_METRICS,
    check_metrics_for_task,
    compute_metrics,
    higher_is_better,
    load_metric,
    reads_scores,
)
from peft_ladder.metrics.catalog import evaluate_config

SKLEARN = {
    "f1_micro": lambda y, p: f1_score(y, p, average="micro", zero_division=0),
    "f1_macro": lambda y, p: f1_score(y, p, average="macro", zero_division=0),
    "subset_accuracy": accuracy_score,
    "rmse": lambda y, p: np.sqrt(mean_squared_error(y, p)),
    "mae": mean_absolute_error,
    "r2": r2_score,
    "spearman": lambda refs, preds: float(spearmanr(preds, refs).statistic),
    # Over the labels with a positive row: a label with none has no precision to average.
    "map": lambda y, s: float(
        np.mean([average_precision_score(y[:, k], s[:, k]) for k in range(y.shape[1]) if y[:, k].any()])
    ),
}


def _multi_hot(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    refs = (rng.random((60, 5)) < [0.5, 0.3, 0.1, 0.05, 0.0]).astype(np.int64)  # label 4 is never true
    preds = np.where(rng.random(refs.shape) < 0.7, refs, 1 - refs)
    preds[:, 3] = 0  # label 3 is never predicted
    refs[:5] = preds[:5] = 0  # rows with no positive label at all
    return preds, refs


def _values(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    refs = rng.normal(1000.0, 50.0, size=40)  # the target's own units, far from 0
    return refs + rng.normal(0.0, 20.0, size=40), refs


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("name", TASK_METRICS["multi_label"])
def test_multi_label_matches_sklearn(name: str, seed: int) -> None:
    preds, refs = _multi_hot(seed)
    # Probabilities for the ranking metric: informative, and rounded so that some rows tie.
    scores = np.round(0.4 * refs + 0.6 * np.random.default_rng(seed).random(refs.shape), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zero_division=0: an empty label is 0, not a warning
        result = compute_metrics([name], preds, refs, task="multi_label", scores=scores)
    expected = SKLEARN[name](refs, scores if reads_scores(name) else preds)
    assert result == pytest.approx({name: expected}, abs=1e-6)


def test_a_ranking_metric_without_probabilities_says_what_it_needs() -> None:
    preds, refs = _multi_hot(0)
    with pytest.raises(ValueError, match="scores="):
        compute_metrics(["map"], preds, refs, task="multi_label")
    with pytest.raises(ValueError, match="probabilities in"):
        compute_metrics(["map"], preds, refs, task="multi_label", scores=preds * 2.0)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("name", TASK_METRICS["regression"])
def test_regression_matches_sklearn(name: str, seed: int) -> None:
    preds, refs = _values(seed)
    assert compute_metrics([name], preds, refs, task="regression") == {name: SKLEARN[name](refs, preds)}


def test_rmse_is_in_the_targets_units() -> None:
    assert compute_metrics(["rmse", "mae"], [1.0, 5.0], [4.0, 1.0], task="regression") == {
        "rmse": 3.5355339059327378,
        "mae": 3.5,
    }


def test_multi_label_edge_rows() -> None:
    none = np.zeros((3, 2), dtype=np.int64)
    # No positive anywhere: every row matches, but F1 has nothing to score (zero_division=0), nor mAP to rank.
    assert compute_metrics(list(TASK_METRICS["multi_label"]), none, none, task="multi_label", scores=none) == {
        "map": 0.0,
        "f1_micro": 0.0,
        "f1_macro": 0.0,
        "subset_accuracy": 1.0,
    }
    refs = np.array([[1, 0, 1], [0, 1, 0]])
    assert compute_metrics(list(TASK_METRICS["multi_label"]), refs, refs, task="multi_label", scores=refs) == {
        "map": 1.0,
        "f1_micro": 1.0,
        "f1_macro": 1.0,
        "subset_accuracy": 1.0,
    }


def test_f1_macro_forms_are_separate_configs() -> None:
    single, multi = load_metric("f1_macro"), load_metric("f1_macro", "multilabel")
    assert single is not multi and multi.config_name == "multilabel"
    with pytest.raises(ValueError):  # evaluate refuses 0/1 rows in the class-id form
        single.compute(predictions=[[0, 1]], references=[[0, 1]])
    with pytest.raises(ValueError, match="no config 'bogus'"):
        load_metric("f1_macro", "bogus")


def test_input_types_agree() -> None:
    preds, refs = _multi_hot(0)
    names = list(TASK_METRICS["multi_label"])
    scores = preds * 0.8 + 0.1
    expected = compute_metrics(names, preds, refs, task="multi_label", scores=scores)
    assert (
        compute_metrics(names, preds.astype(bool), refs.astype(np.float32), task="multi_label", scores=scores.tolist())
        == expected
    )
    assert (
        compute_metrics(
            names, torch.from_numpy(preds).bool(), refs.tolist(), task="multi_label", scores=torch.from_numpy(scores)
        )
        == expected
    )
    values, truth = _values(0)
    names = list(TASK_METRICS["regression"])
    expected = compute_metrics(names, values, truth, task="regression")
    assert compute_metrics(names, torch.from_numpy(values), truth.tolist(), task="regression") == expected


BAD = [
    ("multi_label", [0, 1], [0, 1], r"predictions must be a 2-D 0/1 matrix .* shape \(2,\)"),
    ("multi_label", [[0, 1]], [[0.2, 1]], r"references must hold only 0 and 1 .* e\.g\. 0\.2"),
    ("multi_label", [[0, 1]], [[0, 1, 0]], r"shape \(1, 2\) and references shape \(1, 3\) differ"),
    ("multi_label", [[0, 1], [1]], [[0, 1], [1, 0]], "predictions cannot be read as one array"),
    ("multi_label", np.zeros((2, 0)), np.zeros((2, 0)), "no label columns"),
    ("multi_label", np.zeros((0, 3)), np.zeros((0, 3)), "empty"),
    ("regression", [[1.0], [2.0]], [1.0, 2.0], r"predictions must be 1-D values .* shape \(2, 1\)"),
    ("regression", [1.0, 2.0], [1.0, np.inf], "references must be finite .* at rows 1"),
    ("regression", ["a", "b"], [1.0, 2.0], "predictions must be real numbers .* dtype <U1"),
    ("regression", [1.0], [1.0, 2.0], "differ"),
    ("single_label", [[0, 1]], [[0, 1]], "predictions must be 1-D class ids for task 'single_label'"),
    ("single_label", [0.5, 1.0], [0, 1], "integer class ids"),
]


@pytest.mark.parametrize(("task", "preds", "refs", "match"), BAD, ids=[f"{b[0]}-{b[3][:24]}" for b in BAD])
def test_bad_inputs_name_what_is_wrong(task: str, preds: object, refs: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        compute_metrics(list(TASK_METRICS[task]), preds, refs, task=task)


def test_task_metrics_load_and_compute_offline(connections: list[object]) -> None:
    inputs = {
        "single_label": ([0, 1, 1], [0, 1, 0]),
        "multi_label": _multi_hot(1),
        "regression": _values(1),
        "token_classification": ([[0, 1, 2, -100]], [[0, 1, 1, -100]]),  # ids into ("B-NAME", "I-NAME", "O")
    }
    for task, names in TASK_METRICS.items():
        check_metrics_for_task(names, task)
        for name in names:
            assert load_metric(name, evaluate_config(task)) is load_metric(name, evaluate_config(task))
        scores = inputs[task][0] * 0.5 if task == "multi_label" else None
        tags = ("B-NAME", "I-NAME", "O") if task == "token_classification" else None
        assert list(compute_metrics(names, *inputs[task], task=task, scores=scores, tags=tags)) == list(names)
    assert set(BUILTIN_METRICS) == {name for names in TASK_METRICS.values() for name in names}
    assert connections == []


def test_several_keys_are_stored_under_name_slash_key(tmp_path: Path) -> None:
    script = tmp_path / "two_keys" / "two_keys.py"
    script.parent.mkdir()
    script.write_text(
        "import datasets\nimport evaluate\n\n\n"
        "class TwoKeys(evaluate.Metric):\n"
        "    def _info(self):\n"
        "        row = datasets.Sequence(datasets.Value('int32'))\n"
        "        return evaluate.MetricInfo(description='', citation='', inputs_description='',\n"
        "                                   features=datasets.Features({'predictions': row, 'references': row}))\n\n"
        "    def _compute(self, predictions, references):\n"
        "        return {'rows': len(predictions), 'config': float(self.config_name == 'multilabel')}\n"
    )
    preds, refs = _multi_hot(0)
    name = str(script)  # not a builtin: no task check, and loaded with the task's evaluate config
    assert compute_metrics([name], preds, refs, task="multi_label") == {f"{name}/rows": 60.0, f"{name}/config": 1.0}


def test_higher_is_better() -> None:
    assert not higher_is_better("rmse") and not higher_is_better("mae")
    for name in ("accuracy", "f1_macro", "f1_micro", "subset_accuracy", "r2", "some/hub_metric"):
        assert higher_is_better(name), name


@pytest.mark.parametrize(
    ("name", "task"),
    [("accuracy", "regression"), ("rmse", "single_label"), ("f1_micro", "single_label"), ("r2", "multi_label")],
)
def test_check_metrics_for_task_names_metric_and_task(name: str, task: str) -> None:
    with pytest.raises(ValueError, match=f"metric '{name}' does not apply to task '{task}'"):
        check_metrics_for_task(["some/hub_metric", name], task)
    with pytest.raises(ValueError, match=f"metric '{name}'"):
        compute_metrics([name], [0], [0], task=task)  # refused before the inputs are looked at


def test_check_metrics_for_task_passes_hub_names_and_refuses_unknown_tasks() -> None:
    check_metrics_for_task(["f1_macro"], "single_label")
    check_metrics_for_task(["f1_macro"], "multi_label")
    check_metrics_for_task(["some/hub_metric", "mse"], "single_label")
    with pytest.raises(ValueError, match="unknown task 'object_detection'"):
        check_metrics_for_task(["accuracy"], "object_detection")

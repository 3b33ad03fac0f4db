"""The LR search of one rung: LRs the selection rows cannot tell apart are a tie, chosen by a stated rule and
never pushed past an edge; a best LR alone at the edge buys one extension; the scratch control searches its
family's from-scratch grid up to the family's ceiling, under a larger step budget."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from peft_ladder.backbones.families import FAMILIES, Family
from peft_ladder.config import LRSearchConfig, RungSpec, ScratchConfig, load_config
from peft_ladder.engine import Diverged
from peft_ladder.ladder.rung import RungRunner, paired_noise, tied_with_best
from peft_ladder.ladder.trial import TrialResult, TrialRunner

N = 300
LABELS = np.random.default_rng(0).integers(0, 4, N)
TINY = "recipes/tiny/minilm_1layer_ladder.yaml"


def family(name: str) -> Family:
    return next(f for f in FAMILIES if f.name == name)


def predictions(accuracy: float, seed: int = 0) -> np.ndarray:
    """Predictions right on `accuracy` of the rows (which rows: by `seed`), wrong elsewhere."""
    preds = (LABELS + 1) % 4
    right = np.random.default_rng(100 + seed).choice(N, int(round(accuracy * N)), replace=False)
    preds[right] = LABELS[right]
    return preds


class FakeTrials:
    """A `TrialRunner` stand-in: each LR's selection-row predictions come from `outcome(lr)`; records the LRs."""

    def __init__(self, outcome, diverges=(), loss=lambda lr: 1.0):
        self.outcome = outcome
        self.loss = loss
        self.diverges = diverges
        self.lrs: list[float] = []
        self.config = None  # read only for the backbone LR of a strategy without a default; none here

    def run(self, spec, folder, *, role, lr, seed, head_lr, head_state=None, pruner=None) -> TrialResult:
        self.lrs.append(lr)
        if any(lr == pytest.approx(d) for d in self.diverges):
            raise Diverged(f"loss is nan at lr {lr}")
        preds = {
            "validation_predictions": self.outcome(lr),
            "validation_labels": LABELS,
            "validation_row_losses": np.full(len(LABELS), self.loss(lr)),
        }
        # All a rung reads of the results: the selection loss, and whether a rule pruned the trial (never here).
        results = SimpleNamespace(
            validation=SimpleNamespace(loss=self.loss(lr)), stopping=SimpleNamespace(stop_reason="budget")
        )
        return TrialResult(spec.id, lr, head_lr, seed, Path(folder), results, preds)


def runner(trials: FakeTrials, extend: int = 1, scratch: ScratchConfig | None = None, fam: Family | None = None):
    search = LRSearchConfig(multipliers=[0.3, 1.0, 3.0], extend=extend)
    return RungRunner(trials, Path("ladder"), search, "accuracy", 1e-3, scratch=scratch, family=fam)


LORA = RungSpec(name="lora", lr=1e-3)  # grid 3e-4, 1e-3, 3e-3
SCRATCH = RungSpec(name="scratch")


def test_identical_predictions_are_a_tie_the_rung_takes_its_lowest_lr():
    same = predictions(0.7)
    trials = FakeTrials(lambda lr: same)
    run = runner(trials).run(1, LORA, "rung", seed=0)
    assert run.chosen.lr == pytest.approx(3e-4)
    assert run.lr_edge is None and run.extended == [] and len(trials.lrs) == 3
    assert run.tied == pytest.approx([3e-4, 1e-3, 3e-3])
    assert any(t is run.chosen for t in run.search) and run.seeded == [run.chosen]


def test_identical_predictions_are_a_tie_scratch_takes_the_geometric_middle():
    same = predictions(0.5)
    trials = FakeTrials(lambda lr: same)
    run = runner(trials, fam=family("timm-resnet")).run(4, SCRATCH, "scratch", seed=0)
    # Four tied LRs (1e-3, 3e-3, 1e-2, 3e-2): the lower of the two middles.
    assert run.chosen.lr == pytest.approx(3e-3)
    assert run.lr_edge is None and run.extended == [] and len(trials.lrs) == 4
    assert any(t is run.chosen for t in run.search)
    # An odd count: the middle one.
    trials = FakeTrials(lambda lr: same)
    run = runner(trials, fam=family("bert")).run(4, SCRATCH, "scratch", seed=0)
    assert run.chosen.lr == pytest.approx(3e-4)


def test_a_clearly_best_edge_lr_is_extended_once_and_flagged_when_it_stays_best():
    accuracy = {3e-4: 0.4, 1e-3: 0.5, 3e-3: 0.95}  # monotone: the extension (9e-3) is better still
    trials = FakeTrials(lambda lr: predictions(accuracy.get(round(lr, 8), 1.0)))
    run = runner(trials).run(1, LORA, "rung", seed=0)
    assert run.extended == pytest.approx([9e-3]) and len(trials.lrs) == 4
    assert run.chosen.lr == pytest.approx(9e-3) and run.lr_edge == "high" and run.tied == [run.chosen.lr]


def test_an_extension_that_ties_the_edge_lr_ends_the_flag():
    accuracy = {3e-4: 0.95, 1e-3: 0.5, 3e-3: 0.4}  # the low edge wins clearly; 9e-5 predicts exactly alike
    trials = FakeTrials(lambda lr: predictions(accuracy.get(round(lr, 8), 0.95)))
    run = runner(trials).run(1, LORA, "rung", seed=0)
    assert run.extended == pytest.approx([9e-5])  # the grid's ratio at its low end (1e-3 / 3e-4) further down
    assert run.lr_edge is None and run.chosen.lr == pytest.approx(9e-5)  # the lowest tied LR
    assert run.tied == pytest.approx([9e-5, 3e-4])


def test_an_edge_lr_tied_with_an_interior_one_is_a_flat_curve_no_extension():
    base = predictions(0.8, seed=1)
    better = base.copy()
    wrong, right = np.flatnonzero(base != LABELS)[:3], np.flatnonzero(base == LABELS)[:2]
    better[wrong] = LABELS[wrong]  # 3 rows better, 2 worse: one row of 300 net, within one standard error
    better[right] = (LABELS[right] + 1) % 4
    trials = FakeTrials(lambda lr: better if lr > 2e-3 else base if lr > 5e-4 else predictions(0.3))
    run = runner(trials).run(1, LORA, "rung", seed=0)
    diff, se = paired_noise("accuracy", better, base, LABELS)
    assert 0 < diff <= se
    assert run.extended == [] and run.lr_edge is None and len(trials.lrs) == 3
    assert run.chosen.lr == pytest.approx(1e-3) and run.tied == pytest.approx([1e-3, 3e-3])


def trial(lr: float, preds: np.ndarray, loss: float) -> TrialResult:
    results = SimpleNamespace(validation=SimpleNamespace(loss=loss))  # all a rung could read of it
    return TrialResult(
        "r", lr, 1e-3, 0, Path("."), results, {"validation_predictions": preds, "validation_labels": LABELS}
    )


@pytest.mark.parametrize("metric", ["accuracy", "f1_macro"])
def test_loss_noise_never_breaks_a_tie_a_clear_loss_gain_does_and_a_clear_metric_difference_is_no_tie(metric):
    a = predictions(0.6, seed=2)
    assert paired_noise(metric, a, a, LABELS) == (0.0, 0.0)
    # Alike predictions, the higher LR with a lower selection loss by 1e-4 (below min_delta): still a tie.
    alike = [trial(1e-3, a, loss=0.9001), trial(1e-2, a.copy(), loss=0.9)]
    assert [t.lr for t in tied_with_best(alike, metric)] == [1e-3, 1e-2]
    clearly_worse = trial(3e-2, predictions(0.3, seed=3), loss=0.1)
    assert [t.lr for t in tied_with_best([*alike, clearly_worse], metric)] == [1e-3, 1e-2]
    clearly_better = trial(3e-2, predictions(0.9, seed=3), loss=2.0)
    assert [t.lr for t in tied_with_best([*alike, clearly_better], metric)] == [3e-2]
    # Level on the metric, but a selection loss lower by far more than min_delta: a better model, no tie (the
    # default job's LoRA: loss 0.607 -> 0.544 while accuracy moved by one row).
    better_loss = [trial(1e-3, a, loss=0.607), trial(1e-2, a.copy(), loss=0.544)]
    assert [t.lr for t in tied_with_best(better_loss, metric, min_delta=1e-3)] == [1e-2]


def test_a_level_metric_with_a_clearly_lower_loss_at_the_edge_is_an_edge():
    same = predictions(0.7)
    trials = FakeTrials(lambda lr: same, loss=lambda lr: 1.0 - lr)  # each LR up lowers the loss by > 1e-3
    run = runner(trials).run(1, LORA, "rung", seed=0)
    assert run.extended == pytest.approx([9e-3]) and run.chosen.lr == pytest.approx(9e-3)
    assert run.lr_edge == "high"


def test_scratch_searches_the_family_grid_and_extends_towards_its_ceiling():
    # The best LR is the highest one: the edge rule goes past the fine-tuning cap (1e-2) towards the family's 0.1.
    trials = FakeTrials(lambda lr: predictions(min(1.0, 0.3 + 7 * lr)))
    run = runner(trials, extend=3, fam=family("timm-resnet")).run(4, SCRATCH, "scratch", seed=0)
    assert sorted(trials.lrs[:4]) == pytest.approx([1e-3, 3e-3, 1e-2, 3e-2])  # the middle first, then outwards
    # 3e-2 x 3 = 9e-2; a further step would be cut to the ceiling 0.1, under half a grid step: not tried.
    assert run.extended == pytest.approx([9e-2]) and max(trials.lrs) <= family("timm-resnet").scratch_max_lr
    assert run.chosen.lr == pytest.approx(9e-2) and run.lr_edge == "high"
    # Transformers: their own grid and ceiling.
    trials = FakeTrials(lambda lr: predictions(min(1.0, 0.3 + 100 * lr)))
    run = runner(trials, extend=1, fam=family("bert")).run(4, SCRATCH, "scratch", seed=0)
    assert sorted(trials.lrs[:3]) == pytest.approx([1e-4, 3e-4, 1e-3])
    assert trials.lrs[3:] == pytest.approx([1e-3 * (1e-3 / 3e-4)])  # the top step's own ratio


def test_scratch_recipe_grid_and_ceiling_override_the_family():
    trials = FakeTrials(lambda lr: predictions(min(1.0, 0.3 + 10 * lr)))
    scratch = ScratchConfig(lrs=[1e-2, 3e-3], max_lr=2e-2)
    run = runner(trials, extend=2, scratch=scratch, fam=family("bert")).run(4, SCRATCH, "scratch", seed=0)
    # 1e-2 x 3.33 is cut to the ceiling 2e-2 (more than half a grid step up); then nothing is left below it.
    assert sorted(trials.lrs[:2]) == pytest.approx([3e-3, 1e-2]) and trials.lrs[2:] == pytest.approx([2e-2])
    assert run.extended == pytest.approx([2e-2])


def test_a_diverged_lr_above_bounds_the_search():
    accuracy = {3e-4: 0.4, 1e-3: 0.5, 3e-3: 0.95}
    trials = FakeTrials(lambda lr: predictions(accuracy[round(lr, 8)]), diverges=[3e-3])
    run = runner(trials).run(1, LORA, "rung", seed=0)
    assert run.extended == [] and run.lr_edge is None and run.chosen.lr == pytest.approx(1e-3)
    assert [f.lr for f in run.failures] == pytest.approx([3e-3])


def test_scratch_without_a_family_or_a_recipe_grid_fails_loudly():
    with pytest.raises(ValueError, match=r"ladder\.scratch\.lrs"):
        runner(FakeTrials(lambda lr: predictions(0.5))).run(4, SCRATCH, "scratch", seed=0)


def test_a_scratch_trial_gets_budget_times_the_step_cap_and_minimum():
    config = load_config(
        TINY, ["train.epochs=3", "train.early_stopping.min_steps_at_peak=20", "ladder.scratch.budget=1.5"]
    )
    trials = TrialRunner(config, None, None, [], keep_checkpoints=False, resume=False)
    kwargs = dict(lr=1e-3, seed=0, head_lr=1e-3, warm_head=False)
    scratch = trials.trial_config(SCRATCH, Path("s"), role="scratch", **kwargs)
    assert scratch.train.epochs == 5 and scratch.train.early_stopping.min_steps_at_peak == 30  # ceil(4.5), 30
    assert scratch.train.backbone_lr == scratch.train.head_lr == 1e-3 and scratch.ladder is None
    rung = trials.trial_config(RungSpec(name="full"), Path("f"), role="rung", **kwargs)
    assert rung.train.epochs == 3 and rung.train.early_stopping.min_steps_at_peak == 20


def test_a_solved_rung_takes_no_extra_seed():
    # A recipe's fixed `ladder.seeds` asks every rung for its other seeds; the solved probe has no LR and no seed
    # changes its convex fit, so nothing trains.
    trials = FakeTrials(lambda lr: predictions(0.7))
    runner_ = runner(trials)
    solved = runner_.run(0, RungSpec(name="linear_probe", solver="lbfgs"), "rung", seed=0)
    assert not solved.stochastic and trials.lrs == [None]
    assert runner_.add_seed(solved, 1) is None and trials.lrs == [None] and len(solved.seeded) == 1

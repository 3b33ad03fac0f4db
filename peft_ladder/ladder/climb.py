"""`Ladder`: climb from the frozen probe towards full fine-tuning, one rung at a time, each against the
best simpler rung, the from-scratch control and a cheap non-pretrained baseline, and write the transfer note.

The order of work:
1. Splits: validation is split into a selection part (each rung's LR and epoch are chosen there) and a
   decision part (only the climb rule reads it), so the best of several trials is not judged on the rows
   that made it look best.
2. The frozen backbone, on the training rows' folds: the pooling (when the checkpoint declares none), the
   depth curve, and LogME / H-score against a seeded random-init floor.
3. Rungs in order. The probe is a converged logistic regression; its head starts every deeper rung (LP-FT).
   Deeper rungs search their LR (one step past an edge), stop early on the selection loss, and get more
   seeds while a comparison is undecided. A step climbs only on a reliable gain above `min_gain`.
4. Scratch and the cheap baseline, the flags, the test-split confirmation, the note.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from peft_ladder.backbones.loader import ARTIFACT_FILE
from peft_ladder.budget import describe_ending
from peft_ladder.build import backbone_for
from peft_ladder.config import ConfigError, LadderConfig, PoolingChoice, RunConfig, RungSpec, load_config
from peft_ladder.distributed import process_state
from peft_ladder.engine import Diverged
from peft_ladder.hub.notes import NOTE_FIGURE, attach_note, shareable
from peft_ladder.hub.push import push_run
from peft_ladder.io import swap_into_place
from peft_ladder.ladder.assemble import ClimbRecord, build_note, chance_level, label_counts
from peft_ladder.ladder.baselines import cheap_baseline
from peft_ladder.ladder.control import (
    ControlBeside,
    beside_or_why_not,
    estimate_control_seconds,
    finished_trials,
    ladder_splits,
    run_control,
    rung_runner,
    shared_encoding,
    trial_encoding,
    trial_runner,
)
from peft_ladder.ladder.decision import ClimbRule, Comparison, RungPredictions
from peft_ladder.ladder.drift import DriftTracker
from peft_ladder.ladder.frozen import (
    FLOOR_ROWS,
    DepthCurve,
    best_pooling,
    compare_poolings,
    depth_curve,
    fill_probe_cache,
    frozen_pass,
    pooling_candidates,
    probe_cache_refusal,
    subsample,
    transferability,
)
from peft_ladder.ladder.note import BaselineModel, BudgetModel, FailedRung, TransferNote, TrialBudget, write_note
from peft_ladder.ladder.plot import plot_note
from peft_ladder.ladder.progress import LadderProgress
from peft_ladder.ladder.report import rung_entry
from peft_ladder.ladder.rung import FailedTrial, RungFailed, RungRun, seed_until_decided
from peft_ladder.ladder.sessions import SessionClock
from peft_ladder.ladder.stats import bootstrap, point_estimate
from peft_ladder.ladder.timing import PhaseTimer
from peft_ladder.ladder.trial import TrialResult, TrialRunner
from peft_ladder.precision import resolve_precision
from peft_ladder.probe.task_cv import cv_reading
from peft_ladder.run_folder import claim, settle
from peft_ladder.run_lock import release
from peft_ladder.strategies import get_strategy
from peft_ladder.tasks import Task

logger = logging.getLogger(__name__)

# The progress line's phases besides the rungs (one each) and the scratch control (its rung id, "scratch"); a
# space in each keeps them apart from any rung id.
FROZEN, BASELINE, NOTE = "frozen evidence", "cheap baseline", "note and figure"
STATISTICS = "statistics: bootstrap intervals, comparisons, flags"
NOTE_WORK = "note: the artifact's copy, unkept artifacts removed"


class _ReportedTrials(TrialRunner):
    """The ladder's trial runner, telling its progress line and phase timer about every trial it hands back:
    trained (its steps and wall time), reused by --resume (done at once: `on_trial_end` is not called for it),
    or diverged."""

    def __init__(
        self,
        *args: Any,
        progress: LadderProgress,
        timer: PhaseTimer,
        on_trial_end: Callable[[], None] | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, on_trial_end=self._trained_one, **kwargs)
        self.progress, self.timer, self.tick = progress, timer, on_trial_end
        self.trained = False

    def _trained_one(self) -> None:
        self.trained = True
        if self.tick is not None:
            self.tick()

    def run(self, rung: RungSpec, *args: Any, **kwargs: Any) -> TrialResult:
        self.trained, start = False, time.perf_counter()
        try:
            result = super().run(rung, *args, **kwargs)
        except Diverged:
            self.timer.count_trial()
            self.progress.trial_done(
                rung.id, steps_run=None, max_steps=None, seconds=time.perf_counter() - start, failed=True
            )
            raise
        stop = result.results.stopping
        stepped = stop.method == "steps"
        if self.trained:
            self.timer.count_trial()
        self.progress.trial_done(
            rung.id,
            steps_run=stop.steps_run if stepped else None,
            max_steps=stop.max_steps if stepped else None,
            seconds=time.perf_counter() - start,
            reused=not self.trained,
        )
        return result


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


class Ladder:
    """Run the ladder a recipe describes.

    Args:
        config: a run config with a `ladder` section.
        run_all: run every rung even after the climb ends (default: `ladder.run_all`); those rungs are
            comparisons only.
        resume: reuse trials that already finished in `output_dir` with the same config.

    Example:
        >>> note = Ladder.from_recipe("recipes/tiny/minilm_ladder.yaml").run()
        >>> note.decision.recommended, note.decision.outcome
    """

    def __init__(self, config: RunConfig, *, run_all: bool | None = None, resume: bool = False):
        if config.ladder is None:
            raise ValueError("this config has no `ladder` section; train one strategy with peft_ladder.engine.train.")
        self.config = config
        self.cfg = config.ladder if run_all is None else config.ladder.model_copy(update={"run_all": run_all})
        self.output_dir = Path(config.output_dir)
        self.resume = resume
        self.state = process_state()

    def _resolve_for_task(self, task: Task) -> LadderConfig:
        """The ladder's metric and min_gain for the task the splits read (`LadderConfig.for_task`), in the config
        every trial and the control's process are derived from."""
        assert self.config.ladder is not None
        ladder = self.config.ladder.for_task(task.name, task.target_std)
        self.config = self.config.model_copy(update={"ladder": ladder})
        self.cfg = self.cfg.for_task(task.name, task.target_std)
        logger.info(f"ladder: {task.name}; the climb compares {self.cfg.metric} (min_gain {self.cfg.min_gain:.4g})")
        return self.cfg

    @classmethod
    def from_recipe(cls, recipe: str | Path, overrides: list[str] | None = None, **kwargs: Any) -> Ladder:
        return cls(load_config(recipe, overrides), **kwargs)

    # ---- the climb -----------------------------------------------------------------------------
    def run(self) -> TransferNote:
        """Climb, with the ladder's progress line (`progress.py`) up until the note is written."""
        cfg = self.cfg
        phases = [FROZEN, *(r.id for r in cfg.rungs), *(["scratch"] if cfg.scratch.enabled else [])]
        phases += [*([BASELINE] if cfg.baseline else []), NOTE]
        self.progress = LadderProgress(phases, enabled=self.state.is_main_process)
        self.timer = PhaseTimer()
        self.control: ControlBeside | None = None
        try:
            return self._climb()
        finally:
            if self.control is not None:  # a ladder that failed or was interrupted ends the control it started
                self.control.stop()
            self.progress.close()
            if self.state.is_main_process:
                settle(self.output_dir)  # the run's list keeps what it wrote
            release(self.output_dir)  # claimed (locked) by `_climb`

    def _climb(self) -> TransferNote:
        cfg, tcfg = self.cfg, self.config.train
        if self.state.is_main_process:  # an earlier run here is refused unless overwrite or resume
            removed = claim(self.output_dir, "ladder", overwrite=self.config.overwrite_output_dir, resume=self.resume)
            if removed:
                logger.info(f"overwrite: removed the earlier run's {', '.join(removed)} from {self.output_dir}")
        self.state.wait_for_everyone()
        clock = SessionClock(self.output_dir, resume=self.resume, main_process=self.state.is_main_process)
        self.timer.mark()
        if clock.started_at == "process_start":  # the command's wall time counts from its process's start
            self.timer.record("start", "start: interpreter, imports, config", "setup", clock.session_seconds)
        self.forward_seconds_per_row: float | None = None  # measured by the frozen pass
        self.seeds = list(cfg.seeds or [tcfg.seed + k for k in range(cfg.max_seeds)])
        self.adaptive = cfg.seeds is None
        splits = ladder_splits(self.config)
        self.splits = splits
        cfg = self._resolve_for_task(splits.task)
        reference = self._reference()
        shared = shared_encoding(splits, reference, self.config)
        encoded, collate, self.preprocessing = shared.datasets, shared.collate, shared.preprocessing
        self._check_rungs_fit(reference)
        self.timer.lap("setup", "setup: splits, backbone, encoding", "setup")
        self.progress.start(FROZEN)
        with self.timer.phase("frozen", "frozen evidence: forward pass, pooling comparison, depth curve", "frozen"):
            frozen = self._frozen_evidence(reference, encoded, collate)
        if frozen["transferability"] is not None:  # its scores time themselves
            seconds = frozen["transferability"]["seconds"]
            self.timer.record("frozen.transfer", "frozen evidence: LogME, H-score", "frozen", seconds, within="frozen")
        reference = frozen.pop("reference")
        # Every rung sees the same inputs, so they are encoded once here; augmented images are transformed per
        # rung instead (their train transform differs from this one).
        n_probe = min(cfg.drift.probe_batch_size, len(encoded["validation"]))
        probe_batch = collate([encoded["validation"][i] for i in range(n_probe)])
        probe_batch.pop("labels", None)
        self.drift = DriftTracker(reference, [probe_batch], cfg.drift)
        trials = trial_runner(
            self.config,
            splits,
            trial_encoding(shared, reference, self.config),
            [self.drift],
            resume=self.resume,
            runner=_ReportedTrials,
            on_trial_end=clock.tick,
            progress=self.progress,
            timer=self.timer,
        )
        self.runner = rung_runner(self.config, trials, self.output_dir, reference.family)
        self._plan()
        self.control = self._start_control_beside(len(encoded["train"]))

        decision_labels = splits.task.label_array(splits.decision["labels"])
        rule = ClimbRule(cfg, decision_labels, splits.task.tags)
        runs: dict[str, RungRun] = {}
        order = [r.id for r in cfg.rungs]
        skipped: list[str] = []
        self.head_state: dict[str, torch.Tensor] | None = None
        self.head_from: str | None = None
        self.failed: dict[str, tuple[RungSpec, list[FailedTrial]]] = {}
        head_from: dict[str, str | None] = {}
        ending: Comparison | None = None
        for index, spec in enumerate(cfg.rungs):
            if rule.state.stopped and not cfg.run_all:
                skipped.append(spec.id)
                self.progress.skip(spec.id)
                continue
            self.progress.start(spec.id)
            spec = self._with_depth(spec, frozen["depth"])
            strategy = get_strategy(spec.name)
            warm = self.head_state if strategy.trains_backbone else None
            head_from[spec.id] = self.head_from if warm is not None else None
            try:
                with self.timer.phase(f"{spec.id}.search", f"{spec.id}: LR search", "lr_search", rung=spec.id):
                    run = self.runner.run(index, spec, "rung", self.seeds[0], warm)
            except RungFailed as err:  # recorded in the note; the climb goes on with the next rung
                self.failed[spec.id] = (spec, err.failures)
                self.progress.finish(spec.id)
                logger.info(f"ladder: {spec.id} failed: {err}")
                continue
            for seed in [] if self.adaptive else self.seeds[1:]:
                self._add_seed(run, seed, warm)
            runs[spec.id] = run
            if not strategy.trains_backbone and self.head_state is None:
                self.head_state, self.head_from = run.chosen.head_state(), spec.id
            logger.info(f"ladder: {spec.id} chose {self._describe_choice(run)}")
            if rule.state.best is None:
                rule.observe(run.predictions("decision"))
                continue
            with self.timer.phase("statistics", STATISTICS, "statistics"):  # the seeds it adds time themselves
                comparison = rule.compare(run.predictions("decision"))
                if not rule.state.stopped:
                    comparison = self._add_seeds_while_uncertain(rule, run, runs[rule.state.best.id], comparison)
                rule.observe(run.predictions("decision"), comparison)
            for later in [] if cfg.run_all or not rule.state.stopped else cfg.rungs[index + 1 :]:
                self.progress.skip(later.id)  # the climb ended: the estimate drops them now
            if comparison.kind == "climb" and comparison.outcome != "climb":
                ending = comparison
            c = comparison.interval
            logger.info(
                f"ladder: {comparison.candidate} vs {comparison.reference}: {cfg.metric} {c.estimate:+.4f} "
                f"[{c.low:+.4f}, {c.high:+.4f}] over {c.seeds}+{c.reference_seeds} seeds -> {comparison.outcome}"
                + (" (comparison only: the climb has ended)" if comparison.kind == "after_stop" else "")
            )
        rule.finish()
        if rule.state.best is None:
            reasons = "; ".join(f"{rid}: {fails[-1].reason}" for rid, (_, fails) in self.failed.items() if fails)
            raise RuntimeError(f"every rung of the ladder failed, so there is nothing to recommend ({reasons}).")

        scratch_run = None
        if cfg.scratch.enabled:
            self.progress.start("scratch")
            scratch_spec = RungSpec(name="scratch")
            try:
                # The control keeps its budget while it could still come level with the best pretrained rung.
                best = runs[rule.state.best.id].seeded if cfg.scratch.futility else []
                if self.control is not None:
                    scratch_run = self._control_from_beside(self.control)
                else:
                    with self.timer.phase("scratch.search", "scratch: LR search", "lr_search", rung="scratch"):
                        scratch_run = run_control(self.runner, len(cfg.rungs), self.seeds[0], best)
            except RungFailed as err:
                self.failed["scratch"] = (scratch_spec, err.failures)
                self.progress.finish("scratch")
                logger.info(f"ladder: scratch failed: {err}")
            for seed in [] if self.adaptive or scratch_run is None else self.seeds[1:]:
                self._add_seed(scratch_run, seed)
            if scratch_run is not None:
                logger.info(f"ladder: scratch chose {self._describe_choice(scratch_run)}")
        baseline = None
        if cfg.baseline:
            self.progress.start(BASELINE)
            with self.timer.phase("baseline", "cheap baseline", "baseline"):
                baseline = self._baseline(reference)
        return self._finish(
            clock, rule, runs, scratch_run, baseline, frozen, reference, order, skipped, head_from, ending
        )

    def _start_control_beside(self, train_rows: int) -> ControlBeside | None:
        """Start the control's search in a second process when `control.beside_or_why_not` says so."""
        if not self.cfg.scratch.enabled:
            return None
        try:
            grid = len(self.runner.grid(RungSpec(name="scratch"), "scratch").lrs)
        except ValueError:  # no grid: the control says so when it runs, after the rungs
            return None
        estimate = estimate_control_seconds(self.config, grid, train_rows, self.forward_seconds_per_row)
        beside, why = beside_or_why_not(
            self.config, device=self.state.device, num_processes=self.state.num_processes, estimated_seconds=estimate
        )
        if not beside:
            logger.info(f"ladder: the scratch control runs after the rungs ({why})")
            return None
        control = ControlBeside(self.config, self.output_dir, len(self.cfg.rungs), self.seeds[0], resume=self.resume)
        control.start()
        self.progress.beside("scratch")
        logger.info(
            f"ladder: the scratch control trains in a second process beside the rungs ({why}); its log: "
            f"{control.log_file}"
        )
        return control

    def _control_from_beside(self, control: ControlBeside) -> RungRun:
        """Wait for the control running beside the rungs, then read its trials back (a trial it did not finish is
        trained now); its own time is a row of the time table beside the session's phases."""
        with self.timer.phase(
            "scratch.wait", "scratch: waiting for the control beside the rungs", "lr_search", rung="scratch"
        ):
            finished = finished_trials(self.output_dir, len(self.cfg.rungs))
            logger.info(
                f"ladder: waiting for the scratch control in its second process ({finished} trial(s) finished so far; "
                f"its log: {control.log_file})"
            )
            control.wait()
            trials = self.runner.trials
            reuse, trials.resume = trials.resume, True
            try:
                run = run_control(self.runner, len(self.cfg.rungs), self.seeds[0])
            finally:
                trials.resume = reuse
        self.timer.beside(
            "scratch.beside",
            "scratch: LR search, in a second process beside the rungs",
            "lr_search",
            control.seconds,
            rung="scratch",
            trials=len(run.search) + len(run.failures),
        )
        self.control = None
        return run

    def _check_rungs_fit(self, reference: Any) -> None:
        """Every rung's options fit this backbone, checked before anything trains (a bad third rung must not
        cost the first two)."""
        problems = []
        for i, spec in enumerate(self.cfg.rungs):
            strategy = get_strategy(spec.name)
            reason = strategy().supports(reference, strategy.config_cls(**spec.options))
            if reason:
                problems.append(f"  ladder.rungs.{i} ({spec.id}): {reason}")
        if problems:
            raise ConfigError(
                f"{self.config.backbone.name}: rungs that do not fit this backbone\n" + "\n".join(problems)
            )

    def _reference(self) -> Any:
        reference = backbone_for(self.config, self.splits.label_names, task=self.splits.task)
        reference.model.to(self.state.device).eval()
        return reference

    def _describe_choice(self, run: RungRun) -> str:
        t = run.chosen
        stop = t.results.stopping
        how = (
            f"solved ({'converged' if stop.converged else 'not converged'})"
            if stop.method == "lbfgs"
            else f"lr {t.lr:.1e}, {describe_ending(stop)}"
            + (" (still improving)" if stop.still_improving else " (cut short)" if stop.cut_short else "")
        )
        sel = t.results.validation.value(self.cfg.metric)
        return f"{how}: selection {self.cfg.metric} {sel:.4f}" + (
            f", LR at the {run.lr_edge} edge" if run.lr_edge else ""
        )

    def _add_seeds_while_uncertain(
        self, rule: ClimbRule, candidate: RungRun, reference: RungRun, comparison: Comparison
    ) -> Comparison:
        if not self.adaptive:
            return comparison

        def add_seed(run: RungRun) -> bool:
            tried = len(run.seeded) + sum(f.lr == run.chosen.lr for f in run.failures)
            if not run.stochastic or tried >= len(self.seeds):
                return False
            warm = self.head_state if run.role == "rung" and get_strategy(run.spec.name).trains_backbone else None
            self.progress.add_planned(run.id)
            return self._add_seed(run, self.seeds[tried], warm) is not None

        return seed_until_decided(
            rule, candidate, reference, comparison, add_seed, logger.info, confirm_climb=self.cfg.confirm_climb
        )

    def _add_seed(
        self, run: RungRun, seed: int, head_state: dict[str, torch.Tensor] | None = None
    ) -> TrialResult | None:
        """`RungRunner.add_seed`, timed as the rung's extra seeds."""
        with self.timer.phase(f"{run.id}.seeds", f"{run.id}: extra seeds", "seeds", rung=run.id):
            return self.runner.add_seed(run, seed, head_state)

    def _plan(self) -> None:
        """The trials each phase of the progress line plans: the rung's LR grid (one trial for a solved probe)
        and, with a fixed seed list (`ladder.seeds`), its other seeds. Adaptive seeds and LR extensions join the
        plan as they come."""
        extra = 0 if self.adaptive else len(self.seeds) - 1
        for spec in self.cfg.rungs:
            if spec.options.get("solver") == "lbfgs":
                self.progress.plan(spec.id, 1, solved=True)
            else:
                self.progress.plan(spec.id, len(self.runner.grid(spec, "rung").lrs) + extra)
        if self.cfg.scratch.enabled:
            try:
                lrs = self.runner.grid(RungSpec(name="scratch"), "scratch").lrs
            except ValueError:  # no grid: the control says so when it runs; the estimate just lacks its trials
                lrs = ()
            self.progress.plan("scratch", len(lrs) + extra, cap_scale=self.cfg.scratch.budget)

    def _with_depth(self, spec: RungSpec, depth: DepthCurve | None) -> RungSpec:
        """partial_unfreeze retrains the blocks after the depth curve's peak, unless the recipe fixed its depth."""
        if spec.name != "partial_unfreeze" or depth is None or {"last_k", "blocks"} & set(spec.fixed):
            return spec
        return spec.model_copy(update={"options": {**spec.options, "last_k": depth.implied_last_k}})

    # ---- before training: what the frozen backbone says ----------------------------------------
    def _frozen_evidence(self, reference: Any, encoded: dict[str, Any], collate: Any) -> dict[str, Any]:
        cfg, tcfg, device = self.cfg, self.config.train, self.state.device
        # The Engine's autocast: the probe rung reads the head input this pass caches, at the same precision.
        precision = resolve_precision(tcfg.mixed_precision, device.type)
        rows = subsample(len(encoded["train"]), cfg.probe.max_rows, tcfg.seed)
        bs = tcfg.eval_batch_size or 2 * tcfg.batch_size
        batches = [collate([encoded["train"][i] for i in rows[s : s + bs]]) for s in range(0, len(rows), bs)]
        candidates = pooling_candidates(reference) if cfg.probe.compare_pooling else ()
        start = time.perf_counter()
        passed = frozen_pass(reference, batches, device, candidates, precision)
        self.forward_seconds_per_row = (time.perf_counter() - start) / max(1, len(rows))
        pooling = reference.pooling.to_dict() if reference.pooling else None
        # A tagger's frozen evidence is a single-label probe on its tagged tokens (each word's first sub-token).
        task = "single_label" if self.splits.task.per_token else self.splits.task.name
        reading = cv_reading(task)
        if candidates and passed.pooling_inputs:
            scores = compare_poolings(passed, reference.num_labels, tcfg.seed, task)
            chosen = best_pooling(scores, task)
            logger.info(
                f"ladder: pooling on the training folds (converged probe, CV {reading.rank}): "
                + ", ".join(f"{m} {s[reading.rank]:.4f}" for m, s in scores.items())
                + f" -> {chosen}"
            )
            # Every rung (and its artifact) pools as the probe chose, and says so.
            choice = PoolingChoice(mode=chosen, normalize=reference.pooling.normalize, source="probe")
            self.config = self.config.model_copy(
                update={"backbone": self.config.backbone.model_copy(update={"pooling": choice})}
            )
            if chosen != reference.pooling.mode:
                own = reference.pooling.mode
                reference = self._reference()
                # The pass already holds what the model pooling with `chosen` gives; run again only if it cannot tell.
                passed = passed.pooled_as(chosen, own) or frozen_pass(reference, batches, device, precision=precision)
            else:  # the same model: only the record of where its pooling came from changes
                reference.pooling = replace(reference.pooling, source="probe")
                reference.spec = replace(reference.spec, pooling=reference.pooling.to_dict())
            pooling = {**reference.pooling.to_dict(), "candidates": scores}
        elif pooling is not None:
            pooling["candidates"] = {}
        depth = depth_curve(reference, passed, tcfg.seed, task) if cfg.probe.depth_curve else None
        if depth is not None:
            logger.info(
                f"ladder: depth curve (converged probe per block, CV {reading.rank}): "
                + " ".join(f"{p[reading.rank]:.3f}" for p in depth.points)
                + f"; peak at block {depth.peak}"
                + (
                    f" (the last block: nothing after it; partial_unfreeze retrains the least it can, "
                    f"last_k={depth.implied_last_k})"
                    if depth.peak == len(depth.points) - 1
                    else f": partial_unfreeze retrains the {depth.implied_last_k} block(s) after it"
                )
            )
        transfer = None
        if cfg.transferability:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(tcfg.seed)  # the random-init floor is the same random network every run
                random_init = backbone_for(
                    self.config, self.splits.label_names, pretrained=False, task=self.splits.task
                )
            picked = subsample(len(rows), FLOOR_ROWS, tcfg.seed)
            floor = [rows[k] for k in picked]
            floor_batches = [
                collate([encoded["train"][i] for i in floor[s : s + bs]]) for s in range(0, len(floor), bs)
            ]
            transfer = transferability(passed, random_init, floor_batches, device, picked, task, precision)
            del random_init
            p, r = transfer["pretrained"], transfer["random_init"]
            logger.info(
                "ladder: transferability of frozen features: "
                + ", ".join(
                    f"{name} {_score(p[key])} (random init {_score(r[key])})"
                    for key, name in (("logme", "LogME"), ("h_score", "H-score"))
                )
            )
        refusal = probe_cache_refusal(reference, self.config, cfg.rungs)
        if refusal is None:  # the probe rung then reads every split from the cache; the main process writes it
            with self.state.main_process_first():
                fill_probe_cache(
                    reference,
                    passed,
                    rows,
                    encoded,
                    collate,
                    preprocessing=self.preprocessing,
                    config=self.config,
                    device=device,
                    precision=precision,
                )
        else:
            logger.info(f"ladder: the probe's head input is not cached ahead ({refusal})")
        return {"reference": reference, "pooling": pooling, "depth": depth, "transferability": transfer}

    def _baseline(self, reference: Any) -> Any:
        splits = self.splits
        column = splits.input_column
        evals = {"decision": splits.decision[column]}
        if splits.test is not None:
            evals["test"] = splits.test[column]
        result = cheap_baseline(
            reference.modality,
            splits.train[column],
            splits.train["labels"],
            evals,
            seed=self.config.train.seed,
            task=splits.task.name,
        )
        logger.info(f"ladder: cheap baseline {result.name}: {result.description}")
        return result

    # ---- after training: flags, comparisons, the note --------------------------------------------
    def _finish(
        self,
        clock: SessionClock,
        rule: ClimbRule,
        runs: dict[str, RungRun],
        scratch_run: RungRun | None,
        baseline: Any,
        frozen: dict[str, Any],
        reference: Any,
        order: list[str],
        skipped: list[str],
        head_from: dict[str, str | None],
        ending: Comparison | None,
    ) -> TransferNote:
        self.progress.start(NOTE)
        self.timer.mark()
        cfg, splits = self.cfg, self.splits
        metrics = self.config.metric_names(splits.task.name)
        entries = [rung_entry(run, cfg, splits, metrics, head_from.get(rid)) for rid, run in runs.items()]
        scratch_entry = rung_entry(scratch_run, cfg, splits, metrics, None) if scratch_run else None
        by_id = {e.id: e for e in [*entries, *([scratch_entry] if scratch_entry else [])]}
        recommended = rule.state.best.id
        labels = splits.task.label_array(splits.decision["labels"])
        train_labels = splits.task.label_array(splits.train["labels"])
        baseline_record = self._baseline_record(baseline, labels) if baseline is not None else None
        test_preds: dict[str, list[np.ndarray]] = {}
        if splits.test is not None:
            test_preds = {rid: [t.preds("test") for t in run.seeded] for rid, run in runs.items()}
        record = ClimbRecord(
            rule=rule,
            rungs=[run.predictions("decision") for run in runs.values()],
            entries=entries,
            order=order,
            skipped=skipped,
            ending=ending,
            max_seeds=len(self.seeds),
            scratch=scratch_run.predictions("decision") if scratch_run else None,
            scratch_entry=scratch_entry,
            baseline=RungPredictions(baseline.name, "baseline", [baseline.metric_inputs(self.cfg.metric)["decision"]])
            if baseline is not None
            else None,
            baseline_record=baseline_record,
            failed=[
                FailedRung(
                    id=rid,
                    strategy=spec.name,
                    trials=[{"lr": f.lr, "seed": f.seed, "reason": f.reason} for f in fails],
                )
                for rid, (spec, fails) in self.failed.items()
            ],
            test_labels=splits.task.label_array(splits.test["labels"]) if splits.test is not None else None,
            test_preds=test_preds,
            class_counts=label_counts(train_labels, len(splits.label_names), splits.task),
        )
        self.timer.lap("statistics", STATISTICS, "statistics")
        artifact = self._publish(Path(by_id[recommended].artifact))
        self.timer.lap("note", NOTE_WORK, "note")
        depth = frozen["depth"]
        partial = [r for r in runs.values() if r.spec.name == "partial_unfreeze"]
        note = build_note(
            record,
            cfg,
            task=splits.task.name,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            backbone={
                "name": reference.spec.name,
                "source": reference.source,
                "modality": reference.modality,
                "num_blocks": reference.layout.num_blocks,
                "parameters": sum(p.numel() for p in reference.model.parameters()),
                "description": reference.describe(),
            },
            data={
                "dataset": self.config.data.dataset,
                "n_train": len(splits.train),
                "n_validation": len(splits.validation) + len(splits.decision),
                "n_test": len(splits.test) if splits.test is not None else 0,
                "label_names": splits.label_names,
                "preprocessing": self.preprocessing,
                "notes": splits.notes,
                "slices": list(splits.slices),
            },
            budget=self._budget([*runs.values(), *([scratch_run] if scratch_run else [])]),
            chance=chance_level(train_labels, labels, cfg.metric, splits.task),
            num_processes=self.state.num_processes,
            seeds=sorted({t.seed for r in [*runs.values(), *([scratch_run] if scratch_run else [])] for t in r.seeded}),
            selection={
                "method": "held-out decision split: LR, stopping step and seeds are chosen on the selection part; "
                "the climb compares rungs on the decision part only",
                "selection_rows": len(splits.validation),
                "decision_rows": len(splits.decision),
                "seed": self.config.train.seed,
            },
            pooling=frozen["pooling"],
            depth_curve={
                **depth.to_dict(),
                "blocks_after_peak": len(depth.points) - 1 - depth.peak,
                "used": {r.id: r.spec.options["last_k"] for r in partial if r.spec.options.get("blocks") is None},
                "fixed_by_recipe": [r.id for r in partial if {"last_k", "blocks"} & set(r.spec.fixed)],
                "partial_rungs": [r.id for r in cfg.rungs if r.name == "partial_unfreeze"],
            }
            if depth is not None
            else None,
            transferability=frozen["transferability"],
            artifact=str(artifact),
            total_seconds=0.0,
            sessions=clock.sessions,
            clock_started=clock.started_at,
        )
        self.timer.lap("statistics", STATISTICS, "statistics")
        keep = {recommended, *([note.decision.deploy.id] if note.decision.deploy.kind == "scratch" else [])}
        self._prune(note, keep)
        self.timer.lap("note", NOTE_WORK, "note")
        if self.state.is_main_process:  # the figure first, so that the note's wall time includes it
            plot_note(note, self.output_dir / "transfer_note.png")
        self.timer.lap("plot", "plot: the note's figure", "plot")
        clock.tick()
        note.total_seconds = clock.total_seconds
        note.timing = self.timer.model(note.total_seconds, sum(clock.earlier))
        if self.state.is_main_process:
            shared = shareable(note, self.output_dir)
            write_note(shared, self.output_dir)
            self._annotate_artifact(shared, note, artifact)
        self.state.wait_for_everyone()
        deploy = note.decision.deploy
        logger.info(
            f"ladder done: recommended {recommended} ({rule.state.stop_reason})"
            + (
                f"; deploy {deploy.id} ({deploy.kind}: reliably better than every pretrained rung)"
                if deploy.kind != "rung"
                else ""
            )
            + f"; note: {self.output_dir / 'transfer_note.md'}; artifact: {artifact}"
        )
        if self.config.push_to_hub and self.state.is_main_process:  # last: note, figure and card are written
            logger.info(push_run(self.output_dir, self.config).summary())
        return note

    def _baseline_record(self, baseline: Any, labels: np.ndarray) -> BaselineModel:
        cfg = self.cfg
        inputs = baseline.metric_inputs(cfg.metric)
        tags = self.splits.task.tags or None
        interval = bootstrap(
            [inputs["decision"]],
            labels,
            cfg.metric,
            samples=cfg.bootstrap_samples,
            confidence=cfg.confidence,
            tags=tags,
        )
        test_value = None
        if "test" in inputs:
            test_labels = self.splits.task.label_array(self.splits.test["labels"])
            test_value = point_estimate([inputs["test"]], test_labels, cfg.metric, tags=tags)
        return BaselineModel(
            name=baseline.name,
            description=baseline.description,
            metric=interval.to_dict(),
            test=test_value,
            params=baseline.params,
            seconds=baseline.seconds,
        )

    def _budget(self, runs: list[RungRun]) -> BudgetModel:
        """The step budgets the trials ran under, as their convergence records state them."""
        per_rung = {}
        for run in runs:
            stop = run.chosen.results.stopping
            if stop.method == "steps":
                per_rung[run.id] = TrialBudget(
                    max_steps=stop.max_steps,
                    min_steps=stop.min_steps,
                    warmup_steps=stop.warmup_steps,
                    eval_every=stop.eval_every,
                    steps_per_epoch=stop.steps_per_epoch,
                )
        return BudgetModel(
            max_epochs=self.config.train.epochs,
            early_stopping=self.config.train.early_stopping.model_dump(),
            scratch_budget=self.cfg.scratch.budget if self.cfg.scratch.enabled else None,
            per_rung=per_rung,
        )

    def _publish(self, source: Path) -> Path:
        """Copy the recommended rung's artifact to `output_dir/artifact` (temporary copy, then swap)."""
        dest = self.output_dir / "artifact"
        if self.state.is_main_process:
            tmp = self.output_dir / f".artifact.tmp-{uuid.uuid4().hex[:8]}"
            shutil.copytree(source, tmp)
            swap_into_place(tmp, dest)
        self.state.wait_for_everyone()
        return dest

    def _annotate_artifact(self, shared: TransferNote, note: TransferNote, artifact: Path) -> None:
        """The published artifact and every kept rung's carry the transfer note (`shared`: no machine path), its
        figure and a model card built from both: a rung folder shared on its own still says why this depth was
        chosen. `note` holds the rungs' artifact folders as this process wrote them."""
        figure = self.output_dir / NOTE_FIGURE
        attach_note(shared, artifact, figure)
        for entry in [*note.rungs, *([note.scratch] if note.scratch else [])]:
            if entry.artifact and (Path(entry.artifact) / ARTIFACT_FILE).is_file():
                attach_note(shared, Path(entry.artifact), figure)

    def _prune(self, note: TransferNote, keep: set[str]) -> None:
        """Drop the artifacts the `keep` option does not keep (the recommended rung's, and scratch's when it is
        the model to deploy, are always kept); the note then shows them as None."""
        if self.cfg.keep == "all":
            return
        for entry in [*note.rungs, *([note.scratch] if note.scratch else [])]:
            chosen = Path(entry.artifact) if entry.artifact else None
            if chosen is None:
                continue
            for artifact in chosen.parent.parent.glob("*/artifact"):
                drop = artifact != chosen or (self.cfg.keep == "recommended" and entry.id not in keep)
                if drop and self.state.is_main_process:
                    shutil.rmtree(artifact, ignore_errors=True)
            if self.cfg.keep == "recommended" and entry.id not in keep:
                entry.artifact = None
        self.state.wait_for_everyone()


def run_ladder(config: RunConfig, *, run_all: bool | None = None, resume: bool = False) -> TransferNote:
    """Climb the ladder from a config (the Python API behind `peft-ladder ladder`)."""
    return Ladder(config, run_all=run_all, resume=resume).run()

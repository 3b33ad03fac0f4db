"""The from-scratch control in a second process, beside the rungs, where the machine has a core to spare.

Why: the control needs nothing from the climb (it is compared with the rungs only after both have finished), and it
is the ladder's most expensive search: from random weights it trains several times the rungs' steps
(`ladder.scratch.budget`) at each LR of its grid. On a CPU the ladder runs one intra-op thread per process (one is
faster than two on a 2-vCPU machine), so while the rungs train, a second core idles.

How the result stays the sequential one: the child process runs exactly the search the ladder would run (the same
config, splits, seeds and pruning among the control's own LRs) into the control's folder. The ladder, when it
reaches the control, runs the same search again with its trial runner reusing finished trials, as `--resume` does
(the same resolved config, byte for byte): every trial the child finished is read back, anything it did not finish
(it failed, was killed, ran out of memory) is trained then. Futility stops (`ladder.scratch.futility`) need the best
pretrained rung, so a control that uses them runs after the climb, as before.

`auto` runs it beside only where that pays and cannot hurt: on a CPU, in a single process, with at least twice the
intra-op threads in usable cores, as much memory available as this process holds, and when the control is estimated
(from the frozen pass's forward time and the control's step budget) to take more than `MIN_BESIDE_SECONDS`,
three times what a second process costs to start (its interpreter and imports took 9-10 s on 2 vCPUs, on the core
the rungs leave idle). Measured on the default job (2 vCPUs): 1,242 s against 1,918 s sequential, the same note
(`benchmarks/NOTES.md`); the two processes slow each other by about 10%.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import psutil  # an Accelerate dependency
import torch

from peft_ladder.budget import StepBudget
from peft_ladder.build import backbone_for, build_splits
from peft_ladder.config import RunConfig, RungSpec
from peft_ladder.data import Encoded, Splits, encode_splits, hold_out_decision
from peft_ladder.ladder.rung import RungFailed, RungRun, RungRunner, rung_folder
from peft_ladder.ladder.trial import PREDICTIONS_FILE, TrialRunner, control_budget

logger = logging.getLogger(__name__)

# Three times the second process's start (about 10 s): the overlap then outweighs the start and the ~10% the two
# processes slow each other. Benchmark section 5 (96 training rows): a 55-s control estimated at 50 s ran after the
# rungs under the earlier 60 s.
MIN_BESIDE_SECONDS = 30.0
# A training step (forward, backward, update) of the whole network against one forward pass over the same rows.
STEP_PER_FORWARD = 3.0
LOG_FILE = "control.log"


def ladder_splits(config: RunConfig) -> Splits:
    """The ladder's splits: validation cut into the selection and decision parts (seeded: every process the same)."""
    assert config.ladder is not None
    splits = build_splits(config)
    return hold_out_decision(splits, config.ladder.decision_fraction, seed=config.train.seed)


def shared_encoding(splits: Splits, reference: Any, config: RunConfig) -> Encoded:
    """Every split encoded once for every rung (without augmentation: `trial_encoding` says when rungs need their own)."""
    return encode_splits(splits, reference, config.data.model_copy(update={"augment": False}))


def trial_encoding(shared: Encoded, reference: Any, config: RunConfig) -> Encoded | None:
    """What the trials share: the shared encoding, or None where augmented images are transformed per trial."""
    return None if reference.modality == "image" and config.data.augment else shared


def rung_runner(config: RunConfig, trials: TrialRunner, output_dir: Path, family: Any) -> RungRunner:
    """The ladder's rung runner (its LR search, pruning and control grid), built the same way in both processes."""
    assert config.ladder is not None
    cfg, tcfg = config.ladder, config.train
    return RungRunner(
        trials,
        output_dir,
        cfg.lr_search,
        cfg.metric,
        tcfg.head_lr,
        scratch=cfg.scratch,
        family=family,
        min_delta=tcfg.early_stopping.min_delta,
    )


def trial_runner(
    config: RunConfig,
    splits: Splits,
    encoded: Encoded | None,
    callbacks: list[Any],
    *,
    resume: bool,
    runner: type[TrialRunner] = TrialRunner,
    **kwargs: Any,
) -> TrialRunner:
    """The ladder's trial runner (trials never push: the ladder pushes once), with `callbacks` for pretrained rungs;
    `runner` and `kwargs`: the ladder's subclass that reports to its progress line, and what it takes."""
    assert config.ladder is not None
    return runner(
        config.model_copy(update={"push_to_hub": False}),
        splits,
        encoded,
        callbacks,
        keep_checkpoints=config.ladder.keep == "all",
        resume=resume,
        **kwargs,
    )


def beside_or_why_not(
    config: RunConfig, *, device: torch.device, num_processes: int, estimated_seconds: float | None
) -> tuple[bool, str]:
    """Whether the control runs beside the rungs, and why (the log says it)."""
    assert config.ladder is not None
    scratch = config.ladder.scratch
    if not scratch.enabled:
        return False, "the control is off"
    if scratch.parallel is False:
        return False, "ladder.scratch.parallel is false"
    if scratch.futility:
        return False, "its futility stops need the best pretrained rung, trained first"
    if num_processes > 1:
        return False, f"the ladder runs on {num_processes} processes, which the rungs use"
    if scratch.parallel is True:
        return True, "ladder.scratch.parallel is true"
    if device.type != "cpu":
        return False, f"on {device.type} the rungs and the control would share one device"
    cores, threads = usable_cores(), torch.get_num_threads()
    if cores < 2 * threads:
        return False, f"{cores} usable core(s) for {threads} intra-op thread(s) per process: none to spare"
    needed, available = memory_needed_and_available()
    if available < needed:
        return False, (
            f"{available / 2**30:.1f} GiB of memory available, and a second process needs about what this one holds "
            f"({needed / 2**30:.1f} GiB)"
        )
    if estimated_seconds is None or estimated_seconds < MIN_BESIDE_SECONDS:
        estimate = "unknown" if estimated_seconds is None else f"about {estimated_seconds:.0f} s"
        return False, f"the control is short ({estimate}): a second process would cost more than it saves"
    return True, f"a core to spare and a control of about {estimated_seconds:.0f} s"


def memory_needed_and_available() -> tuple[int, int]:
    """Bytes a second process needs (about what this one holds: the model, the data, a trial's training state) and
    bytes the machine has available."""
    return psutil.Process().memory_info().rss, psutil.virtual_memory().available


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def estimate_control_seconds(
    config: RunConfig, grid_size: int, train_rows: int, forward_seconds_per_row: float | None
) -> float | None:
    """The control's search at its step cap: LRs x the control's step budget (`StepBudget`, which raises the cap
    to the minimum at peak LR when an epoch is a few steps) x rows per step x (a training step's cost per row,
    taken as `STEP_PER_FORWARD` forward passes). Pruning and early stopping make it shorter; it only has to tell a
    control of seconds from one of minutes."""
    if forward_seconds_per_row is None or config.ladder is None:
        return None
    train = config.train.model_copy(update=control_budget(config.train, config.ladder.scratch.budget))
    rows_per_step = train.batch_size * train.gradient_accumulation_steps  # per process: the control runs on one
    budget = StepBudget.plan(train, steps_per_epoch=max(1, math.ceil(train_rows / rows_per_step)))
    rows = budget.max_steps * min(rows_per_step, train_rows)
    return grid_size * rows * STEP_PER_FORWARD * forward_seconds_per_row


def control_log(output_dir: Path, index: int) -> Path:
    """The child's log, in the control's own folder."""
    return rung_folder(output_dir, index, "scratch") / LOG_FILE


def finished_trials(output_dir: Path, index: int) -> int:
    """Control trials with their predictions written (finished, in the child or an earlier session)."""
    return len(list(rung_folder(output_dir, index, "scratch").glob(f"*/{PREDICTIONS_FILE}")))


class ControlBeside:
    """The control's search running in a child process (`start`), waited for (`wait`) or stopped (`stop`).

    Args:
        config: the ladder's config as the rungs train it (after the frozen evidence chose the pooling).
        output_dir: the ladder's folder.
        index: the control's place among the rungs (its folder `rungs/<index>_scratch`).
        seed: the search's seed.
        resume: reuse the control's finished trials of an interrupted ladder.
    """

    def __init__(self, config: RunConfig, output_dir: Path, index: int, seed: int, *, resume: bool):
        self.config, self.output_dir, self.index, self.seed, self.resume = config, output_dir, index, seed, resume
        self.process: multiprocessing.process.BaseProcess | None = None
        self.started = self.seconds = 0.0

    @property
    def log_file(self) -> Path:
        return control_log(self.output_dir, self.index)

    def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        # spawn, not fork: a forked copy of a process that has run torch (its thread pools, tqdm's monitor thread,
        # logging's locks) can hang; the child rebuilds what it needs from the config in a few seconds.
        context = multiprocessing.get_context("spawn")
        self.process = context.Process(
            target=_control_main,
            args=(self.config, self.output_dir, self.index, self.seed, self.resume, torch.get_num_threads()),
            name="peft_ladder-control",
            daemon=True,
        )
        self.started = time.perf_counter()
        self.process.start()

    def wait(self) -> bool:
        """Wait for the child; whether it finished its search (if not, the ladder trains what is missing)."""
        assert self.process is not None
        self.process.join()
        self.seconds = time.perf_counter() - self.started
        ok = self.process.exitcode == 0
        if not ok:
            logger.warning(
                f"ladder: the control running beside the rungs stopped (exit code {self.process.exitcode}); the "
                f"ladder trains what it did not finish. Its log, {self.log_file}, ends:\n{_tail(self.log_file)}"
            )
        return ok

    def stop(self) -> None:
        """End the child (the ladder failed or was interrupted); its finished trials stay for `--resume`."""
        if self.process is None or not self.process.is_alive():
            return
        self.process.terminate()
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def _control_main(config: RunConfig, output_dir: Path, index: int, seed: int, resume: bool, threads: int) -> None:
    """The child process: rebuild the ladder's inputs and run the control's search into its folder."""
    _end_with_parent()
    log_file = control_log(output_dir, index)
    with open(log_file, "a", buffering=1) as log:
        # Its bars and logs go to its own file: two processes writing one terminal would garble both.
        os.dup2(log.fileno(), sys.stdout.fileno())
        os.dup2(log.fileno(), sys.stderr.fileno())
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", force=True)
        torch.set_num_threads(threads)
        splits = ladder_splits(config)
        reference = backbone_for(config, splits.label_names, task=splits.task)
        encoded = trial_encoding(shared_encoding(splits, reference, config), reference, config)
        trials = trial_runner(config, splits, encoded, [], resume=resume)
        try:
            run_control(rung_runner(config, trials, output_dir, reference.family), index, seed)
        except RungFailed as err:  # every LR diverged: the ladder's own replay of the search says so in the note
            logging.getLogger(__name__).info(f"ladder: the control failed: {err}")


def run_control(runner: RungRunner, index: int, seed: int, futile_against: Any = ()) -> RungRun:
    """The control's LR search (the same call in both processes)."""
    return runner.run(index, RungSpec(name="scratch"), "scratch", seed, futile_against=futile_against)


def _end_with_parent() -> None:
    """Linux: the kernel ends this process when the ladder's process dies (even by SIGKILL), so no orphan keeps
    writing into a run folder that a new command may have claimed."""
    with contextlib.suppress(Exception):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace").replace("\r", "\n")
    except OSError:
        return "(no log)"
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])

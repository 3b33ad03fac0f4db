"""The command line: pick the profile and the sections, run sections 1-2 and 3-8 in child processes, add ratios
and targets, write the report (a run of some sections merged into the results already there). The parent process
never imports torch (see `child.run_child`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.bench import steps
from benchmarks.bench.child import run_child
from benchmarks.bench.device import TorchInfo
from benchmarks.bench.engine_sections import ENGINE_SECTIONS, run_engine_sections
from benchmarks.bench.machine import describe_machine, git_state
from benchmarks.bench.report import SECTION_MODULES, SECTION_NAMES, merge_results, write_report
from benchmarks.bench.settings import FULL, GPU, QUICK, Job, Settings, model_specs, output_files
from benchmarks.bench.targets import build_targets

STEP_SECTIONS = ("forward_floor", "step")  # sections 1-2, one child per model
# Offline by default; children inherit the environment.
OFFLINE_DEFAULTS = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Ladder benchmark: what each rung costs, measured in one run, every claim a ratio of two "
        "numbers from that run.",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the test (numbers are not benchmarks)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: benchmarks/results); a full run writes ladder_bench.{md,json}, "
        "--quick ladder_bench_quick.{md,json}",
    )
    parser.add_argument(
        "--models", default=None, help="comma-separated subset of resnet18,vit_tiny,minilm for sections 1-2"
    )
    parser.add_argument(
        "--sections",
        default=None,
        help=f"comma-separated subset of {','.join(SECTION_NAMES)} (default: all; forward_floor and step run "
        "together). The results file already there keeps its other sections: these replace theirs",
    )
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda")
    parser.add_argument(
        "--profile",
        choices=["auto", "cpu", "gpu"],
        default="auto",
        help="gpu: BERT-base, ViT-B/16 and ResNet-50 in bf16 with FLOP utilisation (auto: when a GPU is visible and "
        "--device is not cpu); cpu: resnet18, vit_tiny and MiniLM in fp32. --quick ignores it",
    )
    # Default 1: on 2-vCPU machines a second OpenMP thread is pathologically slow. The results record the count.
    parser.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("OMP_NUM_THREADS") or 1),
        help="torch intra-op threads in every child (default: $OMP_NUM_THREADS, else 1)",
    )
    return parser.parse_args(argv)


def choose_settings(args: argparse.Namespace) -> Settings:
    """QUICK or FULL, with `--models` applied (an unknown model is an error naming the choices)."""
    settings = QUICK if args.quick else GPU if _wants_gpu(args) else FULL
    if args.models:
        models = tuple(m.strip() for m in args.models.split(",") if m.strip())
        unknown = sorted(set(models) - set(model_specs(settings)))
        if unknown:
            raise SystemExit(f"unknown models {unknown}; choose from {sorted(model_specs(settings))}")
        settings = replace(settings, models=models)
    return settings


def choose_sections(args: argparse.Namespace) -> tuple[str, ...]:
    """The sections to run, in the report's order (an unknown name is an error naming the choices)."""
    if not args.sections:
        return SECTION_NAMES
    asked = {name.strip() for name in args.sections.split(",") if name.strip()}
    unknown = sorted(asked - set(SECTION_NAMES))
    if unknown or not asked:
        raise SystemExit(f"unknown sections {unknown}; choose from {', '.join(SECTION_NAMES)}")
    if asked & set(STEP_SECTIONS):  # measured together, and step's ratios divide by the forward floor
        asked |= set(STEP_SECTIONS)
    return tuple(name for name in SECTION_NAMES if name in asked)


def _wants_gpu(args: argparse.Namespace) -> bool:
    """The GPU profile: asked for, or `auto` with a visible NVIDIA GPU (checked without importing torch here)."""
    if args.profile != "auto":
        return args.profile == "gpu"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset") not in ("", "-1")
    return args.device != "cpu" and visible and Path("/dev/nvidia0").exists()


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the benchmark and write its report.

    Args:
        argv: the arguments (default: sys.argv[1:]).
        prog: how the results name the command (default: the script's file name, e.g. `ladder_bench.py`).
    """
    prog = prog or Path(sys.argv[0]).name
    args = parse_args(argv, prog)
    settings = choose_settings(args)
    sections = choose_sections(args)
    files = output_files(settings, args.out)
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
    # Children read OMP_NUM_THREADS at import: set it before any is spawned.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    files.logs.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "schema": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([prog, *(sys.argv[1:] if argv is None else argv)]),
        "git": git_state(),
        "settings": {**asdict(settings), "threads": args.threads, "device": args.device},
        "sections": list(sections),
    }
    info: TorchInfo | None = None
    engine_names = tuple(name for name, _ in ENGINE_SECTIONS if name in sections)
    with tempfile.TemporaryDirectory(prefix="ladder_bench_") as tmp:
        job = Job(settings=settings, threads=args.threads, device=args.device, workdir=Path(tmp), sections=engine_names)
        if STEP_SECTIONS[0] in sections:
            print(f"sections 1-2: forward floor and steps for {', '.join(settings.models)}", flush=True)
            step_sections = steps.run_steps(job, files.logs)
            results["forward_floor"], results["step"] = step_sections.forward_floor, step_sections.step
            info = step_sections.info
        if engine_names:
            print(f"engine sections on MiniLM: {', '.join(engine_names)}", flush=True)
            engine = run_child(run_engine_sections, job, "engine sections", files.logs / "engine_sections.log")
            for name in engine_names:
                results[name] = engine.records[name]
                print(f"  {name}: {engine.seconds[name]:.0f}s", flush=True)
            info = info or engine.info
    results["machine"] = describe_machine(info)
    for names, module in SECTION_MODULES:
        if names[0] in sections:
            module.add_ratios(results)
    results["total_seconds"] = time.perf_counter() - started
    if sections != SECTION_NAMES and files.json.is_file():
        results = merge_results(json.loads(files.json.read_text()), results)
        print(f"merged into {files.json} (its other sections kept)", flush=True)
    results["targets"] = [asdict(t) for t in build_targets(results)]
    print(write_report(results, files))
    return 0

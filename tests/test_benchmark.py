"""`benchmarks/ladder_bench.py --quick` runs end to end and writes consistent results, to its own files.

Structure and behaviour only, never timing: the quick sizes are far too small for any number to mean anything.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "benchmarks" / "ladder_bench.py"
# The package behind the script is not installed: import it from the checkout, as the script does.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
SECTIONS = ("forward_floor", "step", "probe_10_epochs", "lora_vs_trainer", "ladder_vs_separate", "engine_vs_raw")
STEP_STRATEGIES = {"full", "lora", "bitfit", "partial_unfreeze", "partial_unfreeze_cached"}
# --quick measures MiniLM only, and climbs a short ladder.
LADDER_RUNGS = {"linear_probe", "partial_unfreeze", "scratch"}
QUICK_TARGETS = {
    "engine_vs_raw",
    "probe_cached_vs_forward",
    "probe_naive_vs_cached",
    "pu_cached_step_minilm",
    "pu_step_minilm",
    "lora_step_minilm",
    "lora_peak_minilm",
    "lora_overhead_minilm",
    "lora_vs_trainer",
    "ladder_vs_separate",
}


def _ratios(node: Any) -> Iterator[dict[str, Any]]:
    """Every ratio record (`value`, `of`, `to`) anywhere in the results."""
    if isinstance(node, dict):
        if {"value", "of", "to"} <= node.keys():
            yield node
            return
        for child in node.values():
            yield from _ratios(child)
    elif isinstance(node, list):
        for child in node:
            yield from _ratios(child)


def _get(results: dict[str, Any], path: list[str]) -> Any:
    for key in path:
        results = results[key]
    return results


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("ladder_bench")
    # conftest.py has set the offline flags, OMP_NUM_THREADS=1 and a private PEFT_LADDER_CACHE in os.environ.
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
        cwd=REPO_ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=900,
    )
    return proc, out


@pytest.mark.slow
def test_quick_benchmark_writes_consistent_results(quick_run):
    proc, out = quick_run
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    md_file, json_file = out / "ladder_bench_quick.md", out / "ladder_bench_quick.json"
    assert md_file.is_file() and json_file.is_file()
    assert not (out / "ladder_bench.md").exists() and not (out / "ladder_bench.json").exists()
    results = json.loads(json_file.read_text())
    markdown = md_file.read_text()
    assert markdown in proc.stdout  # the table is also printed

    # The six sections, with positive numbers where times and memory are measured.
    for section in SECTIONS:
        assert results[section], section
        assert f"## {SECTIONS.index(section) + 1}. {section}" in markdown
    assert set(results["forward_floor"]) == {"minilm"}
    for floor in results["forward_floor"].values():
        assert floor["seconds"] > 0 and all(t > 0 for t in floor["times"])
    for model, strategies in results["step"].items():
        assert set(strategies) == STEP_STRATEGIES, model
        for rec in strategies.values():
            assert rec["seconds"] > 0 and rec["peak_mb"] > 0 and rec["built_mb"] > 0 and rec["overhead_mb"] >= 0
        assert strategies["full"]["overhead_mb"] > 0
        # The full step's FLOPs and the matmul rate, and their quotient over the step time.
        full = strategies["full"]
        assert full["flops_per_step"] > 0 and full["matmul_flops_per_second"] > 0
        assert 0 < full["ratios"]["flop_utilisation"]["value"]
        # The cached step trains the tail from the last block, and the tail reproduces the whole model.
        cache = strategies["partial_unfreeze_cached"]["cache"]
        assert cache["cut"] == f"input of block {strategies['full']['blocks'] - 1}"
        assert cache["tail_max_abs_diff"] < 1e-3
    probe = results["probe_10_epochs"]
    assert probe["epochs"] == 10
    assert probe["forward"]["seconds"] > 0 and probe["cached"]["seconds"] > 0 and probe["naive"]["seconds"] > 0
    assert probe["cached"]["cache"]["used"] is True and probe["naive"]["cache"]["used"] is False
    assert probe["cached"]["steps"] == probe["naive"]["steps"] > 0
    lora = results["lora_vs_trainer"]
    assert lora["ours"]["samples"] == lora["trainer"]["samples"] > 0
    assert lora["ours"]["samples_per_second"] > 0 and lora["trainer"]["samples_per_second"] > 0
    ladder = results["ladder_vs_separate"]
    assert ladder["ladder"]["seconds"] > 0
    assert set(ladder["separate"]) == LADDER_RUNGS
    assert all(r["seconds"] > 0 for r in ladder["separate"].values())
    assert math.isclose(ladder["separate_sum"]["seconds"], sum(r["seconds"] for r in ladder["separate"].values()))
    # Separate rungs that train the backbone pay their own head phase; the probe and scratch have none.
    assert {k for k, r in ladder["separate"].items() if r["lpft"]} == {"partial_unfreeze"}
    assert set(ladder["ladder"]["rung_train_seconds"]) == LADDER_RUNGS
    engine = results["engine_vs_raw"]
    assert engine["ours"]["steps"] == engine["raw"]["steps"] > 0
    assert engine["ours"]["seconds_per_step"] > 0 and engine["raw"]["seconds_per_step"] > 0

    # Every ratio is the quotient of the two numbers it names.
    ratios = list(_ratios(results))
    assert len(ratios) >= 5 * 4 + 5
    for r in ratios:
        numerator, denominator = _get(results, r["of"]), _get(results, r["to"])
        assert denominator > 0
        assert math.isclose(r["value"], numerator / denominator, rel_tol=1e-9), r

    # Each target with a met / not-met boolean that agrees with its ratio.
    targets = {t["id"]: t for t in results["targets"]}
    assert set(targets) == QUICK_TARGETS
    for t in targets.values():
        assert isinstance(t["met"], bool)
        value = t["ratio"]["value"]
        assert t["met"] == (value <= t["threshold"] if t["op"] == "<=" else value >= t["threshold"])
        assert t["target"] in markdown
    assert "## Targets" in markdown

    # Where it ran: the machine (torch version included) and the commit.
    machine = results["machine"]
    assert machine["torch"] == torch.__version__
    assert machine["cores"] >= 1 and machine["cpu_model"]
    assert machine["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert results["git"]["commit"]
    assert torch.__version__ in markdown and results["git"]["describe"] in markdown


def test_quick_never_writes_the_committed_results():
    """The README quotes benchmarks/results/ladder_bench.{md,json}; only a full run may write them."""
    from benchmarks.bench.cli import choose_settings, parse_args
    from benchmarks.bench.settings import RESULTS_DIR, output_files

    committed = {RESULTS_DIR / "ladder_bench.md", RESULTS_DIR / "ladder_bench.json"}
    assert all(path.is_file() for path in committed)

    def files(argv: list[str]):
        args = parse_args(argv)
        return output_files(choose_settings(args), args.out)

    full = files([])
    assert {full.markdown, full.json} == committed
    for argv in (["--quick"], ["--quick", "--out", str(RESULTS_DIR)], ["--quick", "--models", "minilm"]):
        quick = files(argv)
        assert not {quick.markdown, quick.json} & committed, argv
        assert quick.markdown.parent == quick.json.parent == RESULTS_DIR
        assert quick.logs != full.logs
    elsewhere = files(["--quick", "--out", "somewhere"])
    assert elsewhere.json == Path("somewhere") / "ladder_bench_quick.json"


def test_package_runs_as_a_module():
    """`python -m benchmarks.bench` is the same command as the script (only --help here: no benchmark runs)."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "--quick" in proc.stdout and "python -m benchmarks.bench" in proc.stdout


def test_the_gpu_profile_is_chosen_on_a_gpu_and_writes_its_own_files(monkeypatch, tmp_path):
    from benchmarks.bench.cli import choose_settings, parse_args
    from benchmarks.bench.settings import GPU, output_files

    assert choose_settings(parse_args(["--profile", "gpu"])) is GPU
    assert choose_settings(parse_args(["--profile", "cpu"])).profile == "cpu"
    assert choose_settings(parse_args(["--quick", "--profile", "gpu"])).quick  # --quick wins
    assert set(GPU.models) == {"bert_base", "vit_base", "resnet50"} and GPU.precision == "bf16"
    assert output_files(GPU, tmp_path).json.name == "ladder_bench_gpu.json"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert choose_settings(parse_args([])).profile == "cpu"  # no GPU visible


def test_bert_base_is_built_offline_with_the_minilm_tokenizer(tmp_path):
    import json

    from benchmarks.bench.steps import bert_base_folder

    folder = Path(bert_base_folder(tmp_path))
    config = json.loads((folder / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]) == (768, 12, 30522)
    assert (folder / "tokenizer.json").is_file() or (folder / "vocab.txt").is_file()

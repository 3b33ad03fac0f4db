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
SECTIONS = (
    "forward_floor",
    "step",
    "probe_10_epochs",
    "lora_vs_trainer",
    "ladder_vs_separate",
    "engine_vs_raw",
    "ladder_vs_full",
    "precision_auto",
)
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
    "ladder_vs_full_tiny",
    "frozen_vs_forward_tiny",
}
# The ladder's time-table kinds that any climb has (peft_ladder/ladder/note.py PhaseKind), and "other".
LADDER_KINDS = {"setup", "frozen", "lr_search", "note", "other"}


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

    # Every section, with positive numbers where times and memory are measured.
    assert results["sections"] == list(SECTIONS) and "later_runs" not in results
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
        # The live-tensor peak sees training's state: full fine-tuning holds a gradient and AdamW's two moments
        # for every float32 parameter on top of the model and batch; LoRA trains far fewer and holds less.
        full_state_mb = 3 * strategies["full"]["trainable"] * 4 / 2**20
        assert strategies["full"]["tensor_peak_mb"] >= strategies["full"]["built_tensors_mb"] + full_state_mb
        assert strategies["lora"]["tensor_peak_mb"] < strategies["full"]["tensor_peak_mb"]
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
    _check_ladder_vs_full(results["ladder_vs_full"], markdown)
    precision = results["precision_auto"]
    assert precision["auto_resolves_to"] == ("bf16" if precision["native_bf16"] else "no")
    for side in precision["strategies"].values():
        assert side["no"]["steps"] == side["auto"]["steps"] > 0
        assert side["no"]["seconds_per_step"] > 0 and side["auto"]["seconds_per_step"] > 0

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


def _check_ladder_vs_full(section: dict[str, Any], markdown: str) -> None:
    """Section 7: the one-layer smoke ladder against one full run, each run recorded, and the frozen evidence."""
    assert set(section["recipes"]) == {"tiny"}
    rec = section["recipes"]["tiny"]
    assert rec["recipe"] == "recipes/tiny/minilm_1layer_ladder.yaml" and "### tiny:" in markdown
    n = rec["repeats"]
    assert len(rec["ladder_runs"]) == len(rec["full_runs"]) == len(rec["forward_runs"]) == n >= 1
    for ladder in rec["ladder_runs"]:
        assert ladder["seconds"] > 0 and ladder["trials"] > 0 and ladder["frozen_seconds"] > 0
        assert ladder["recommended"] in ladder["rungs_run"]
        assert ladder["outcome"] in {"stop", "uncertain", "target_reached", "top_of_ladder"}
        # The note's time table by kind: its rows, plus the rest, add up to the note's total.
        assert LADDER_KINDS <= set(ladder["by_kind"])
        assert math.isclose(sum(k["seconds"] for k in ladder["by_kind"].values()), ladder["note_total_seconds"])
        assert ladder["frozen_seconds"] == sum(p["seconds"] for p in ladder["phases"] if p["kind"] == "frozen")
    for full in rec["full_runs"]:
        assert full["seconds"] > 0 and full["steps"] > 0
        assert full["lpft"] is True  # a standalone full run does LP-FT by default
    assert rec["full"]["lr"] > 0 and rec["forward_all_splits"]["seconds"] > 0
    assert set(rec["ratios"]) == {"ladder_to_full", "frozen_to_forward"}


def test_sections_option_picks_sections_in_report_order():
    from benchmarks.bench.cli import choose_sections, parse_args

    assert choose_sections(parse_args([])) == SECTIONS
    assert choose_sections(parse_args(["--sections", "ladder_vs_full"])) == ("ladder_vs_full",)
    # Sections 1-2 are measured together (step's ratios divide by the forward floor).
    assert choose_sections(parse_args(["--sections", "ladder_vs_full, step"])) == (
        "forward_floor",
        "step",
        "ladder_vs_full",
    )
    with pytest.raises(SystemExit, match="ladder_vs_full"):
        choose_sections(parse_args(["--sections", "ladder_vs_ful"]))


def test_a_run_of_some_sections_merges_into_the_results_file():
    """`--sections` keeps the other sections of the results file, says which run measured what, and the merged
    results render and give their targets."""
    from benchmarks.bench.report import merge_results, render_markdown
    from benchmarks.bench.settings import RESULTS_DIR
    from benchmarks.bench.targets import build_targets

    earlier = json.loads((RESULTS_DIR / "ladder_bench.json").read_text())
    recorded = [s for s in SECTIONS if s in earlier]
    later = {**earlier, "sections": ["engine_vs_raw"], "created": "later", "command": "ladder_bench.py --sections x"}
    later["engine_vs_raw"] = {**earlier["engine_vs_raw"], "marker": 1}
    merged = merge_results(earlier, later)
    assert [s for s in SECTIONS if s in merged] == recorded and merged["engine_vs_raw"]["marker"] == 1
    assert merged["created"] == earlier["created"] and "engine_vs_raw" not in merged["sections"]
    # The recorded file may itself hold later runs (section 7 was measured on its own): they stay, this one is added.
    runs = [(r["sections"], r["created"]) for r in merged["later_runs"]]
    # An earlier later run that measured engine_vs_raw too keeps its other sections only.
    earlier_runs = [
        ([s for s in r["sections"] if s != "engine_vs_raw"], r["created"]) for r in earlier.get("later_runs", [])
    ]
    assert runs == [*[r for r in earlier_runs if r[0]], (["engine_vs_raw"], "later")]
    merged["targets"] = [vars(t) for t in build_targets(merged)]
    assert {t["id"] for t in merged["targets"]} == {t["id"] for t in earlier["targets"]}
    assert "- sections engine_vs_raw from a later run: commit" in render_markdown(merged)
    # A run of every earlier section leaves nothing of the first run: the later one heads the file.
    again = merge_results(merged, {**later, "sections": [s for s in recorded if s != "engine_vs_raw"], "created": "3"})
    assert again["created"] == "later" and [r["created"] for r in again["later_runs"]] == ["3"]


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
